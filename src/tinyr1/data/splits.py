"""Train/test splits: the `Source` record every loader returns, and the seeded held-out split.

The rule (the same for every source):

1. A source with a real test split (a GSM8K folder with `test.jsonl`, a MATH folder with
   `test/`, a hub dataset) uses it as is: `train` is its train split, `test` its test split.
2. A source without one (a GSM8K folder with only `train.jsonl`, a MATH folder with only
   `train/`, a `jsonl:` file) gets a held-out test split of `cfg.test_size` problems, drawn
   with `random.Random(cfg.seed)` from the whole training data:
   - `test` is the first `test_size` problems of a seeded permutation, in that (random) order,
     so any prefix of it (`eval.limit`) is itself a uniform sample, and a smaller `test_size`
     gives a prefix of a larger one;
   - `train` is every other problem, in source order, minus any problem whose normalised
     question (case-folded, whitespace collapsed) equals a test question, so a duplicated
     question can never sit on both sides;
   - held-out problems keep their original ids (`gsm8k/train/17`), which say where they came from.
3. MATH's subject and level filters apply *after* the split, to both sides. The held-out set is
   therefore the same whatever filters a run uses (a model trained on all of MATH is never
   evaluated on its own training problems when evaluation narrows to one level); the price is
   that with filters the test split holds only the held-out problems that pass them, fewer than
   `test_size`.
4. Synthetic tasks generate `train` (`cfg.size` problems) and `test` (`cfg.test_size` problems)
   from seeds far apart, and drop from train any question that also appears in test (see
   synthetic.py).

Run the tests: `.venv/bin/python -m pytest tests/data/test_splits.py -q`
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from tinyr1.errors import UserError
from tinyr1.types import Problem

SPLITS = ("train", "test")  # the split names load_problems accepts


@dataclass(frozen=True)
class Source:
    """An opened problem source: how to read each split it has, and what to keep afterwards."""

    name: str
    """The `scheme:location` string, used in messages."""
    read: Callable[[str], list[Problem]]
    """Split name -> every problem of that split, in a fixed order."""
    has_test: bool = False
    """Whether the source has a test split of its own; without one, test is held out of train."""
    keep: Callable[[Problem], bool] | None = None
    """Filter applied after splitting (MATH subjects and levels); None keeps everything."""
    filters: str = ""
    """The active filters spelled for messages (`subjects=['algebra'] levels=[5]`)."""


def normalise_question(text: str) -> str:
    """Case-folded text with runs of whitespace collapsed: the key for duplicate questions."""
    return " ".join(text.casefold().split())


def drop_overlap(train: list[Problem], test: list[Problem]) -> list[Problem]:
    """`train` without the problems whose normalised question appears in `test`."""
    seen = {normalise_question(p.question) for p in test}
    return [p for p in train if normalise_question(p.question) not in seen]


def held_out_split(
    problems: list[Problem], test_size: int, seed: int, name: str
) -> tuple[list[Problem], list[Problem]]:
    """Split `problems` into (train, test) with `test_size` seeded held-out problems (rule 2 above).

    `name` is the source, for messages. Raises `UserError` when `test_size` is negative or leaves
    no problem to train on.

    >>> from tinyr1.types import Problem
    >>> ps = [Problem(id=str(i), question=f"q{i}", answer=str(i)) for i in range(5)]
    >>> train, test = held_out_split(ps, 2, seed=0, name="demo")
    >>> len(train), len(test), set(p.id for p in train) & set(p.id for p in test)
    (3, 2, set())
    """
    if test_size < 0:
        raise UserError(f"data.test_size must be 0 or more, got {test_size}")
    if test_size >= len(problems):
        raise UserError(
            f"data.test_size={test_size} but {name} has only {len(problems)} problems and no test "
            f"split of its own; choose a data.test_size below {len(problems)} so some are left to train on"
        )
    order = list(range(len(problems)))
    # The permutation depends only on the seed and the data size, not on test_size: a smaller
    # test_size gives a prefix of a larger one.
    random.Random(seed).shuffle(order)
    test_idx = order[:test_size]
    chosen = set(test_idx)
    test = [problems[i] for i in test_idx]
    train = drop_overlap([p for i, p in enumerate(problems) if i not in chosen], test)
    return train, test
