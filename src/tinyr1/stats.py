"""Paired tests of two evaluations on the same problems: McNemar's exact test and a paired bootstrap.

Two runs evaluated on the same held-out problems are compared problem by problem, not by whether
their accuracy intervals overlap (two overlapping 95% Wilson intervals can still hide a
significant paired difference, since most problems are answered alike by both runs). Each problem
falls in one of four cells: both right, only A right (`only_a`, b), only B right (`only_b`, c),
both wrong. Only the discordant problems (b + c) carry information about which run is better:

- McNemar's exact test (McNemar 1947; the exact binomial form): under "A and B are equally good",
  each discordant problem goes either way with probability 1/2, so b ~ Binomial(b + c, 1/2).
  Two-sided p = min(1, 2 * P(X <= min(b, c))); p = 1 with no discordant problem.
- Paired bootstrap of the accuracy difference B - A (Efron & Tibshirani 1993): resample the n
  problems with replacement, recompute the difference, take the 2.5% and 97.5% quantiles (a
  percentile interval). Resampling n problems from the four cells is a multinomial draw of the
  cell counts, which is how it is computed (numpy, seeded): exact, and fast for any n.

    >>> compare({"p1": True, "p2": False, "p3": False}, {"p1": True, "p2": True, "p3": True}).only_b
    2
    >>> round(mcnemar_exact(10, 2), 4)
    0.0386

Several seeds of two methods (`compare_seeds`): each problem's correctness is averaged over a
method's runs, d_i = mean_B - mean_A, and the mean of d is tested by the exact paired sign-flip
(permutation) test: under "the methods are equally good" each d_i is as likely to have either sign,
so p = P(|sum e_i |d_i|| >= |sum d_i|) over the 2^k sign patterns of the k problems with d_i != 0,
computed exactly (a convolution over the integer grid d_i * runs_A * runs_B). With one run a side it
is McNemar's exact test. Its interval is the paired bootstrap over problems of mean d. This tests
the problems, not the seeds: with two seeds a side it says whether the seed-averaged difference is
larger than the problems' noise, not how another pair of seeds would fall.

Pure: no file, model or config; problems are matched by id, and differing problem sets are
refused (`UserError`), since an unpaired difference is not what these tests measure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tinyr1.errors import UserError

RESAMPLES = 10_000  # bootstrap resamples: the interval's ends move by about 0.1 point between seeds at n = 500


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b = `only_a`, c = `only_b`.

    p = min(1, 2 * sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c)); 1.0 when b + c = 0.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers, one division: no underflow at large n


def bootstrap_difference(n: int, only_a: int, only_b: int, resamples: int = RESAMPLES, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of accuracy(B) - accuracy(A) over `resamples` paired bootstrap resamples.

    Each resample draws n problems with replacement; a problem adds +1/n (only B right), -1/n
    (only A right) or 0, so only the counts of the two discordant cells matter.
    """
    if n <= 0:
        return (0.0, 0.0)
    if not (0 <= only_a and 0 <= only_b and only_a + only_b <= n):
        raise ValueError(f"discordant counts {only_a} + {only_b} do not fit in n = {n} problems")
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, [only_b / n, only_a / n, (n - only_a - only_b) / n], size=resamples)
    differences = (cells[:, 0] - cells[:, 1]) / n
    lo, hi = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class PairedComparison:
    """Two evaluations of the same n problems, A then B; `difference` and its interval are B - A."""

    n: int  # problems both evaluated
    accuracy_a: float
    accuracy_b: float
    only_a: int  # problems only A answered correctly (b)
    only_b: int  # problems only B answered correctly (c)
    p_value: float  # McNemar exact, two-sided
    difference: float  # accuracy_b - accuracy_a
    difference_ci95: tuple[float, float]  # paired bootstrap percentile interval


def pair(a: Mapping[str, bool], b: Mapping[str, bool], names: tuple[str, str] = ("A", "B")) -> list[tuple[bool, bool]]:
    """(A correct, B correct) per problem id, in A's order; `UserError` when the id sets differ."""
    missing_b, missing_a = [k for k in a if k not in b], [k for k in b if k not in a]
    if missing_a or missing_b:
        def few(ids):
            return ", ".join(map(str, ids[:3])) + (", ..." if len(ids) > 3 else "")

        parts = [f"{len(ids)} only in {who} ({few(ids)})" for ids, who in ((missing_b, names[0]), (missing_a, names[1])) if ids]
        raise UserError(f"cannot pair {names[0]} with {names[1]}: they were evaluated on different problems "
                        f"({'; '.join(parts)}); a paired test needs the same held-out problems on both sides")
    return [(bool(a[k]), bool(b[k])) for k in a]


