"""Comparison report across training runs: did the model get better, and which method made it so?

`write_report(run_dirs, out)` reads each run folder written by `tinyr1 train` (`config.yaml`,
`metrics.jsonl`, `summary.json`; see `tinyr1.recipes.setup`) and writes `out/report.md` with:

- a table, one row per run: method (algorithm and its non-default variant), model, LoRA rank,
  steps, wall time, tokens generated, held-out accuracy before -> after with 95% intervals, the
  change in points, and pass@k / maj@k when some run measured them. When every run starts from
  the same model and held-out set (same data, same accuracy and n before training), that shared
  starting point is one "base model" row and the runs show their accuracy after training;
- with the runs' saved held-out rows (`eval/step-<k>.jsonl`; `tinyr1.comparisons`): the grading
  and, beside a strict run's accuracy, the labelled fallback accuracy of the same responses; each
  run's McNemar p after vs before training; paired run-vs-run (and run-vs-base-model) tests on a
  shared held-out set; methods over seeds (runs differing only in `run.seed`, two or more a method)
  compared by their seed-averaged accuracy; the held-out behaviour (tokens, truncation, self-checks) before -> after;
- a verdict computed from the numbers: the run with the highest held-out accuracy, and whether
  it stands apart from its start and from the runner-up: by the paired test when the rows are
  there (p < 0.01 / 0.05 on the same problems), else by whether the 95% Wilson intervals overlap
  (read as "not distinguishable at this sample size", a conservative reading);
- overlaid curves (`plots.plot_curves`) of reward, held-out accuracy (with its interval band),
  response length, approx KL and self-check rates, against step and against wall time, as PNGs
  next to report.md. Against wall time a chain's later stage (a run whose model is another run of
  the report) starts where that run ended, so SFT -> GRPO is one accuracy-vs-time curve.

A run still training (no `eval_after` yet) is listed as unfinished with its latest evaluation.
Usage::

    tinyr1 report runs/grpo-a runs/ppo-b --out report/
    write_report([Path("runs/grpo-a"), Path("runs/ppo-b")], Path("report"))   # -> report/report.md

Importing this module imports neither torch nor matplotlib (plots load matplotlib when drawing).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinyr1 import comparisons as C
from tinyr1.config import TrainJob
from tinyr1.errors import UserError
from tinyr1.io import get_dotted, write_text_atomic
from tinyr1.plots import EVAL_BAND, plot_curves, series
from tinyr1.stats import PairedComparison
from tinyr1.tracking import METRICS_FILE, read_metrics

# The config keys that tell variants of one algorithm apart, and how a non-default value reads in
# the method column; a run at the defaults of `tinyr1.config` reads as the bare algorithm name.
VARIANT_KEYS = {
    "grpo": {"loss_aggregation": "{}", "scale_rewards": "scale={}", "advantage": "{}", "beta": "beta={}",
             "num_iterations": "mu={}", "dynamic_sampling": "dynamic sampling", "mask_truncated": "mask truncated"},
    "ppo": {"critic": "{} critic", "kl_coef": "kl_coef={}", "adaptive_kl": "adaptive KL",
            "whiten_advantages": "no whitening"},
    "sft": {"packing": "packing"},
}
# (metric, file stem, title, interval band): one figure against step and one against wall time each.
FIGURES = (
    ("reward/total", "reward", "training reward", None),
    ("eval/accuracy", "accuracy", "held-out accuracy", EVAL_BAND),
    ("rollout/response_length", "response_length", "response length", None),
    ("loss/approx_kl", "kl", "KL to the rollout policy (approx_kl)", None),
    ("rollout/self_check", "self_check", "training responses with a self-check phrase", None),
    ("eval/self_check", "eval_self_check", "held-out responses with a self-check phrase", None),
)
X_AXES = (("step", "step", "training step"), ("time/elapsed", "time", "wall time"))
SAMPLED = re.compile(r"(pass|maj)@\d+")  # sampled-eval metrics shown as extra columns
NONE = "-"


@dataclass
class Run:
    """What the report needs from one run folder. Eval records are summary.json's form:
    `{"accuracy": float, "accuracy_ci95": [lo, hi], "n": int, ...}`."""

    name: str
    path: Path
    method: str
    model: str
    lora: str  # the rank, or "full"
    data: str | None
    steps: str
    wall_min: float | None
    tokens: int | None  # sum of rollout/tokens; None when the run logged none (SFT)
    before: dict[str, Any] | None
    after: dict[str, Any] | None  # None: unfinished
    last_eval: tuple[int, dict[str, Any]] | None = None  # (step, record) of the latest eval, if unfinished
    extras: dict[str, float] = field(default_factory=dict)  # pass@k / maj@k after training
    rows: list[dict[str, Any]] = field(default_factory=list)
    evals: C.Evals | None = None  # the saved held-out rows before / after, and their grading
    paired: PairedComparison | None = None  # after vs before on the same problems (from `evals`)
    method_key: str = ""  # the config without run.seed and naming/logging keys: equal for seeds of one method


def write_report(run_dirs: list[Path], out: Path, title: str | None = None) -> Path:
    """Write `out/report.md` and its PNGs comparing the runs in `run_dirs`; return the report's path.

    Raises `UserError` naming the folder for a folder that is not a run or has nothing to report
    yet, and for an empty `run_dirs`.
    """
    if not run_dirs:
        raise UserError("no run folders given; usage: tinyr1 report RUN_DIR... [--out report/]")
    given = {}  # resolved folder -> the path as the user wrote it (the same folder twice counts once)
    for p in run_dirs:
        given.setdefault(Path(p).resolve(), str(p))
    paths = list(given)
    runs = [load_run(path, name) for path, name in zip(paths, _unique_names(paths))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = shared_base(runs)
    folders = {str(r.path) for r in runs}
    bases = C.base_entries([(r.name, _model_key(r.model, runs), r.evals) for r in runs if r.evals], folders)
    pairs = C.pairwise(bases + [(r.name, r.evals) for r in runs if r.after and r.evals])
    lines = [f"# {title or 'tinyr1 report'}", "", "Runs: " + ", ".join(f"`{given[r.path]}`" for r in runs) + ".", ""]
    lines += [_base_sentence(runs, base), "", *table(runs, base), ""]
    lines += ["Intervals are 95% Wilson intervals on the held-out problems; wall time and tokens are for the whole "
              "run, evaluations included in wall time.", ""]
    if any(r.evals and (r.evals.before or r.evals.after) for r in runs):
        lines += [C.PAIRED_NOTE, ""]
    groups = C.seed_groups([(r.name, r.method_key, r.evals) for r in runs if r.after and r.evals])
    lines += [*C.paired_section(pairs), *C.seeds_section(C.seed_pairs(groups)), *C.behaviour_section([(r.name, r.evals) for r in runs if r.evals])]
    lines += ["## Verdict", "", verdict(runs, base, pairs), "", *_figures(runs, out)]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def _model_key(model: str, runs: list[Run] = ()) -> str:
    """A run's model as a resolved folder when it is one (a chain's later stage names a run folder).
    A run folder no longer there (`runs/sft` of an archived chain: a path under `runs/`, or starting
    with `.` or `/`, unlike a hub id) stands for the report's one run of that folder name."""
    path = Path(model)
    if path.is_dir():
        return str(path.resolve())
    if path.parent.name == "runs" or model.startswith((".", "/")):
        named = [r for r in runs if r.path.name == path.name]
        if len(named) == 1:
            return str(named[0].path)
    return model


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names, widened to parent/name (then the full path) where two runs share a name."""
    names = [p.name for p in paths]
    names = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else n for p, n in zip(paths, names)]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


# ----------------------------------------------------------------------------- reading a run


def load_run(path: Path, name: str | None = None) -> Run:
    """Read one run folder; `UserError` naming it when it is not a run or holds nothing yet."""
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    if not (path / "config.yaml").is_file():
        inside = sorted(p.name for p in path.iterdir() if (p / "config.yaml").is_file())
        hint = (f"; it holds run folders ({', '.join(inside[:4])}{', ...' if len(inside) > 4 else ''}): pass those, "
                f"e.g. tinyr1 report {path}/*" if inside else "")
        raise UserError(f"{path}: not a training run folder (no config.yaml); expected a folder written by "
                        f"`tinyr1 train`, holding config.yaml, metrics.jsonl and summary.json{hint}")
    config = _read_mapping(path / "config.yaml", yaml.safe_load, yaml.YAMLError)
    summary = _read_mapping(path / "summary.json", json.loads, ValueError) if (path / "summary.json").is_file() else {}
    rows = read_metrics(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else []
    if summary.get("eval_after") is None and not rows:
        raise UserError(f"{path}: nothing to report yet (summary.json has no eval_after and metrics.jsonl has no "
                        "lines); is the run still starting?")
    evals = {row["step"]: row for row in rows if "eval/accuracy" in row}  # a resumed run's repeat wins
    before = _record(summary.get("eval_before"), path / "summary.json", "eval_before") or _eval_row_record(evals.get(0))
    after = _record(summary.get("eval_after"), path / "summary.json", "eval_after")
    last_step = max((row["step"] for row in rows), default=0)
    planned = get_dotted(config, "run.steps")
    tokens = series(rows, "rollout/tokens").y
    run = Run(
        name=name or path.name, path=path, method=method_name(config), model=str(get_dotted(config, "model.name", NONE)),
        lora="full" if get_dotted(config, "lora.rank") == 0 else str(get_dotted(config, "lora.rank", NONE)),
        data=summary.get("data") or get_dotted(config, "data.source"),
        steps=str(summary.get("steps", planned)) if after else f"{last_step} of {planned} (unfinished)",
        wall_min=_wall_minutes(summary, rows, finished=after is not None),
        tokens=int(sum(v for v in tokens if not math.isnan(v))) if tokens else None,
        before=before, after=after, rows=rows, evals=C.load_evals(path, summary, config),
        method_key=C.method_key(config),
    )
    run.paired = C.self_test(run.name, run.evals)
    late = [s for s in evals if s > 0]
    if after is None and late:
        run.last_eval = (max(late), _eval_row_record(evals[max(late)]))
    if after is not None:
        final = evals[max(evals)] if evals else {}
        found = {k.removeprefix("eval/"): v for k, v in final.items() if k.startswith("eval/")} | after
        run.extras = {k: v for k, v in found.items() if SAMPLED.fullmatch(k) and isinstance(v, (int, float))}
    return run


def method_name(config: dict[str, Any]) -> str:
    """The algorithm and its non-default variant keys, e.g. `grpo`, `grpo (dr_grpo, rloo)`, `ppo`."""
    algorithm = str(config.get("algorithm", "grpo"))
    defaults = getattr(TrainJob(), algorithm, None)
    section = config.get(algorithm) or {}
    variants = [
        label.format(section[key])
        for key, label in VARIANT_KEYS.get(algorithm, {}).items()
        if key in section and defaults is not None and section[key] != getattr(defaults, key, section[key])
    ]
    return f"{algorithm} ({', '.join(variants)})" if variants else algorithm


def _read_mapping(path: Path, parse, error: type[Exception]) -> dict[str, Any]:
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    except error as e:
        raise UserError(f"{path}: could not be parsed ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _record(rec: Any, path: Path, key: str) -> dict[str, Any] | None:
    """A summary.json eval record, checked: accuracy, a two-number accuracy_ci95 and n."""
    if rec is None:
        return None
    ci = rec.get("accuracy_ci95") if isinstance(rec, dict) else None
    if not (isinstance(rec, dict) and isinstance(rec.get("accuracy"), (int, float)) and isinstance(ci, list)
            and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci) and isinstance(rec.get("n"), int)):
        raise UserError(f"{path}: key {key!r}: expected {{accuracy, accuracy_ci95: [low, high], n}}, got {rec!r}")
    return rec


def _eval_row_record(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A metrics.jsonl eval line in summary.json's record form."""
    if row is None or row.get("eval/accuracy") is None:
        return None
    ci = [row.get("eval/accuracy_ci_low", math.nan), row.get("eval/accuracy_ci_high", math.nan)]
    return {"accuracy": row["eval/accuracy"], "accuracy_ci95": ci, "n": row.get("eval/n")}


