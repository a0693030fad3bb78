"""Generated problems from reasoning-gym tasks (`synthetic:<task>`), offline and seeded.

`reasoning_gym.create_dataset(task, size=..., seed=..., **cfg.task_options)` builds a task;
any registered task works (`basic_arithmetic`, `chain_sum`, `gsm_symbolic`, ...) as long as its
problems carry a single reference answer. reasoning-gym draws item `i` from
`Random(seed + i)`, so two seeds closer than the dataset size share items. Hence:

- train: `cfg.size` items from seed `cfg.seed`;
- test: `cfg.test_size` items from seed `cfg.seed + TEST_SEED_OFFSET`, an offset far beyond any
  dataset size, so the two never draw from the same random stream and the test set does not
  change with `cfg.size`;
- small tasks still repeat questions by chance, so train drops any question that is also in
  test (train may then hold a few fewer than `cfg.size`).

Ids are `<task>/<split>/<index>`; meta keeps reasoning-gym's own metadata under `task_metadata`
(its scorers need it). reasoning_gym is imported only here, when a synthetic source is read.

Run: `.venv/bin/python -m pytest tests/data/test_synthetic.py -q`
"""

from __future__ import annotations

import dataclasses
import difflib

from tinyr1.config import DataConfig
from tinyr1.data.splits import Source, drop_overlap
from tinyr1.errors import UserError
from tinyr1.types import Problem

TEST_SEED_OFFSET = 1_000_000_000
EXAMPLE_TASKS = ("basic_arithmetic", "chain_sum", "gsm_symbolic", "simple_equations", "fraction_simplification", "gcd")


def _registry() -> dict:
    # lazy: reasoning_gym takes a second to import
    from reasoning_gym.factory import DATASETS

    return DATASETS


def _check_task(task: str) -> None:
    tasks = _registry()
    if task in tasks:
        return
    close = difflib.get_close_matches(task, list(tasks), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"synthetic:{task}: unknown reasoning-gym task {task!r}; {hint}"
        f"known tasks include {', '.join(EXAMPLE_TASKS)} ({len(tasks)} in all, listed in reasoning_gym.factory.DATASETS)"
    )


def _create(task: str, size: int, seed: int, options: dict):
    """The reasoning-gym dataset, with bad `task_options` turned into a `UserError`."""
    import reasoning_gym

    if "size" in options or "seed" in options:
        raise UserError("data.task_options may not set size or seed; use data.size, data.test_size and data.seed")
    try:
        return reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except (TypeError, ValueError, AssertionError) as e:
        config_cls = _registry()[task][1]
        names = [f.name for f in dataclasses.fields(config_cls)] if dataclasses.is_dataclass(config_cls) else []
        allowed = f"; options of {task}: {', '.join(n for n in names if n not in ('size', 'seed'))}" if names else ""
        raise UserError(f"data.task_options {options} rejected by reasoning-gym task {task!r}: {str(e) or type(e).__name__}{allowed}") from None


def generate(task: str, size: int, seed: int, options: dict, split: str) -> list[Problem]:
    """`size` problems of `task` drawn from `seed`, as `Problem`s with ids `<task>/<split>/<i>`."""
    dataset = _create(task, size, seed, options)
    problems = []
    for i in range(size):
        try:
            entry = dataset[i]
        except Exception as e:  # a generator failing mid-way is almost always an option it cannot meet
            raise UserError(f"synthetic:{task}: generating item {i} with options {options} failed: {type(e).__name__}: {e}") from None
        answer = entry.get("answer")
        if answer is None:
            raise UserError(
                f"synthetic:{task}: this reasoning-gym task has no single reference answer (it grades "
                f"with its own checker), so it cannot be used here; try one of {', '.join(EXAMPLE_TASKS)}"
            )
        problems.append(
            Problem(
                id=f"{task}/{split}/{i}",
                question=entry["question"],
                answer=str(answer),
                meta={"source": "synthetic", "task": task, "task_metadata": entry.get("metadata", {})},
            )
        )
    return problems


def open_task(cfg: DataConfig, task: str) -> Source:
    """A `Source` generating `task`: train from `cfg.seed`, test from a far-away seed (see top)."""
    if not task:
        raise UserError(f"synthetic: needs a reasoning-gym task name, e.g. synthetic:{EXAMPLE_TASKS[0]}")
    _check_task(task)
    if cfg.size < 1:
        raise UserError(f"data.size must be at least 1 for synthetic sources, got {cfg.size}")
    if cfg.test_size < 0:
        raise UserError(f"data.test_size must be 0 or more, got {cfg.test_size}")
    options = dict(cfg.task_options)
    test_seed = cfg.seed + TEST_SEED_OFFSET

    def read(split: str) -> list[Problem]:
        test = generate(task, cfg.test_size, test_seed, options, "test") if cfg.test_size else []
        if split == "test":
            return test
        return drop_overlap(generate(task, cfg.size, cfg.seed, options, "train"), test)

    return Source(name=f"synthetic:{task}", read=read, has_test=True)
