"""Process reward model as a step reward function, and the stepwise files PRMs train on.

1. `ProcessRewardModel`: a callable like the rules of `rewards.process`, `(problems, responses,
   mode=...) -> list of per-step rewards`. Each response is split into steps (`rewards.steps`,
   `reward.step_mode`), the PRM (written by `tinyr1 prm train`) reads the question and the steps
   (`rewards.scoring`) and its logit at each step's end is the log-odds that the solution is
   still on track there (Math-Shepherd's label: some continuation from that step reaches the
   right answer). The step reward is `2 p - 1` in [-1, 1]: +1 a step the PRM is sure of, -1 one
   it is sure is wrong, 0 where it cannot tell, the scale of the `arithmetic` rule; centred so
   that steps the PRM cannot judge neither add nor cost reward (matters for PPO's per-token
   rewards, which sum over steps; GRPO's `process` advantage normalises per group anyway).
2. `process_reward_fn(spec)`: the one place `reward.process` is resolved: a rule name
   (`arithmetic`, `reference`) or `prm:<folder>`, the PRM loaded once per process.
3. `read_stepwise(path)`: lines `{"prompt": str, "completions": [str, ...], "labels": [bool, ...]}`
   (TRL's stepwise supervision format, used by the public PRM800K and Math-Shepherd conversions),
   optionally with `soft_labels` (floats in [0, 1], written by `tinyr1 prm label`); bad lines
   raise `UserError` naming file:line.

    reward:
      process: "prm:runs/prm"        # GRPO with advantage: process, or PPO per-token step rewards
      step_mode: lines
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.models.heads import load_scorer
from tinyr1.rewards.scoring import score_pieces
from tinyr1.rewards.steps import split_steps
from tinyr1.types import Problem


class ProcessRewardModel:
    """`(problems, responses, mode=...) -> list[list[float]]`: `2 P(step ok) - 1` per step."""

    def __init__(self, path: str, device: str = "auto", dtype: str = "float32", batch_size: int = 16, key: str | None = None):
        self.model, self.tokenizer, self.meta = load_scorer(path, "prm", device=device, dtype=dtype, key=key)
        self.batch_size = batch_size

    def probabilities(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        """P(step ok) at each step of each solution; steps given as strings."""
        logits = score_pieces(self.model, self.tokenizer, prompts, steps, self.batch_size)
        return [torch.sigmoid(torch.tensor(row, dtype=torch.float32)).tolist() for row in logits]

    def __call__(self, problems: list[Problem], responses: list[str], *, mode: str = "lines", **_: object) -> list[list[float]]:
        if len(problems) != len(responses):
            raise ValueError(f"got {len(problems)} problems but {len(responses)} responses")
        steps = [[s.text for s in split_steps(r, mode)] for r in responses]
        probs = self.probabilities([p.question for p in problems], steps)
        return [[2.0 * p - 1.0 for p in row] for row in probs]


@lru_cache(maxsize=2)
def _cached_prm(path: str, device: str, dtype: str) -> ProcessRewardModel:
    return ProcessRewardModel(path, device=device, dtype=dtype, key="reward.process")


def process_reward_fn(spec: str, device: str = "auto", dtype: str = "float32"):
    """The step reward function named by `reward.process`: a rule, or `prm:<folder>` (loaded once)."""
    from tinyr1.rewards.process import PROCESS_REWARDS

    if spec.startswith("prm:"):
        return _cached_prm(spec[len("prm:") :], device, dtype)
    if spec not in PROCESS_REWARDS:
        raise UserError(f"config key 'reward.process': {spec!r} is not allowed; expected none, {', '.join(PROCESS_REWARDS)} or prm:<folder>")
    return PROCESS_REWARDS[spec]


def _check_line(where: str, row: dict[str, Any]) -> dict[str, Any]:
    prompt, completions, labels = row.get("prompt"), row.get("completions"), row.get("labels")
    if not isinstance(prompt, str):
        raise UserError(f'{where}: key "prompt" must be a string; each line needs "prompt", "completions", "labels"')
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions) or not completions:
        raise UserError(f'{where}: key "completions" must be a non-empty list of step strings')
    if not isinstance(labels, list) or not all(isinstance(y, bool) for y in labels):
        raise UserError(f'{where}: key "labels" must be a list of true/false, one per step')
    if len(labels) != len(completions):
        raise UserError(f'{where}: {len(completions)} completions but {len(labels)} labels; expected one label per step')
    soft = row.get("soft_labels")
    if soft is not None and (
        not isinstance(soft, list) or len(soft) != len(completions)
        or not all(isinstance(y, (int, float)) and not isinstance(y, bool) and 0 <= y <= 1 for y in soft)
    ):
        raise UserError(f'{where}: key "soft_labels" must be a list of numbers in [0, 1], one per step')
    return row


def read_stepwise(path, need_soft: bool = False) -> list[dict[str, Any]]:
    """All lines of a stepwise JSONL file, checked; `need_soft` also requires `soft_labels`."""
    rows = []
    for lineno, row in read_jsonl(path):
        row = _check_line(f"{path}:{lineno}", row)
        if need_soft and row.get("soft_labels") is None:
            raise UserError(f'{path}:{lineno}: no "soft_labels" (train.target=soft needs them; `tinyr1 prm label` writes them)')
        rows.append(row)
    if not rows:
        raise UserError(f'{path}: no lines (expected JSON lines with "prompt", "completions", "labels")')
    return rows
