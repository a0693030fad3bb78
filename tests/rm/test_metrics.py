"""Reward-model metrics against hand-computed small examples."""

import pytest

from tinyr1.rm.metrics import Candidate, aggregate_steps, binary_f1, roc_auc, selection_accuracy


def test_auc_counts_pairs_with_ties_as_half():
    # positives 0.8, 0.5, 0.3; negatives 0.5, 0.1: pairs won 0.8>0.5, 0.8>0.1, 0.5=0.5 (half), 0.5>0.1, 0.3<0.5, 0.3>0.1
    # = (1 + 1 + 0.5 + 1 + 0 + 1) / 6 = 4.5 / 6
    assert roc_auc([0.8, 0.5, 0.5, 0.3, 0.1], [True, True, False, True, False]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0
    assert roc_auc([3, 2, 1], [True, True, True]) is None  # one class only: undefined


def test_f1_for_either_class():
    pred = [True, True, False, False, True]
    gold = [True, False, False, True, True]
    # correct-step class: tp 2, fp 1, fn 1 -> precision 2/3, recall 2/3, F1 2/3
    assert binary_f1(pred, gold)["f1"] == pytest.approx(2 / 3)
    # wrong-step class: tp 1 (index 2), fp 1 (index 3), fn 1 (index 1) -> 1/2
    assert binary_f1(pred, gold, positive=False) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert binary_f1([True], [True], positive=False)["f1"] == 0.0


def test_step_aggregations():
    steps = [0.9, 0.5, 0.8]
    assert aggregate_steps(steps, "min") == 0.5
    assert aggregate_steps(steps, "product") == pytest.approx(0.36)  # 0.9 * 0.5 * 0.8
    assert aggregate_steps(steps, "last") == 0.8
    assert aggregate_steps([], "min") == 0.0


def test_best_of_n_against_majority_vote_and_pass_at_1():
    groups = [
        # problem 1: the scorer picks the lone right answer (score 0.9); the majority (7, twice) is wrong
        [Candidate(0.2, False, "7"), Candidate(0.9, True, "8"), Candidate(0.3, False, "7")],
        # problem 2: the scorer picks a wrong one; the majority (5) is right
        [Candidate(0.1, True, "5"), Candidate(0.6, False, "6"), Candidate(0.4, True, "5")],
    ]
    acc = selection_accuracy(groups)
    assert acc["best_of_n"] == 0.5  # right on problem 1 only
    assert acc["majority"] == 0.5  # right on problem 2 only
    assert acc["pass@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert acc["pass@n"] == 1.0
    # the first two samples only: problem 1 picks 0.9 (right), problem 2 picks 0.6 (wrong); votes tie -> first seen
    two = selection_accuracy(groups, n=2)
    assert two["best_of_n"] == 0.5 and two["majority"] == 0.5  # "7" (wrong) and "5" (right) win their ties


def test_best_of_n_ties_go_to_the_first_sample_and_unparsed_answers_do_not_vote():
    acc = selection_accuracy([[Candidate(0.5, False, None), Candidate(0.5, True, None), Candidate(0.1, True, "3")]])
    assert acc["best_of_n"] == 0.0
    assert acc["majority"] == 1.0  # only "3" voted


def test_aggregation_changes_which_response_is_picked():
    a = [0.99, 0.45]  # min 0.45, product 0.4455, last 0.45
    b = [0.3, 0.5]  # min 0.3, product 0.15, last 0.5
    groups = {how: [Candidate(aggregate_steps(a, how), True), Candidate(aggregate_steps(b, how), False)] for how in ("min", "product", "last")}
    assert selection_accuracy([groups["min"]])["best_of_n"] == 1.0  # min and product pick A
    assert selection_accuracy([groups["product"]])["best_of_n"] == 1.0
    assert selection_accuracy([groups["last"]])["best_of_n"] == 0.0  # last picks B