def _wall_minutes(summary: dict[str, Any], rows: list[dict[str, Any]], finished: bool) -> float | None:
    if finished and isinstance(summary.get("wall_time_s"), (int, float)):
        return summary["wall_time_s"] / 60
    elapsed = [row["time/elapsed"] for row in rows if isinstance(row.get("time/elapsed"), (int, float))]
    return max(elapsed) / 60 if elapsed else None


# ----------------------------------------------------------------------------- table and verdict


def shared_base(runs: list[Run]) -> dict[str, Any] | None:
    """The shared before-training eval when every run has the same model, data, accuracy and n."""
    if not all(r.before for r in runs):
        return None
    first = runs[0]
    same = all(
        (r.model, r.data, r.before["n"]) == (first.model, first.data, first.before["n"])
        and math.isclose(r.before["accuracy"], first.before["accuracy"], abs_tol=1e-9)
        for r in runs
    )
    return first.before if same else None


def _base_sentence(runs: list[Run], base: dict[str, Any] | None) -> str:
    if base and len(runs) == 1:
        return (f"The first row is the base model (`{runs[0].model}`) before training, on the run's held-out set "
                f"(`{runs[0].data}`, n={base['n']}); the change is measured from it.")
    if base:
        return (f"All runs start from the same base model (`{runs[0].model}`) evaluated on the same held-out set "
                f"(`{runs[0].data}`, n={base['n']}), so the first row is that shared starting point and each run "
                "shows its accuracy after training; the change is measured from it.")
    facts = {"model": {r.model for r in runs}, "held-out data": {str(r.data) for r in runs},
             "held-out n": {str(r.before["n"]) for r in runs if r.before},
             "accuracy before training": {f"{r.before['accuracy']:.1%}" for r in runs if r.before}}
    differ = [f"{what} ({', '.join(sorted(values))})" for what, values in facts.items() if len(values) > 1]
    if any(not r.before for r in runs):
        differ.append("some runs have no evaluation before training")
    return (f"The runs do not share one base model and held-out set: they differ in {'; '.join(differ)}. Each row "
            "therefore shows its own accuracy before -> after training.")


