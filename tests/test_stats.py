"""Paired tests by hand: McNemar's exact p-values, the paired bootstrap interval, pairing by problem id.

Run: .venv/bin/python -m pytest tests/test_stats.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.errors import UserError
from tinyr1.stats import bootstrap_difference, compare, compare_seeds, mcnemar_exact, pair, sign_flip_exact


@pytest.mark.parametrize(
    "only_a, only_b, expected",
    [
        # b = 10, c = 2: n = 12, P(X <= 2) = (C(12,0) + C(12,1) + C(12,2)) / 2^12 = (1 + 12 + 66) / 4096 = 79 / 4096
        # p = 2 * 79 / 4096 = 0.038574
        (10, 2, 158 / 4096),
        # b = 0, c = 6: P(X <= 0) = 1 / 64; p = 2 / 64 = 0.03125
        (0, 6, 2 / 64),
        # b = 2, c = 15: n = 17, (1 + 17 + 136) / 131072 = 154 / 131072; p = 308 / 131072 = 0.00235 (< 0.01)
        (2, 15, 308 / 131072),
        # b = 3, c = 1: (C(4,0) + C(4,1)) / 16 = 5 / 16; p = 10 / 16 = 0.625
        (3, 1, 10 / 16),
        # b = c = 5: 2 * (1 + 10 + 45 + 120 + 210 + 252) / 1024 = 1276 / 1024 > 1: capped at 1
        (5, 5, 1.0),
        # b = 1, c = 0: 2 * P(X <= 0 | n = 1) = 2 * 1/2 = 1
        (1, 0, 1.0),
        # no discordant problem: no evidence either way
        (0, 0, 1.0),
    ],
)
def test_mcnemar_exact_by_hand(only_a, only_b, expected):
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(only_b, only_a) == pytest.approx(expected, rel=1e-12)  # two-sided: symmetric


def test_mcnemar_exact_at_large_counts_is_near_the_continuity_corrected_chi_square():
    # b = 300, c = 250: chi^2 = (|300 - 250| - 1)^2 / 550 = 2401 / 550 = 4.3655, p(chi^2_1 > 4.3655) = 0.0367;
    # the exact tail of Binomial(550, 1/2) agrees to about 1e-3 (and sums 2^550-sized integers without overflow)
    assert mcnemar_exact(300, 250) == pytest.approx(0.0367, abs=2e-3)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_bootstrap_interval_degenerate_cases():
    # every problem only B right: each resample's difference is exactly +1
    assert bootstrap_difference(10, 0, 10) == (1.0, 1.0)
    # no discordant problem: every resample's difference is 0
    assert bootstrap_difference(50, 0, 0) == (0.0, 0.0)
    assert bootstrap_difference(0, 0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_difference(5, 3, 3)


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    # n = 500, only A right 30, only B right 60: per-problem difference d in {+1 (60), -1 (30), 0 (410)}
    # mean 30/500 = 0.06; E[d^2] = 90/500 = 0.18; var = 0.18 - 0.06^2 = 0.1764; sd of the mean = sqrt(0.1764/500) = 0.018783
    # 95% interval ~ 0.06 +- 1.96 * 0.018783 = (0.0232, 0.0968)
    lo, hi = bootstrap_difference(500, 30, 60, seed=0)
    assert lo == pytest.approx(0.0232, abs=0.004) and hi == pytest.approx(0.0968, abs=0.004)
    assert bootstrap_difference(500, 30, 60, seed=0) == (lo, hi)  # the same seed gives the same interval
    other = bootstrap_difference(500, 30, 60, seed=1)
    assert other[0] == pytest.approx(lo, abs=0.004) and other[1] == pytest.approx(hi, abs=0.004)


def test_compare_matches_problems_by_id_not_by_order():
    a = {"p1": True, "p2": False, "p3": False, "p4": True}
    b = {"p4": True, "p3": True, "p2": True, "p1": False}
    c = compare(a, b)
    # only A: p1 (b = 1); only B: p2, p3 (c = 2); p = 2 * P(X <= 1 | n = 3) = 2 * (1 + 3) / 8 = 1.0
    assert (c.n, c.only_a, c.only_b, c.p_value) == (4, 1, 2, 1.0)
    assert (c.accuracy_a, c.accuracy_b, c.difference) == (0.5, 0.75, 0.25)
    lo, hi = c.difference_ci95
    assert lo <= 0.25 <= hi


def test_different_problem_sets_are_refused_naming_what_differs():
    with pytest.raises(UserError, match=r"different problems \(1 only in before \(p3\); 2 only in after \(p8, p9\)\)"):
        pair({"p1": True, "p2": True, "p3": False}, {"p1": True, "p2": False, "p8": True, "p9": True}, ("before", "after"))
    with pytest.raises(UserError, match="only in B"):
        compare({"p1": True}, {"p1": True, "p2": True})


@pytest.mark.parametrize("values, expected", [
    ([2, 4, 2], 0.25),      # 8 sign patterns; |sum| >= 8 only for all + and all -
    ([1, 1, 1], 0.25),      # |sum| >= 3: 2 of 8
    ([3, -1], 1.0),         # observed |2|; the patterns give 4, 2, -2, -4: all >= 2
    ([1, 1, 1, 1, 1, 1, 0], 2 / 64),  # zeros carry no sign
    ([0, 0], 1.0),
    ([], 1.0),
])
def test_sign_flip_exact_by_hand(values, expected):
    assert sign_flip_exact(values) == pytest.approx(expected)


@pytest.mark.parametrize("only_a, only_b", [(2, 10), (10, 8), (0, 5), (3, 3), (1, 25)])
def test_compare_seeds_with_one_run_a_side_is_mcnemar(only_a, only_b):
    a = {f"p{i}": i < only_a for i in range(40)}
    b = {f"p{i}": only_a <= i < only_a + only_b for i in range(40)}
    c = compare_seeds([a], [b])
    assert c.p_value == pytest.approx(mcnemar_exact(only_a, only_b))
    assert c.difference == pytest.approx((only_b - only_a) / 40) and c.differing == only_a + only_b
    assert c.difference_ci95 == pytest.approx(bootstrap_difference(40, only_a, only_b), abs=1 / 40 + 1e-9)  # other draws of the same law: within one problem


def test_compare_seeds_averages_each_problem_over_the_runs_by_hand():
    a1 = {"p1": True, "p2": False, "p3": False}
    a2 = {"p1": False, "p2": False, "p3": False}
    b1 = {"p1": True, "p2": True, "p3": True}
    b2 = {"p3": False, "p2": True, "p1": True}  # matched by id
    c = compare_seeds([a1, a2], [b1, b2])
    # per problem B - A: p1 1 - 1/2, p2 1 - 0, p3 1/2 - 0 = (1/2, 1, 1/2), mean 2/3; scaled by 2 x 2: (2, 4, 2)
    assert (c.n, c.runs_a, c.runs_b, c.differing) == (3, 2, 2, 3)
    assert c.accuracy_a == pytest.approx(1 / 6) and c.accuracy_b == pytest.approx(5 / 6)
    assert c.difference == pytest.approx(2 / 3) and c.p_value == pytest.approx(0.25)
    lo, hi = c.difference_ci95
    assert 0.5 - 1e-9 <= lo < hi <= 1 + 1e-9  # a resample's mean of values from (1/2, 1, 1/2) lies in [1/2, 1]


def test_compare_seeds_refuses_a_run_on_other_problems_naming_it():
    with pytest.raises(UserError, match=r"cannot pair outcome run 1 with process run 2: .*1 only in outcome run 1 \(p3\)"):
        compare_seeds([{"p1": True, "p2": False, "p3": True}], [{"p1": True, "p2": True, "p3": False},
                                                                 {"p1": True, "p2": True}], ("outcome", "process"))
