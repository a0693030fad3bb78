"""How good is a reward model? Pure functions on scores and labels, no model inside.

- `roc_auc`: the probability that a random positive outranks a random negative (ties count
  half), i.e. the Mann-Whitney U statistic over n_pos * n_neg; None with only one class.
- `binary_f1`: precision, recall and F1 of thresholded predictions for one class.
- `aggregate_steps`: one score per solution from its step scores: `min` (the weakest step,
  Math-Shepherd / Lightman et al.), `product` (all steps right), `last` (the final step).
- `selection_accuracy`: for K sampled responses per problem, the accuracy of picking the
  highest-scored one (best-of-n) against majority vote over the extracted answers and against
  one sample at random (the policy's pass@1), and the ceiling pass@n.

    >>> roc_auc([0.9, 0.4, 0.4, 0.1], [True, True, False, False])
    0.875
    >>> aggregate_steps([0.9, 0.5, 0.8], "min"), aggregate_steps([0.9, 0.5, 0.8], "last")
    (0.5, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tinyr1.evaluation import majority_correct


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve by pair counting with average ranks (ties count half)."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    n_pos = sum(bool(y) for y in labels)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # equal scores share the mean of their ranks (1-based)
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_f1(predicted: Sequence[bool], labels: Sequence[bool], positive: bool = True) -> dict[str, float]:
    """Precision, recall and F1 for the class `positive` (0 where undefined)."""
    tp = sum(p == positive and y == positive for p, y in zip(predicted, labels, strict=True))
    fp = sum(p == positive and y != positive for p, y in zip(predicted, labels))
    fn = sum(p != positive and y == positive for p, y in zip(predicted, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


AGGREGATIONS = {
    "min": min,
    "product": math.prod,
    "last": lambda scores: scores[-1],
}


def aggregate_steps(step_scores: Sequence[float], how: str) -> float:
    """One solution score from its step probabilities; a solution without steps scores 0."""
    return float(AGGREGATIONS[how](list(step_scores))) if step_scores else 0.0


@dataclass
class Candidate:
    """One sampled response to a problem: the reward model's score, the grader's verdict, and
    the extracted final answer (None when none was found; it then casts no vote)."""

    score: float
    correct: bool
    extracted: str | None = None


def _pick(group: Sequence[Candidate]) -> Candidate:
    """The highest-scored candidate; ties go to the one sampled first."""
    return max(enumerate(group), key=lambda ic: (ic[1].score, -ic[0]))[1]


def selection_accuracy(groups: Sequence[Sequence[Candidate]], n: int | None = None) -> dict[str, float]:
    """Accuracy over problems of choosing among the first `n` candidates of each group (all by
    default): `best_of_n` (the top-scored one), `majority` (the most common answer), `pass@1`
    (a random one, the mean correctness) and `pass@n` (any one correct: the ceiling)."""
    groups = [g[:n] if n else g for g in groups if g]
    if not groups:
        raise ValueError("no groups to select from")
    m = len(groups)
    return {
        "best_of_n": sum(_pick(g).correct for g in groups) / m,
        "majority": sum(majority_correct([c.extracted for c in g], [c.correct for c in g]) for g in groups) / m,
        "pass@1": sum(sum(c.correct for c in g) / len(g) for g in groups) / m,
        "pass@n": sum(any(c.correct for c in g) for g in groups) / m,
    }
