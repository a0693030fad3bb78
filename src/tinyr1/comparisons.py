"""The report's paired comparisons, from the per-problem rows a training run saves for each held-out
evaluation (`tinyr1.eval_files`; summary.json names the files of eval_before and eval_after).

- each run after training against itself before, on the same problems (`self_test`);
- run against run, when two runs were evaluated on the same held-out problems (`pairwise`), and
  each run against the base model its chain started from (`base_entries`: a GRPO run trained
  from an SFT run folder is compared with the model the SFT run started from);
- strict and last-number-fallback accuracy of the same responses (`other_grading`), since GSM8K
  results are headlined strict (`grading.fallback: false`, the `####` answer only) and a strict
  run also shows, labelled, what the fallback would have given;
- methods over seeds (`seed_groups`, `seed_pairs`): runs whose configs differ only in `run.seed`
  (and the run's name, output and logging keys) are seeds of one method; two methods with at least
  two seeds each, evaluated on the same problems, are compared by their seed-averaged accuracy
  (`tinyr1.stats.compare_seeds`: exact sign-flip test, paired bootstrap), the comparison a claim
  about a method should rest on;
- the held-out behaviour before -> after (`behaviour`): mean response tokens, truncation and
  self-check rates (`tinyr1.behaviour`).

Every test is McNemar's exact test with a paired bootstrap interval (`tinyr1.stats`), on the
verdicts of each run's own grading; two runs graded differently are compared on strict verdicts,
which every saved row can give. p-values are per comparison, not corrected for multiple comparisons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyr1 import eval_files
from tinyr1.stats import PairedComparison, SeedComparison, compare, compare_seeds

STRICT, FALLBACK = "strict", "fallback"
NONE = "-"
PAIRED_NOTE = (
    "p: McNemar's exact test (two-sided) of the run after training against itself before, on the same held-out "
    "problems: only the problems exactly one of the two answered correctly count. grading: `strict` takes only the "
    "answer style's marker (for GSM8K the `####` line, `grading.fallback: false`), `fallback` also the last number "
    "of a response without it; the other-grading column re-grades the same saved responses the other way.")


@dataclass
class Evals:
    """A run's saved held-out rows and how they were graded."""

    before: list[dict[str, Any]] | None  # greedy rows of the evaluation before training; None when not saved
    after: list[dict[str, Any]] | None
    grading: str  # STRICT or FALLBACK: the run's `grading.fallback`
    style: str  # the answer style (`prompt.style`), to re-grade with
    timeout: float  # `grading.timeout`, seconds per answer check


def load_evals(path: Path, summary: dict[str, Any], config: dict[str, Any]) -> Evals:
    """The rows named by summary.json's `eval_before.rows_file` / `eval_after.rows_file`, or that
    file gzipped (`<name>.gz`: an archived run); None for a record without one, or a file no
    longer there (a run copied without its eval/ folder)."""

    def rows(key: str) -> list[dict[str, Any]] | None:
        name = (summary.get(key) or {}).get("rows_file") if isinstance(summary.get(key), dict) else None
        if not isinstance(name, str):
            return None
        found = [p for p in (path / name, path / f"{name}.gz") if p.is_file()]
        return eval_files.read_rows(found[0]) if found else None

    grading, prompt = config.get("grading") or {}, config.get("prompt") or {}
    return Evals(before=rows("eval_before"), after=rows("eval_after"),
                 grading=FALLBACK if grading.get("fallback", True) else STRICT,
                 style=str(prompt.get("style", "boxed")), timeout=float(grading.get("timeout", 5.0)))


def _verdicts(rows: list[dict[str, Any]], strict: bool, where: str) -> dict[str, bool]:
    return eval_files.by_id(rows, eval_files.strict_correct if strict else (lambda r: r["correct"]), where)


