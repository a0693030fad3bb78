"""Difficulty = calculation steps (`<<...>>` notes) of GSM8K-style solutions: counted exactly, filters
on the training split only, a clear error where there is nothing to count, the curriculum's phases.

Run: .venv/bin/python -m pytest tests/data/test_difficulty.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.data import load_problems
from tinyr1.data.difficulty import calculation_steps, phase_at, within_steps
from tinyr1.errors import UserError
from tinyr1.types import Problem

from .conftest import FIXTURES, GSM8K, JSONL, MATH, cfg

STEPS = FIXTURES / "GSM8K_steps"  # 16 problems: 2 with 0 steps, 5 with 1, 4 with 2, 3 with 3, 2 with 4 (README.md)
EXPECTED = [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4]


def test_steps_are_counted_exactly_on_the_fixture_solutions():
    problems = load_problems(cfg(f"gsm8k:{STEPS}", test_size=0), "train")
    assert [calculation_steps(p) for p in problems] == EXPECTED
    # the seed-format fixture: one annotation a line, line 3 two, line 9 none (its solution is plain `12 * 5 = 60`)
    problems = load_problems(cfg(f"gsm8k:{GSM8K}"), "train")
    assert [calculation_steps(p) for p in problems] == [1, 1, 2, 1, 1, 1, 1, 1, 0, 1, 1, 1]
    assert calculation_steps(Problem("s", "1 + 1?", "2")) is None  # no solution: no count


@pytest.mark.parametrize("low, high, kept", [
    (None, None, EXPECTED), (None, 1, [0, 0, 1, 1, 1, 1, 1]), (2, None, [2, 2, 2, 2, 3, 3, 3, 4, 4]),
    (2, 3, [2, 2, 2, 2, 3, 3, 3]), (4, 4, [4, 4]), (5, None, []),
])
def test_within_steps_keeps_the_closed_range(low, high, kept):
    problems = load_problems(cfg(f"gsm8k:{STEPS}", test_size=0), "train")
    assert [calculation_steps(p) for p in within_steps(problems, low, high)] == kept


def test_step_filters_narrow_the_train_split_only():
    full = cfg(f"gsm8k:{STEPS}", test_size=4, seed=3)
    narrow = cfg(f"gsm8k:{STEPS}", test_size=4, seed=3, min_steps=2, max_steps=3)
    assert [p.id for p in load_problems(narrow, "test")] == [p.id for p in load_problems(full, "test")]
    test_ids = {p.id for p in load_problems(full, "test")}
    train = load_problems(narrow, "train")
    assert all(2 <= calculation_steps(p) <= 3 for p in train) and not test_ids & {p.id for p in train}
    assert [p.id for p in train] == [p.id for p in load_problems(full, "train") if 2 <= calculation_steps(p) <= 3]


def test_an_empty_selection_names_the_step_keys():
    with pytest.raises(UserError, match=r"no problems left in the train split \(because of data.min_steps=9"):
        load_problems(cfg(f"gsm8k:{STEPS}", test_size=4, min_steps=9), "train")


@pytest.mark.parametrize("source, fields", [
    (f"jsonl:{JSONL}", {"question_field": "prompt", "answer_field": "target"}), (f"math:{MATH}", {})])
def test_sources_without_annotations_are_refused_with_a_step_filter(source, fields):
    with pytest.raises(UserError, match="no training problem of .* has a reference solution with <<...>> calculator"):
        load_problems(cfg(source, test_size=1, max_steps=2, **fields), "train")
    assert load_problems(cfg(source, test_size=1, **fields), "train")  # without one, nothing changes


def test_phase_at_picks_the_last_phase_started():
    curriculum = [[0, 2], [100, 4], [200, None]]
    assert [phase_at(curriculum, s) for s in (1, 99, 100, 199, 200, 10_000)] == [
        (0, 2), (0, 2), (1, 4), (1, 4), (2, None), (2, None)]
