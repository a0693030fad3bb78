"""Reward-model evaluation on held-out data: does it rank right answers first?

    tinyr1 rm collect --collect.split=test --out runs/rm_data/heldout.jsonl     # K held-out samples per problem
    tinyr1 rm eval --model runs/rm --data runs/rm_data/heldout.jsonl
    tinyr1 prm eval --model runs/prm --data runs/rm_data/heldout.jsonl --steps runs/rm_data/heldout_steps.jsonl

`rm eval` scores every held-out response with the ORM and reports the AUC of those scores against
the grader's labels, and per problem the accuracy of best-of-n (the top-scored of the first n
samples) against majority vote over the same n and against the policy's own pass@1 (the mean
correctness: a sample picked at random), with pass@n as the ceiling, for n = 1, 2, 4, ..., K.

`prm eval` does the same with the PRM's step scores aggregated per response by `min`, `product`
and `last` (`data`), and, given a labelled stepwise file (`steps`), step-level AUC, accuracy and
F1 (for correct steps and for wrong ones) at `threshold`. Writes summary.json and the per-response
scores (scores.jsonl) to `eval.out`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tinyr1.config import RMEvalJob
from tinyr1.errors import UserError
from tinyr1.io import write_json_atomic, write_jsonl
from tinyr1.rewards.orm import OutcomeRewardModel
from tinyr1.rewards.prm import ProcessRewardModel
from tinyr1.rewards.steps import split_steps
from tinyr1.rm.data import read_responses, read_stepwise
from tinyr1.rm.metrics import AGGREGATIONS, Candidate, aggregate_steps, binary_f1, roc_auc, selection_accuracy
from tinyr1.types import Problem


def _groups(rows: list[dict], scores: list[float]) -> list[list[Candidate]]:
    """Candidates per problem (`problem_id`, else the prompt), in file order."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for row, s in zip(rows, scores):
        groups[str(row.get("problem_id", row["prompt"]))].append(Candidate(s, row["label"], row.get("extracted")))
    return list(groups.values())


def _selection(groups: list[list[Candidate]], prefix: str = "") -> dict[str, float]:
    """Selection accuracies at n = 1, 2, 4, ... up to the smallest group's size (and that size)."""
    k = min(len(g) for g in groups)
    ns = sorted({2**j for j in range(k.bit_length()) if 2**j <= k} | {k})
    out = {}
    for n in ns:
        acc = selection_accuracy(groups, n)
        out |= {f"{prefix}best_of_{n}": acc["best_of_n"], f"majority_of_{n}": acc["majority"], f"pass@{n}": acc["pass@n"]}
    out["pass@1"] = selection_accuracy(groups)["pass@1"]  # the policy's own accuracy: mean over all K samples
    out["samples_per_problem"] = k
    return out


def _out_dir(job: RMEvalJob) -> Path:
    return Path(job.eval.out or Path(job.eval.reward_model) / "eval")


def eval_orm(job: RMEvalJob) -> dict:
    e = job.eval
    if not e.data:
        raise UserError("rm eval needs eval.data (--data): held-out responses from `tinyr1 rm collect --split test`")
    rows = read_responses(e.data)  # checked before the model loads
    orm = OutcomeRewardModel(e.reward_model, device=e.device, batch_size=e.batch_size, key="eval.reward_model",
                             progress=e.progress)
    scores = orm([Problem(str(i), r["prompt"], "") for i, r in enumerate(rows)], [r["completion"] for r in rows])
    summary = {"reward_model": e.reward_model, "data": e.data, "responses": len(rows), "problems": len(_groups(rows, scores)),
               "auc": roc_auc(scores, [r["label"] for r in rows]), **_selection(_groups(rows, scores))}
    out = _out_dir(job)
    write_jsonl(out / "scores.jsonl", [r | {"score": s} for r, s in zip(rows, scores)])
    write_json_atomic(out / "summary.json", summary)
    return summary


def _step_metrics(prm, path, threshold: float) -> dict[str, float]:
    rows = read_stepwise(path)
    probs = prm.probabilities([r["prompt"] for r in rows], [r["completions"] for r in rows])
    p = [x for row in probs for x in row]
    y = [v for r in rows for v in r["labels"]]
    pred = [x >= threshold for x in p]
    right, wrong = binary_f1(pred, y, positive=True), binary_f1(pred, y, positive=False)
    return {"step_auc": roc_auc(p, y), "step_accuracy": sum(a == b for a, b in zip(pred, y)) / len(y),
            "step_f1_correct": right["f1"], "step_f1_wrong": wrong["f1"], "step_precision_wrong": wrong["precision"],
            "step_recall_wrong": wrong["recall"], "steps": len(y), "step_share_correct": sum(y) / len(y)}


def eval_prm(job: RMEvalJob) -> dict:
    e = job.eval
    if not e.data and not e.steps:
        raise UserError("prm eval needs eval.data (held-out responses) or eval.steps (a labelled stepwise file), or both")
    rows = read_responses(e.data) if e.data else []  # files checked before the model loads
    if e.steps:
        read_stepwise(e.steps)
    prm = ProcessRewardModel(e.reward_model, device=e.device, batch_size=e.batch_size, key="eval.reward_model",
                             progress=e.progress)
    summary: dict = {"reward_model": e.reward_model, "data": e.data, "steps_file": e.steps}
    if e.steps:
        summary |= _step_metrics(prm, e.steps, e.threshold)
    if rows:
        steps = [[s.text for s in split_steps(r["completion"], job.reward.step_mode)] for r in rows]
        probs = prm.probabilities([r["prompt"] for r in rows], steps)
        labels = [r["label"] for r in rows]
        summary |= {"responses": len(rows)}
        for how in AGGREGATIONS:
            scores = [aggregate_steps(p, how) for p in probs]
            summary |= {f"auc_{how}": roc_auc(scores, labels), **_selection(_groups(rows, scores), prefix=f"{how}_")}
        write_jsonl(_out_dir(job) / "scores.jsonl", [r | {"step_scores": p} for r, p in zip(rows, probs)])
    write_json_atomic(_out_dir(job) / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    """One `key  value` line per number (percentages for accuracies)."""
    lines = []
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.3f}" if "auc" in k or "f1" in k or "precision" in k or "recall" in k else f"{v:.1%}"
        lines.append(f"{k:<26}{v}")
    return "\n".join(lines)
