"""The reward-model files: graded responses (ORM), stepwise labels (PRM), and the examples they become.

- responses (`rm collect` writes them, `rm train` / `rm eval` read them): JSON lines
  `{prompt, completion, label[, problem_id, extracted]}`, TRL's unpaired prompt/completion/label layout.
- stepwise (`prm label` writes them, `prm train` / `prm eval` read them): JSON lines
  `{"prompt": str, "completions": [str, ...], "labels": [bool, ...]}` (TRL's stepwise supervision
  format, used by the public PRM800K and Math-Shepherd conversions), optionally with
  `soft_labels` (floats in [0, 1], written by `tinyr1 prm label`).

Bad lines raise `UserError` naming file:line. Both become `Example`s: a prompt, its pieces (the
steps, or `[response]`) and a target per piece, what `recipes.reward_model` trains on.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tinyr1.errors import UserError
from tinyr1.io import read_jsonl


@dataclass
class Example:
    """One scored sequence: a target per piece, `group` = the problem (pairs stay within it)."""

    prompt: str
    pieces: list[str]  # S steps (PRM) or [response] (ORM)
    targets: list[float]  # S targets in [0, 1]
    group: str


def read_responses(path) -> list[dict]:
    """Lines {prompt, completion, label[, problem_id, extracted]} (what `rm collect` writes)."""
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key, kind in (("prompt", str), ("completion", str), ("label", bool)):
            if not isinstance(row.get(key), kind):
                what = "true or false" if kind is bool else "a string"
                raise UserError(f'{where}: key "{key}" must be {what}; each line needs "prompt", "completion", "label"')
        rows.append(row)
    if not rows:
        raise UserError(f'{path}: no lines (expected JSON lines with "prompt", "completion", "label")')
    return rows


def orm_examples(path) -> list[Example]:
    return [Example(r["prompt"], [r["completion"]], [float(r["label"])], str(r.get("problem_id", r["prompt"])))
            for r in read_responses(path)]


def prm_examples(path, soft: bool = False) -> list[Example]:
        return [Example(r["prompt"], r["completions"], [float(y) for y in (r["soft_labels"] if soft else r["labels"])],
                    str(r.get("problem_id", r["prompt"]))) for r in read_stepwise(path, need_soft=soft)]


def preference_pairs(examples: list[Example], max_pairs: int, rng: random.Random) -> list[tuple[int, int]]:
    """(correct, incorrect) index pairs of ORM examples of the same problem, at most `max_pairs` each."""
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, ex in enumerate(examples):
        groups[ex.group][0 if ex.targets[0] >= 0.5 else 1].append(i)
    pairs = []
    for good, bad in groups.values():
        combos = [(g, b) for g in good for b in bad]
        pairs += rng.sample(combos, min(max_pairs, len(combos)))
    return pairs


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


class ItemOrder:
    """Training items (examples or pairs) in a seeded order, reshuffled every epoch, taken in batches
    of `batch_size` (the last batch of an epoch may be smaller); its position is checkpointed.

    Epoch e's order is the (e+1)-th shuffle of one `random.Random(seed)`, so a resumed run replays
    the shuffles up to its epoch and continues with exactly the batches an uninterrupted run takes.
    """

    def __init__(self, items: list, seed: int, batch_size: int):
        self.items, self.seed, self.batch_size = items, seed, batch_size
        self.load_state_dict({"epoch": 0, "pos": 0})

    def take(self) -> list:
        if self.pos >= len(self._order):  # the epoch is done: the next shuffle
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._rng.sample(self.items, len(self.items))
        batch = self._order[self.pos : self.pos + self.batch_size]
        self.pos += len(batch)
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._rng = random.Random(self.seed)
        for _ in range(self.epoch + 1):
            self._order = self._rng.sample(self.items, len(self.items))