def _same_problems(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return sorted(r["id"] for r in a) == sorted(r["id"] for r in b)


def self_test(name: str, ev: Evals) -> PairedComparison | None:
    """After vs before training, paired on the run's held-out problems; None without both files
    or when they hold different problems (e.g. `run.eval_size` changed on resume)."""
    if not (ev.before and ev.after and _same_problems(ev.before, ev.after)):
        return None
    return compare(_verdicts(ev.before, False, f"{name} before"), _verdicts(ev.after, False, f"{name} after"),
                   (f"{name} before", f"{name} after"))


def pairwise(runs: list[tuple[str, Evals]]) -> list[tuple[str, str, PairedComparison, str]]:
    """(A, B, comparison of B's after with A's, grading used) for every pair of runs in order whose
    after-training rows cover the same problems."""
    out = []
    for i, (name_a, a) in enumerate(runs):
        for name_b, b in runs[i + 1 :]:
            if not (a.after and b.after and _same_problems(a.after, b.after)):
                continue
            strict = a.grading != b.grading or a.grading == STRICT
            c = compare(_verdicts(a.after, strict, name_a), _verdicts(b.after, strict, name_b), (name_a, name_b))
            out.append((name_a, name_b, c, STRICT if strict else FALLBACK))
    return out


def base_entries(runs: list[tuple[str, str, Evals]], run_models: set[str]) -> list[tuple[str, Evals]]:
    """Entries for `pairwise` holding the base models' evaluations: the rows before training of each
    run (name, model, evals) whose model is not itself a reported run (`run_models`: the runs'
    folders), one per model and problem set, as `base (<model>)` with those rows as its `after`."""
    out, seen = [], set()
    for _, model, ev in runs:
        key = (model, tuple(sorted(r["id"] for r in ev.before or ())))
        if not ev.before or model in run_models or key in seen:
            continue
        seen.add(key)
        out.append((f"base ({model})", Evals(before=None, after=ev.before, grading=ev.grading, style=ev.style,
                                             timeout=ev.timeout)))
    return out


# `run` keys that name, place or log a run without changing what it trains: runs differing only in
# these and `run.seed` are seeds of one method.
NOT_METHOD_KEYS = ("name", "seed", "output_dir", "eval_every", "save_every", "log_samples", "report_to", "project",
                   "progress")


def method_key(config: dict[str, Any]) -> str:
    """The config as a canonical string, without `run.seed` and the keys of NOT_METHOD_KEYS."""
    run = {k: v for k, v in (config.get("run") or {}).items() if k not in NOT_METHOD_KEYS}
    return json.dumps(config | {"run": run}, sort_keys=True, default=str)


def seed_groups(runs: list[tuple[str, str, Evals]]) -> list[list[tuple[str, Evals]]]:
    """Runs (name, method key, evals) with after-training rows, grouped by method key in first-seen
    order; only groups of two runs or more (the seeds of one method)."""
    groups: dict[str, list[tuple[str, Evals]]] = {}
    for name, key, ev in runs:
        if ev.after:
            groups.setdefault(key, []).append((name, ev))
    return [g for g in groups.values() if len(g) >= 2]


def seed_pairs(groups: list[list[tuple[str, Evals]]]) -> list[tuple[str, str, SeedComparison, str]]:
    """(A's runs, B's runs, seed-averaged comparison, grading) for every two groups whose runs' after
    rows all cover the same problems; strict verdicts when any run was graded strictly."""
    out = []
    for i, group_a in enumerate(groups):
        for group_b in groups[i + 1 :]:
            runs = group_a + group_b
            if not all(_same_problems(runs[0][1].after, ev.after) for _, ev in runs[1:]):
                continue
            strict = any(ev.grading == STRICT for _, ev in runs)
            name_a, name_b = (" + ".join(name for name, _ in g) for g in (group_a, group_b))
            c = compare_seeds([_verdicts(ev.after, strict, name) for name, ev in group_a],
                              [_verdicts(ev.after, strict, name) for name, ev in group_b], (name_a, name_b))
            out.append((name_a, name_b, c, STRICT if strict else FALLBACK))
    return out


def other_grading(ev: Evals, rows: list[dict[str, Any]] | None) -> tuple[str, float] | None:
    """The accuracy of `rows` under the grading the run did not use: (label, accuracy).

    A strict run: its responses re-graded with the last-number fallback; a fallback run: strict
    verdicts (correct with the marker found). None without rows."""
    if not rows:
        return None
    if ev.grading == STRICT:
        ok = [eval_files.fallback_correct(r, ev.style, ev.timeout) for r in rows]
        return "last-number fallback", sum(ok) / len(ok)
    return STRICT, sum(eval_files.strict_correct(r) for r in rows) / len(rows)


def grading_cells(ev: Evals | None, rows: list[dict[str, Any]] | None) -> list[str]:
    """Table cells [grading, the other grading's accuracy of the same responses]; `-` without rows."""
    if ev is None:
        return [NONE, NONE]
    other = other_grading(ev, rows)
    return [ev.grading, f"{other[0]}: {other[1]:.1%}" if other else NONE]


def behaviour(rows: list[dict[str, Any]] | None) -> dict[str, float] | None:
    """Mean response tokens, truncated share and self-check share of held-out rows (None without rows)."""
    if not rows:
        return None
    n = len(rows)
    return {"tokens": sum(r.get("tokens", 0) for r in rows) / n,
            "truncated": sum(not r.get("finished", True) for r in rows) / n,
            "self_check": sum(bool(r.get("self_check")) for r in rows) / n}


def fmt_p(p: float) -> str:
    """`0.0031`, `< 0.0001`, `1.000`: four decimals under 0.1, three above."""
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:.4f}" if p < 0.1 else f"{p:.3f}"