def table(runs: list[Run], base: dict[str, Any] | None) -> list[str]:
    """The Markdown table's lines: a base model row first when `base` is given, then one row per run."""
    extras = sorted({k for r in runs for k in r.extras}, key=lambda k: (not k.startswith("pass@"), int(k.split("@")[1])))
    accuracy = "held-out accuracy after" if base else "held-out accuracy before -> after"
    paired = any(r.paired for r in runs)  # a p column
    saved = any(r.evals and (r.evals.before or r.evals.after) for r in runs)  # grading columns
    header = ["run", "method", "model", "LoRA rank", "steps", "wall time (min)", "tokens generated",
              f"{accuracy} (95% interval)", "change (points)", *(["p (after vs before)"] * paired),
              *(["grading", "other grading (same responses)"] * saved), *extras]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    if base:
        cells = ["base model", NONE, runs[0].model, NONE, "0", NONE, NONE, fmt_accuracy(base), NONE, *([NONE] * paired)]
        cells += C.grading_cells(runs[0].evals, runs[0].evals.before if runs[0].evals else None) if saved else []
        lines.append(_table_line(cells + [_pct(base.get(k)) for k in extras]))
    for r in runs:
        if r.after:
            result = fmt_accuracy(r.after)
            change = f"{100 * (r.after['accuracy'] - r.before['accuracy']):+.1f}" if r.before else NONE
        else:
            result = "unfinished" + (f" (step {r.last_eval[0]}: {fmt_accuracy(r.last_eval[1])})" if r.last_eval else "")
            change = NONE
        if not base:
            result = f"{fmt_accuracy(r.before) if r.before else NONE} -> {result}"
        wall = f"{r.wall_min:.1f}" if r.wall_min is not None else NONE
        tokens = f"{r.tokens:,}" if r.tokens is not None else NONE
        cells = [r.name, r.method, r.model, r.lora, r.steps, wall, tokens, result, change]
        cells += [C.fmt_p(r.paired.p_value) if r.paired else NONE] * paired
        cells += C.grading_cells(r.evals, r.evals.after if r.evals and r.after else None) if saved else []
        lines.append(_table_line(cells + [_pct(r.extras.get(k)) for k in extras]))
    return lines


