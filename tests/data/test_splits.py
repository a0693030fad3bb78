"""The seeded held-out split: deterministic, disjoint, prefix-stable, duplicates kept apart.

Run: .venv/bin/python -m pytest tests/data/test_splits.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.data import held_out_split, load_problems, normalise_question
from tinyr1.errors import UserError
from tinyr1.types import Problem

from .conftest import cfg


def _problems(n: int, duplicates: dict[int, int] | None = None) -> list[Problem]:
    """n problems `q<i>`; `duplicates` maps an index to the index whose question it repeats."""
    duplicates = duplicates or {}
    return [
        Problem(id=str(i), question=f"  Q{duplicates.get(i, i)} ?" if i in duplicates else f"q{i} ?", answer=str(i))
        for i in range(n)
    ]


def test_normalise_question_ignores_case_and_spacing():
    assert normalise_question("  What is\n2 + 2? ") == normalise_question("what IS 2 +  2?")


def test_same_seed_same_split_and_other_seed_other_split():
    ps = _problems(50)
    a = held_out_split(ps, 10, seed=7, name="t")
    assert held_out_split(ps, 10, seed=7, name="t") == a
    assert held_out_split(ps, 10, seed=8, name="t")[1] != a[1]


def test_train_and_test_are_disjoint_and_cover_everything():
    ps = _problems(50)
    train, test = held_out_split(ps, 10, seed=0, name="t")
    assert len(test) == 10 and len(train) == 40
    assert {p.id for p in train} | {p.id for p in test} == {p.id for p in ps}
    assert not {p.id for p in train} & {p.id for p in test}
    assert [p.id for p in train] == sorted((p.id for p in train), key=int)  # train keeps source order


def test_a_smaller_test_size_gives_a_prefix_of_a_larger_one():
    ps = _problems(50)
    small = held_out_split(ps, 5, seed=2, name="t")[1]
    large = held_out_split(ps, 20, seed=2, name="t")[1]
    assert large[:5] == small


def test_duplicates_of_a_test_question_are_dropped_from_train():
    # Every odd problem repeats its even neighbour's question, so any test pick has a twin.
    ps = _problems(20, duplicates={i: i - 1 for i in range(1, 20, 2)})
    train, test = held_out_split(ps, 5, seed=0, name="t")
    test_questions = {normalise_question(p.question) for p in test}
    assert not any(normalise_question(p.question) in test_questions for p in train)
    assert len(train) < 15  # twins went too


def test_test_size_zero_keeps_everything_for_training():
    ps = _problems(5)
    assert held_out_split(ps, 0, seed=0, name="t") == (ps, [])


def test_test_size_out_of_range_is_refused():
    with pytest.raises(UserError, match=r"data\.test_size=5 but demo has only 5 problems"):
        held_out_split(_problems(5), 5, seed=0, name="demo")
    with pytest.raises(UserError, match=r"data\.test_size must be 0 or more"):
        held_out_split(_problems(5), -1, seed=0, name="demo")


def test_held_out_split_from_a_folder_with_duplicate_questions(gsm8k_train_only):
    # Lines 6 and 9 of the fixture ask the same question (different case and spacing).
    twins = {"gsm8k/train/6", "gsm8k/train/9"}
    for seed in range(30):
        c = cfg(f"gsm8k:{gsm8k_train_only}", test_size=3, seed=seed)
        train, test = load_problems(c, "train"), load_problems(c, "test")
        assert not {p.id for p in train} & {p.id for p in test}
        if twins & {p.id for p in test}:
            assert not twins & {p.id for p in train}
        else:
            assert twins <= {p.id for p in train}


def test_test_split_with_test_size_zero_says_why(gsm8k_train_only):
    with pytest.raises(UserError, match=r"no problems left in the test split \(because of data\.test_size=0\)"):
        load_problems(cfg(f"gsm8k:{gsm8k_train_only}", test_size=0), "test")