def compare(a: Mapping[str, bool], b: Mapping[str, bool], names: tuple[str, str] = ("A", "B"), seed: int = 0,
            resamples: int = RESAMPLES) -> PairedComparison:
    """McNemar's exact test and the paired bootstrap interval of B - A, problems matched by id."""
    pairs = pair(a, b, names)
    n = len(pairs)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    acc_a = sum(x for x, _ in pairs) / n if n else 0.0
    acc_b = sum(y for _, y in pairs) / n if n else 0.0
    return PairedComparison(n=n, accuracy_a=acc_a, accuracy_b=acc_b, only_a=only_a, only_b=only_b,
                            p_value=mcnemar_exact(only_a, only_b), difference=acc_b - acc_a,
                            difference_ci95=bootstrap_difference(n, only_a, only_b, resamples, seed))


@dataclass(frozen=True)
class SeedComparison:
    """Methods A and B, several runs (seeds) each, on the same n problems; B - A of seed-averaged accuracy."""

    n: int
    runs_a: int
    runs_b: int
    accuracy_a: float  # mean over A's runs
    accuracy_b: float
    differing: int  # problems whose seed-averaged correctness differs between A and B
    p_value: float  # exact paired sign-flip test, two-sided
    difference: float  # accuracy_b - accuracy_a
    difference_ci95: tuple[float, float]  # paired bootstrap over problems


def sign_flip_exact(values: Sequence[int]) -> float:
    """Two-sided exact sign-flip p-value of integer per-problem differences: P(|sum e_i |v_i|| >= |sum v_i|)
    with each sign e_i = +-1 equally likely; 1.0 when every value is 0.

        >>> sign_flip_exact([2, 4, 2])   # 8 sign patterns, |sum| >= 8 only for all + and all -
        0.25
    """
    mags = [abs(int(v)) for v in values if v]
    observed = abs(sum(int(v) for v in values))
    if not mags:
        return 1.0
    total = sum(mags)
    dist = np.zeros(2 * total + 1)  # dist[s + total] = P(sum of signed magnitudes so far = s)
    dist[total] = 1.0
    for m in mags:
        dist = 0.5 * (np.roll(dist, m) + np.roll(dist, -m))  # no wrap-around: |partial sums| <= total
    sums = np.arange(-total, total + 1)
    return float(min(1.0, dist[np.abs(sums) >= observed].sum()))


def compare_seeds(a: Sequence[Mapping[str, bool]], b: Sequence[Mapping[str, bool]], names: tuple[str, str] = ("A", "B"),
                  seed: int = 0, resamples: int = RESAMPLES, level: float = 0.95) -> SeedComparison:
    """Seed-averaged B - A on the same problems: exact sign-flip test and paired bootstrap interval.

    `a` and `b`: one {problem id: correct} per run; every run must hold the same problems (`UserError`).
    """
    if not a or not b:
        raise ValueError("compare_seeds needs at least one run on each side")
    labelled = [(f"{names[0]} run {i + 1}", r) for i, r in enumerate(a)] + [(f"{names[1]} run {i + 1}", r) for i, r in enumerate(b)]
    for label, run in labelled[1:]:
        pair(a[0], run, (labelled[0][0], label))
    ids = list(a[0])
    n, unit = len(ids), len(a) * len(b)
    if n == 0:
        return SeedComparison(n=0, runs_a=len(a), runs_b=len(b), accuracy_a=0.0, accuracy_b=0.0, differing=0, p_value=1.0,
                              difference=0.0, difference_ci95=(0.0, 0.0))
    right_a = np.array([[bool(run[k]) for k in ids] for run in a], dtype=np.int64).sum(0)  # per problem, runs right
    right_b = np.array([[bool(run[k]) for k in ids] for run in b], dtype=np.int64).sum(0)
    scaled = len(a) * right_b - len(b) * right_a  # d_i * runs_a * runs_b: integers
    values, counts = np.unique(scaled, return_counts=True)  # resampling n problems = a multinomial draw of the counts
    cells = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    lo, hi = np.quantile(cells @ values / (n * unit), [(1 - level) / 2, (1 + level) / 2])
    return SeedComparison(n=n, runs_a=len(a), runs_b=len(b), accuracy_a=float(right_a.sum() / (n * len(a))),
                          accuracy_b=float(right_b.sum() / (n * len(b))), differing=int((scaled != 0).sum()),
                          p_value=sign_flip_exact(scaled.tolist()), difference=float(scaled.sum() / (n * unit)),
                          difference_ci95=(float(lo), float(hi)))
