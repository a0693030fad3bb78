"""Evaluation statistics by hand: Wilson interval, unbiased pass@k, majority vote."""

import pytest

from tinyr1.evaluation import majority_correct, pass_at_k, wilson_interval


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: z^2 = 3.8415; denom = 1 + 3.8415/10 = 1.38415
    # centre = (0.8 + 3.8415/20) / 1.38415 = 0.99208 / 1.38415 = 0.71674
    # half = 1.96 * sqrt(0.8*0.2/10 + 3.8415/400) / 1.38415 = 1.96 * 0.16001 / 1.38415 = 0.22658
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.71674 - 0.22658, abs=1e-4)
    assert hi == pytest.approx(0.71674 + 0.22658, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    lo, hi = wilson_interval(0, 20)  # never below 0, and not the degenerate (0, 0) of the normal interval
    assert lo == 0.0 and hi == pytest.approx(3.8415 / 20 / (1 + 3.8415 / 20), abs=1e-4)


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples: some correct one is always drawn


def test_majority_vote():
    assert majority_correct(["3", "4", " 3", None], [True, False, True, False]) is True
    assert majority_correct(["4", "3"], [False, True]) is False  # tie: the answer seen first wins
    assert majority_correct([None, None], [False, False]) is False
    assert majority_correct(["5", None, None], [True, False, False]) is True  # no answer does not vote