def _table_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else NONE


def fmt_accuracy(rec: dict[str, Any]) -> str:
    """`47.0% [40.2, 53.9]`: accuracy and its 95% interval, in percent."""
    lo, hi = rec["accuracy_ci95"]
    return f"{rec['accuracy']:.1%} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (a_lo, a_hi), (b_lo, b_hi) = a["accuracy_ci95"], b["accuracy_ci95"]
    return a_lo <= b_hi and b_lo <= a_hi


def verdict(runs: list[Run], base: dict[str, Any] | None, pairs: list[tuple[str, str, PairedComparison, str]] = ()) -> str:
    """A few sentences from the numbers: the best run, and whether it stands apart from its start and the
    runner-up: by the paired test where saved rows allow (`pairs`, `Run.paired`), else by interval overlap."""
    done = sorted((r for r in runs if r.after), key=lambda r: -r.after["accuracy"])  # stable: ties keep input order
    if not done:
        return "No run has finished its final held-out evaluation yet, so there is no verdict."
    best, n = done[0], done[0].after["n"]
    tied = [r for r in done[1:] if r.after["accuracy"] == best.after["accuracy"]]
    tie = f" (tied with {', '.join(f'**{r.name}**' for r in tied)})" if tied else ""
    text = [f"**{best.name}** ({best.method}) reached the highest held-out accuracy{tie}, {fmt_accuracy(best.after)}"]
    start = base or best.before
    if start:
        points = 100 * (best.after["accuracy"] - start["accuracy"])
        move = "unchanged from" if abs(points) < 0.05 else f"{'up' if points > 0 else 'down'} {abs(points):.1f} points from"
        whose = "the base model's" if base else "its own"
        text[0] += f", {move} {whose} {fmt_accuracy(start)} before training"
        if best.paired:
            c = best.paired
            text[0] += (f"; paired on the same {c.n} problems ({c.only_b} right only after, {c.only_a} only before), "
                        f"McNemar's exact test: {C.significance(c.p_value)}; the change is {C.fmt_difference(c)} "
                        "points (95% paired bootstrap interval).")
        else:
            text[0] += (f"; the intervals overlap, so the change is not distinguishable at this sample size (n={n})."
                        if _overlap(best.after, start) else "; the intervals do not overlap.")
    else:
        text[0] += "."
    from_base = [(a, c) for a, b, c, _ in pairs if b == best.name and a.startswith("base (")]
    if from_base and _model_key(best.model, runs) in {str(r.path) for r in runs}:  # a chain: it started from a run here
        label, c = from_base[0]
        text.append(f"Against the model its chain started from, {label}, on the same {c.n} problems: "
                    f"{C.fmt_difference(c)} points, {C.significance(c.p_value)}.")
    if len(done) > 1:
        text.append(_runner_up(best, done[1], pairs))
    if not base and len(runs) > 1:
        text.append("The runs differ in base model or held-out set, so compare their accuracies with care.")
    not_strict = [r.name for r in done if r.evals and r.evals.grading == C.FALLBACK and r.evals.style == "gsm8k"]
    if not_strict:
        text.append(f"Graded with the last-number fallback, so not the strict GSM8K figure: {', '.join(not_strict)} "
                    "(the strict accuracy of the same responses is in the other-grading column).")
    unfinished = [r.name for r in runs if not r.after]
    if unfinished:
        text.append(f"Unfinished, left out of the verdict: {', '.join(unfinished)}.")
    return " ".join(text)