def significance(p: float) -> str:
    """How a paired p-value reads, at the 0.01 and 0.05 levels.

        >>> significance(0.0072), significance(3e-7)
        ('significant (p = 0.0072 < 0.01)', 'significant (p < 0.0001)')
    """
    if p < 1e-4:
        return "significant (p < 0.0001)"
    if p < 0.01:
        return f"significant (p = {fmt_p(p)} < 0.01)"
    if p < 0.05:
        return f"significant at the 0.05 level but not at 0.01 (p = {fmt_p(p)})"
    return f"not significant (p = {fmt_p(p)})"


def fmt_difference(c: PairedComparison | SeedComparison) -> str:
    """`+6.0 [+2.3, +9.7]`: B - A in points with its 95% paired bootstrap interval."""
    lo, hi = c.difference_ci95
    return f"{100 * c.difference:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


# ----------------------------------------------------------------------------- report sections


def paired_section(pairs: list[tuple[str, str, PairedComparison, str]]) -> list[str]:
    """The run-vs-run section: one row per pair of runs evaluated on the same held-out problems."""
    if not pairs:
        return []
    lines = ["## Paired comparisons", "",
             ("Runs after training, and the base models they started from (before training), compared problem by "
              "problem where they were evaluated on the same held-out problems: the difference B - A with its 95% "
              "paired bootstrap interval, and McNemar's exact test (p-values are per comparison, not corrected for "
              "multiple comparisons)."), "",
             "| A | B | n | A accuracy | B accuracy | B - A (points) | only A right | only B right | p | grading |",
             "|" + " --- |" * 10]
    for a, b, c, grading in pairs:
        lines.append(_line([a, b, str(c.n), f"{c.accuracy_a:.1%}", f"{c.accuracy_b:.1%}", fmt_difference(c),
                            str(c.only_a), str(c.only_b), fmt_p(c.p_value), grading]))
    return lines + [""]


def seeds_section(pairs: list[tuple[str, str, SeedComparison, str]]) -> list[str]:
    """The methods-over-seeds section: one row per two methods with two seeds or more each."""
    if not pairs:
        return []
    lines = ["## Methods over seeds", "",
             ("Runs whose configs differ only in `run.seed` (and name, output and logging keys) are seeds of one method. "
              "Two such methods on the same held-out problems: each problem's correctness averaged over a method's runs, "
              "B - A with its 95% paired bootstrap interval over problems, and the exact sign-flip test of the mean "
              "difference (McNemar's exact test with one run a side). It tests the problems, not the seeds: it says whether "
              "the seed-averaged difference stands out of the problems' noise, not how other seeds would fall."), "",
             "| A (runs) | B (runs) | n | A mean accuracy | B mean accuracy | B - A (points) | problems differing | p | grading |",
             "|" + " --- |" * 9]
    for a, b, c, grading in pairs:
        lines.append(_line([a, b, str(c.n), f"{c.accuracy_a:.1%}", f"{c.accuracy_b:.1%}", fmt_difference(c),
                            str(c.differing), fmt_p(c.p_value), grading]))
    return lines + [""]


def behaviour_section(runs: list[tuple[str, Evals]]) -> list[str]:
    """Held-out behaviour before -> after per run with saved rows: response tokens, truncation, self-checks."""
    found = [(name, behaviour(ev.before), behaviour(ev.after)) for name, ev in runs]
    found = [(name, b, a) for name, b, a in found if b or a]
    if not found:
        return []
    lines = ["## Held-out behaviour", "", ("Before -> after training, greedy responses to the held-out problems; "
             "self-check: share of responses with a phrase such as \"wait\" or \"let me check\" (`tinyr1.behaviour`)."),
             "", "| run | mean response tokens | truncated | self-check |", "| --- | --- | --- | --- |"]
    formats = (("tokens", "{:.1f}"), ("truncated", "{:.1%}"), ("self_check", "{:.1%}"))
    for name, b, a in found:
        lines.append(_line([name, *(f"{_fmt(b, key, fmt)} -> {_fmt(a, key, fmt)}" for key, fmt in formats)]))
    return lines + [""]


def _fmt(values: dict[str, float] | None, key: str, fmt: str) -> str:
    return fmt.format(values[key]) if values else NONE


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
