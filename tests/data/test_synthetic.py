"""reasoning-gym tasks: seeded, train and test apart, clear messages for bad tasks and options.

Run: .venv/bin/python -m pytest tests/data/test_synthetic.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.data import load_problems, normalise_question
from tinyr1.errors import UserError

from .conftest import cfg


@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum", "gsm_symbolic", "gcd"])
def test_tasks_generate_the_same_problems_for_the_same_seed(task):
    c = cfg(f"synthetic:{task}", size=30, test_size=10, seed=4)
    train, test = load_problems(c, "train"), load_problems(c, "test")
    assert load_problems(c, "train") == train and load_problems(c, "test") == test
    assert len(test) == 10 and 0 < len(train) <= 30
    assert all(p.question and p.answer and isinstance(p.answer, str) for p in train + test)
    assert train[0].id == f"{task}/train/0" and test[0].id == f"{task}/test/0"
    assert train[0].meta["source"] == "synthetic" and train[0].meta["task"] == task


def test_another_seed_gives_other_problems():
    a = load_problems(cfg("synthetic:chain_sum", size=20, seed=0), "train")
    b = load_problems(cfg("synthetic:chain_sum", size=20, seed=1), "train")
    assert [p.question for p in a] != [p.question for p in b]


def test_train_never_shares_a_question_with_test_even_on_a_tiny_task():
    # Two one-digit terms: only ~200 distinct questions, so 300 + 100 draws must collide.
    c = cfg("synthetic:chain_sum", size=300, test_size=100, task_options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1})
    train, test = load_problems(c, "train"), load_problems(c, "test")
    test_questions = {normalise_question(p.question) for p in test}
    assert not any(normalise_question(p.question) in test_questions for p in train)
    assert len(train) < 300  # collisions were dropped, not kept


def test_test_set_does_not_depend_on_train_size():
    small = load_problems(cfg("synthetic:basic_arithmetic", size=10, test_size=5), "test")
    large = load_problems(cfg("synthetic:basic_arithmetic", size=50, test_size=5), "test")
    assert small == large


def test_task_options_reach_the_generator():
    train = load_problems(cfg("synthetic:chain_sum", size=10, test_size=2, task_options={"min_terms": 4, "max_terms": 4}), "train")
    assert all(p.meta["task_metadata"]["num_terms"] == 4 for p in train)


def test_unknown_task_is_named_with_known_ones():
    with pytest.raises(UserError, match=r"unknown reasoning-gym task 'basic_arithmatic'; did you mean basic_arithmetic.*chain_sum, gsm_symbolic"):
        load_problems(cfg("synthetic:basic_arithmatic"), "train")


def test_unknown_option_is_refused_listing_the_task_options():
    with pytest.raises(UserError, match=r"data\.task_options \{'max_term': 3\} rejected by reasoning-gym task 'chain_sum'.*options of chain_sum: .*max_terms"):
        load_problems(cfg("synthetic:chain_sum", size=5, task_options={"max_term": 3}), "train")


def test_invalid_option_value_is_refused():
    with pytest.raises(UserError, match=r"rejected by reasoning-gym task 'chain_sum'"):
        load_problems(cfg("synthetic:chain_sum", size=5, task_options={"min_terms": 5, "max_terms": 2}), "train")


def test_size_and_seed_cannot_hide_in_task_options():
    with pytest.raises(UserError, match=r"may not set size or seed"):
        load_problems(cfg("synthetic:chain_sum", task_options={"seed": 3}), "train")


def test_task_without_a_reference_answer_is_refused():
    with pytest.raises(UserError, match=r"synthetic:boxnet: this reasoning-gym task has no single reference answer"):
        load_problems(cfg("synthetic:boxnet", size=2, test_size=1), "train")


def test_bad_sizes_are_refused():
    with pytest.raises(UserError, match=r"data\.size must be at least 1"):
        load_problems(cfg("synthetic:chain_sum", size=0), "train")
    with pytest.raises(UserError, match=r"test split \(because of data\.test_size=0\)"):
        load_problems(cfg("synthetic:chain_sum", size=3, test_size=0), "test")