def _runner_up(best: Run, second: Run, pairs: list[tuple[str, str, PairedComparison, str]]) -> str:
    """The runner-up sentence: the paired test of the two when they share a held-out set, else interval overlap."""
    text = f"The runner-up, **{second.name}** ({second.method}) at {fmt_accuracy(second.after)}, "
    found = [c for a, b, c, _ in pairs if {a, b} == {best.name, second.name}]
    if found:
        c = found[0]
        ahead = c.p_value < 0.05
        return text + (f"paired with it on the same {c.n} problems ({c.only_a} + {c.only_b} answered by only one of the "
                       f"two): {C.significance(c.p_value)}; "
                       + (f"**{best.name}** is ahead." if ahead else "the two are not distinguishable at this sample size."))
    return text + ("overlaps it: the two are not distinguishable at this sample size."
                   if _overlap(best.after, second.after) else f"does not overlap it: **{best.name}** is ahead.")


# ----------------------------------------------------------------------------- figures


def chain_offsets(runs: list[Run]) -> dict[str, float]:
    """Seconds each run's clock starts at on the wall-time axis: 0, or, for a run that started from
    another run of the report (its `model.name` is that run's folder), where that run ended (its wall
    time plus its own offset), so that SFT -> GRPO reads as one curve against total time."""
    by_folder = {str(r.path): r for r in runs}
    offsets: dict[str, float] = {}

    def offset(run: Run, seen: frozenset[str]) -> float:
        if run.name not in offsets:
            parent = by_folder.get(_model_key(run.model, runs))
            if parent is None or parent.name in seen or parent is run:
                offsets[run.name] = 0.0
            else:
                offsets[run.name] = offset(parent, seen | {run.name}) + (parent.wall_min or 0.0) * 60  # its wall time, else last time/elapsed
        return offsets[run.name]

    for r in runs:
        offset(r, frozenset())
    return offsets


