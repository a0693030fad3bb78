"""The problems a training loop draws from: a seeded, checkpointed stream, the held-out set, few-shot examples.

    data = load_data(job)                       # fails fast on bad data, before any model loads
    data.stream.begin_step(step)                # (Run.steps does it) the curriculum's phase at this step
    problems = take_share(data.stream, k)       # this process's k problems of the step

Every process draws the whole step's problems from the same seeded stream and keeps its own
contiguous share, so the streams never diverge and a checkpoint holds one position. The stream is
one of three, chosen in `load_data`, each seeded, checkpointed (`state_dict`) and resumed exactly:

- `ProblemStream`: the training problems, reshuffled every epoch;
- `CurriculumStream` (`data.curriculum`): one ProblemStream per phase, over the problems within
  the phase's step bound (data/difficulty.py), switched by `begin_step`;
- `MixedStream` (`data.extra`): each draw comes from an extra generated source with its share's
  probability, decided by a seeded hash of the draw's index, else from the main stream.

The held-out set and the few-shot examples are chosen before any step filter, so they are the
same for every job on the same `data.source`, `data.test_size`, `data.seed` (and `prompt.few_shot`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch

from tinyr1 import distributed as D
from tinyr1.config import DataConfig, TrainJob
from tinyr1.data import load_problems
from tinyr1.data.difficulty import phase_at, within_steps
from tinyr1.data.splits import drop_overlap
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

    def begin_step(self, step: int) -> None:
        """Nothing changes between steps of a plain stream."""


class CurriculumStream:
    """Training problems whose step bound widens over training (`data.curriculum`).

    Phase k covers the problems within its `max_steps` (and `data.max_steps`); from its start step
    on, draws come from its own ProblemStream (seed + k, epoch 0 of its own shuffle). Every
    phase's pool is built up front, so an empty one fails before training.
    """

    def __init__(self, problems: list[Problem], seed: int, curriculum: list, max_steps: int | None = None):
        self.curriculum = [tuple(entry) for entry in curriculum]
        self.pools = []
        for k, (start, bound) in enumerate(self.curriculum):
            bound = max_steps if bound is None else bound if max_steps is None else min(bound, max_steps)
            pool = within_steps(problems, None, bound)
            if not pool:
                raise UserError(f"config key 'data.curriculum[{k}]': no training problem has at most {bound} "
                                f"calculation steps (within data.min_steps), so phase {k} from step {start} has "
                                "nothing to train on; raise its max_steps")
            self.pools.append(pool)
        self.seed, self.phase = seed, 0
        self.stream = ProblemStream(self.pools[0], seed)

    def begin_step(self, step: int) -> None:
        """Switch to the phase in force at `step` (a fresh shuffle of its pool when it changes)."""
        phase, _ = phase_at(self.curriculum, step)
        if phase != self.phase:
            self.phase, self.stream = phase, ProblemStream(self.pools[phase], self.seed + phase)

    def take(self, k: int) -> list[Problem]:
        return self.stream.take(k)

    def state_dict(self) -> dict[str, int]:
        return {"phase": self.phase, **self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.phase = state["phase"]
        self.stream = ProblemStream(self.pools[self.phase], self.seed + self.phase)
        self.stream.load_state_dict(state)


class MixedStream:
    """The main stream with generated problems mixed in (`data.extra`): draw i comes from extra
    source j with probability share_j, from the main stream otherwise. The choice is a seeded
    hash of (seed, i), so the checkpoint needs only the draw count and each stream's position."""

    def __init__(self, main, extras: list[tuple[float, ProblemStream]], seed: int):
        self.main, self.extras, self.seed, self.draws = main, extras, seed, 0

    def _source(self, draw: int):
        u = random.Random(f"tinyr1-extra:{self.seed}:{draw}").random()  # str seeds hash with sha512: stable
        for share, stream in self.extras:
            if u < share:
                return stream
            u -= share
        return self.main

    def begin_step(self, step: int) -> None:
        self.main.begin_step(step)

    def take(self, k: int) -> list[Problem]:
        out = []
        for _ in range(k):
            out += self._source(self.draws).take(1)
            self.draws += 1
        return out

    def state_dict(self) -> dict:
        return {"draws": self.draws, "main": self.main.state_dict(), "extras": [s.state_dict() for _, s in self.extras]}

    def load_state_dict(self, state: dict) -> None:
        self.draws = state["draws"]
        self.main.load_state_dict(state["main"])
        for (_, stream), saved in zip(self.extras, state["extras"]):
            stream.load_state_dict(saved)


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

    stream: ProblemStream | CurriculumStream | MixedStream  # training problems, seeded order, checkpointed position
    heldout: list[Problem]  # the first `run.eval_size` problems of the test split
    shots: list[Problem]  # few-shot examples shown in every prompt


def load_data(job: TrainJob) -> Problems:
    """Training stream, held-out problems and few-shot examples (loaded before any model: fail fast).

    The held-out problems and the few-shot examples come before the step filters (`data.min_steps`,
    `data.max_steps`, `data.curriculum`), which narrow only what is trained on.
    """
    torch.manual_seed(job.run.seed)
    d, seed = job.data, job.run.seed
    everything = load_problems(dataclasses.replace(d, min_steps=None, max_steps=None), "train")
    test = load_problems(d, "test")
    shots = everything[: job.prompt.few_shot]
    train = within_steps(everything[job.prompt.few_shot :], d.min_steps, d.max_steps, d.source)
    if everything[job.prompt.few_shot :] and not train:
        raise UserError(f"{d.source}: no training problem has between {d.min_steps or 0} and {d.max_steps} calculation "
                        "steps; widen data.min_steps / data.max_steps")
    stream = CurriculumStream(train, seed, d.curriculum, d.max_steps) if d.curriculum else ProblemStream(train, seed)
    if d.extra:
        stream = MixedStream(stream, extra_streams(d, test, seed), seed)
    return Problems(stream, test[: job.run.eval_size], shots)


def extra_streams(d: DataConfig, test: list[Problem], seed: int) -> list[tuple[float, ProblemStream]]:
    """(share, stream) of each `data.extra` source: `size` generated training problems (seed
    `data.seed`), minus any whose question is also held out; each stream seeded apart."""
    streams = []
    for i, (source, spec) in enumerate(d.extra.items()):
        spec = spec if isinstance(spec, dict) else {"share": spec}
        cfg = DataConfig(source=source, size=spec.get("size", d.size), test_size=0, seed=d.seed,
                         task_options=dict(spec.get("task_options", {})))
        problems = drop_overlap(load_problems(cfg, "train"), test)
        streams.append((float(spec["share"]), ProblemStream(problems, seed + 7919 * (i + 1))))
    return streams
