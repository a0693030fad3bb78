"""Rule-based process rewards: score each step of a response without a reward model.

Math-Shepherd (Wang et al. 2024) and DeepSeekMath's process supervision (Shao et al. 2024,
section 4.1.3) score every reasoning step with a learned process reward model (PRM). These two
rules need no model, so they serve as a free PRM baseline and as a sanity check of the
per-step plumbing (`steps.step_ends` -> `algorithms.advantages.process_advantages`):

- arithmetic: every equation written in a step is recomputed. A step with at least one equation,
  all correct, gets `correct` (+1); a step with a wrong one gets `wrong` (-1); a step without a
  checkable equation gets `unchecked` (0).
- reference values (GSM8K): the calculator annotations of the reference solution
  (`48/2 = <<48/2=24>>24`) give the intermediate results; a step that states one of them (a
  number or expression right after an `=`) gets `hit` (+1), otherwise `miss` (0).

    >>> arithmetic_step_rewards(["48 / 2 = 24", "48 + 24 = 73", "So she sold 72 clips."])
    [1.0, -1.0, 0.0]
    >>> from tinyr1.types import Problem
    >>> p = Problem("0", "...", "72", solution="48/2 = <<48/2=24>>24\\n48+24 = <<48+24=72>>72\\n#### 72")
    >>> reference_process_reward([p], ["May: 48 / 2 = 24\\nTotal: 50"])
    [[1.0, 0.0]]

The equations themselves are read by `rewards.equations` (`find_equations`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from tinyr1.rewards.equations import agrees, find_equations, stated_values
from tinyr1.rewards.steps import Step, split_steps
from tinyr1.types import Problem

__all__ = [
    "PROCESS_REWARDS", "arithmetic_process_reward", "arithmetic_step_rewards", "reference_process_reward",
    "reference_value_step_rewards", "reference_values",
]  # fmt: skip


# ----------------------------------------------------------------------------- step rewards


def _text(step: Step | str) -> str:
    return step if isinstance(step, str) else step.text


def arithmetic_step_rewards(
    steps: Sequence[Step | str], *, correct: float = 1.0, wrong: float = -1.0, unchecked: float = 0.0
) -> list[float]:
    """S steps (`Step`s or strings) -> S rewards: `correct` when the step has equations and all
    hold, `wrong` when any fails, `unchecked` when it has none."""
    rewards = []
    for step in steps:
        verdicts = [eq.correct for eq in find_equations(_text(step))]
        rewards.append(unchecked if not verdicts else correct if all(verdicts) else wrong)
    return rewards


_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def reference_values(solution: str | None) -> list[tuple[Fraction, int]]:
    """Intermediate results of a GSM8K reference solution, one per calculator annotation, as
    (value, decimals of rounding slack); [] without annotations.

    `<<100/3=33.33>>` gives the exact 100/3 with no slack (a step may round it to any number of
    decimals, `33.3` or `33.333`); an annotation whose left side cannot be read or does not hold
    gives its written result with the written decimals.
    """
    values = []
    for note in _ANNOTATION.finditer(solution or ""):
        exact = [(eq.left, 0) for eq in find_equations(note.group(1)) if eq.correct]
        values.extend(exact or stated_values(note.group(1)))
    return values


def _hits(stated: list[tuple[Fraction, int]], refs: list[tuple[Fraction, int]]) -> bool:
    # Either side may be the rounded one: the step's `0.33` for 1/3, or a reference written
    # `33.33` (with an unreadable left side) for the step's `33.333`.
    return any(agrees(v, r, rd) or agrees(r, v, vd) for v, vd in stated for r, rd in refs)


def _reference_rewards(steps, refs, hit: float, miss: float) -> list[float]:
    return [hit if refs and _hits(stated_values(_text(s)), refs) else miss for s in steps]


def reference_value_step_rewards(
    steps: Sequence[Step | str], problem: Problem, *, hit: float = 1.0, miss: float = 0.0
) -> list[float]:
    """S steps -> S rewards: `hit` when the step states one of the intermediate results of
    `problem.solution`'s calculator annotations, else `miss` (always `miss` without them)."""
    return _reference_rewards(steps, reference_values(problem.solution), hit, miss)


# ----------------------------------------------------------------------------- batch callables


def _check_lengths(problems: Sequence[Problem], responses: Sequence[str]) -> None:
    if len(problems) != len(responses):
        raise ValueError(f"got {len(problems)} problems but {len(responses)} responses")


def arithmetic_process_reward(
    problems: list[Problem], responses: list[str], *, mode: str = "lines",
    correct: float = 1.0, wrong: float = -1.0, unchecked: float = 0.0,
) -> list[list[float]]:  # fmt: skip
    """N responses -> N lists of per-step rewards, steps as `split_steps(response, mode)`."""
    _check_lengths(problems, responses)
    weights = {"correct": correct, "wrong": wrong, "unchecked": unchecked}
    return [arithmetic_step_rewards(split_steps(r, mode), **weights) for r in responses]


def reference_process_reward(
    problems: list[Problem], responses: list[str], *, mode: str = "lines", hit: float = 1.0, miss: float = 0.0
) -> list[list[float]]:
    """N responses -> N lists of per-step rewards against each problem's reference values."""
    _check_lengths(problems, responses)
    refs: dict[str | None, list] = {}  # a GRPO batch repeats each problem G times
    rewards = []
    for problem, response in zip(problems, responses):
        if problem.solution not in refs:
            refs[problem.solution] = reference_values(problem.solution)
        rewards.append(_reference_rewards(split_steps(response, mode), refs[problem.solution], hit, miss))
    return rewards


# The one place a process rule is chosen by name.
PROCESS_REWARDS = {
    "arithmetic": arithmetic_process_reward,
    "reference": reference_process_reward,
}