def _shifted(rows: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    if not seconds:
        return rows
    return [row | {"time/elapsed": row["time/elapsed"] + seconds} if isinstance(row.get("time/elapsed"), (int, float))
            else row for row in rows]


def _figures(runs: list[Run], out: Path) -> list[str]:
    """Draw each figure some run has data for, against step and wall time; return its Markdown."""
    offsets = chain_offsets(runs)
    by_axis = {
        "step": {f"{r.name}: {r.method}": r.rows for r in runs},
        "time/elapsed": {f"{r.name}: {r.method}": _shifted(r.rows, offsets[r.name]) for r in runs},
    }
    lines = ["## Curves", ""]
    chained = [r.name for r in runs if offsets[r.name]]
    if chained:
        lines += [f"Against wall time, a run that started from another run of this report ({', '.join(chained)}) "
                  "begins where that run ended: the time axis is the chain's total.", ""]
    for key, stem, title, band in FIGURES:
        if not any(key in row for r in runs for row in r.rows):
            continue
        cells = []
        for x, suffix, axis in X_AXES:
            name = f"{stem}_{suffix}.png"
            plot_curves(by_axis[x], key, x=x, path=out / name, title=f"{title} against {axis}", band=band)
            cells.append(f"![{title} against {axis}]({name})")
        lines += [f"### {title[0].upper() + title[1:]}", "", "| against training step | against wall time |",
                  "| --- | --- |", "| " + " | ".join(cells) + " |", ""]
    return lines if len(lines) > 2 else []
