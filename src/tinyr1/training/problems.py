"""The problems a training loop draws from: a seeded, checkpointed stream, the held-out set, few-shot examples.

    data = load_data(job)                       # fails fast on bad data, before any model loads
    problems = take_share(data.stream, k)       # this process's k problems of the step

Every process draws the whole step's problems from the same seeded stream and keeps its own
contiguous share, so the streams never diverge and a checkpoint holds one position.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from tinyr1 import distributed as D
from tinyr1.config import TrainJob
from tinyr1.data import load_problems
from tinyr1.errors import UserError
from tinyr1.types import Problem


class ProblemStream:
    """Training problems in a seeded order, reshuffled every epoch; its position is checkpointed."""

    def __init__(self, problems: list[Problem], seed: int):
        if not problems:
            raise UserError("the training split is empty; choose a larger data source or a smaller data.test_size")
        self.problems, self.seed = problems, seed
        self.epoch, self.pos = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[Problem]:
        out = []
        for _ in range(k):
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self.problems[self._order[self.pos]])
            self.pos += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._shuffled(self.epoch)


def take_share(stream: ProblemStream, k: int) -> list[Problem]:
    """This process's `k` problems of the step (see `tinyr1.distributed`).

    Every process takes the step's problems of ALL processes from the stream, so every stream
    stays at the same position, and keeps its contiguous slice in rank order: rank 0 the first
    `k_0`, rank 1 the next `k_1`, ... In one process this is `stream.take(k)`.
    """
    counts = D.gather_objects(k)
    problems = stream.take(sum(counts))
    start = sum(counts[: D.rank()])
    return problems[start : start + k]


@dataclass
class Problems:
    """The problems a loop trains and evaluates on: few-shot examples never train or evaluate."""

    stream: ProblemStream  # training problems, seeded order, checkpointed position
    heldout: list[Problem]  # the first `run.eval_size` problems of the test split
    shots: list[Problem]  # few-shot examples shown in every prompt


def load_data(job: TrainJob) -> Problems:
    """Training stream, held-out problems and few-shot examples (loaded before any model: fail fast)."""
    torch.manual_seed(job.run.seed)
    train_problems = load_problems(job.data, "train")
    heldout = load_problems(job.data, "test")[: job.run.eval_size]
    shots = train_problems[: job.prompt.few_shot]
    return Problems(ProblemStream(train_problems[job.prompt.few_shot :], job.run.seed), heldout, shots)
