"""Plots of training runs, drawn from their `metrics.jsonl` (see `tinyr1.tracking`).

`plot_run(run_dir)` writes the standard figures of one run under `run_dir/plots/`:

- `reward.png`: `reward/total` and each `reward/<fn>` against step (smoothed when long);
- `accuracy.png`: held-out `eval/accuracy` with its 95% interval as a band, and the training
  accuracy `reward/accuracy` as a thinner line;
- `response_length.png`: `rollout/response_length` (and `eval/response_length`) in tokens;
- `kl.png`: `loss/approx_kl` and `loss/kl`;
- `behaviour.png`: R1-style behaviour as shares of responses: self-check phrases
  (`rollout/self_check`, `eval/self_check`; see `tinyr1.behaviour`) and truncation
  (`rollout/truncated`, `eval/truncated`).

A figure whose keys are absent from the file is skipped. `plot_curves(runs, key, ...)` overlays one
metric across several runs (the comparison report uses it). Usage::

    from tinyr1.plots import plot_run, plot_curves
    plot_run("runs/demo")                       # -> [runs/demo/plots/reward.png, ...]
    plot_curves({"grpo": rows_a, "ppo": rows_b}, "eval/accuracy", x="time/elapsed",
                path="cmp.png", band=("eval/accuracy_ci_low", "eval/accuracy_ci_high"))

Steps repeated by a resumed run are deduplicated per metric, the later line winning. Importing this
module imports neither torch nor matplotlib; figures are drawn with matplotlib's `Figure` and Agg
canvas directly, so no display is needed, pyplot's global figure list is never touched (nothing
to leak) and a user's interactive backend is left alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyr1.tracking import METRICS_FILE, read_metrics

EVAL_BAND = ("eval/accuracy_ci_low", "eval/accuracy_ci_high")
# Above this many points a curve is drawn faintly with a moving average on top: per-step RL
# rewards are noisy (a few groups per step) and the trend is what a reader looks for.
SMOOTH_ABOVE = 50
# Reward keys that are not reward functions: shown on other figures or not at all.
_NOT_REWARD_FNS = {"reward/total", "reward/accuracy", "reward/equal_groups"}
_AXIS_LABELS = {
    "step": "training step",
    "reward/total": "mean reward per response",
    "reward/accuracy": "training accuracy (fraction correct)",
    "eval/accuracy": "held-out accuracy (fraction correct)",
    "rollout/response_length": "response length (tokens)",
    "eval/response_length": "response length (tokens)",
    "loss/approx_kl": "KL estimate (nats per token)",
    "loss/kl": "KL estimate (nats per token)",
    "rollout/self_check": "responses with a self-check phrase (fraction)",
    "eval/self_check": "responses with a self-check phrase (fraction)",
}
# The behaviour figure's curves: (metric, label, thin).
BEHAVIOUR = (
    ("rollout/self_check", "self-check phrases: training rollouts", False),
    ("eval/self_check", "self-check phrases: held-out", False),
    ("rollout/truncated", "truncated: training rollouts", True),
    ("eval/truncated", "truncated: held-out", True),
)


@dataclass
class Series:
    """One metric of one run, one point per step (sorted by step), null values as NaN."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    low: list[float] | None = None  # lower edge of an interval band, aligned with y
    high: list[float] | None = None


def series(rows: list[dict[str, Any]], key: str, x: str = "step", band: tuple[str, str] | None = None) -> Series:
    """Extract `key` against `x` from metrics rows, keeping the last line logged for each step.

    Only lines holding `key` count, so a training line and an eval line at the same step do not
    shadow each other; a resumed run's repeat of a step replaces the earlier value. `band` names
    the keys of an interval read from the same lines as `key`.

    >>> rows = [{"step": 1, "r": 0.1}, {"step": 2, "r": 0.2}, {"step": 2, "r": 0.5}, {"step": 3, "l": 1}]
    >>> series(rows, "r").y
    [0.1, 0.5]
    """
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        if key in row and x in row and "step" in row:
            latest[row["step"]] = row
    out = Series(low=[] if band else None, high=[] if band else None)
    for step in sorted(latest):
        row = latest[step]
        out.x.append(_num(row[x]))
        out.y.append(_num(row[key]))
        if band:
            out.low.append(_num(row.get(band[0])))
            out.high.append(_num(row.get(band[1])))
    return out


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values, ignoring NaN (the first points use fewer)."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(recent) / len(recent) if recent else math.nan)
    return out


@dataclass
class _Line:
    """One labelled curve on a figure; `thin` for secondary curves, `markers` for sparse evals."""

    label: str
    data: Series
    thin: bool = False
    markers: bool = False


def plot_curves(runs: dict[str, list[dict[str, Any]]], key: str, x: str = "step", *, path: str | os.PathLike,
                title: str | None = None, band: tuple[str, str] | None = None) -> Path:
    """Overlay metric `key` for several runs (`{run name: metrics rows}`) on one figure at `path`.

    `x` is `step` or `time/elapsed`; `band` names interval keys (e.g. `EVAL_BAND`) drawn shaded.
    Runs without the key are left out of the legend. Returns `path`.
    """
    lines = [_Line(name, series(rows, key, x=x, band=band), markers=band is not None) for name, rows in runs.items()]
    lines = [line for line in lines if line.data.x]
    note = None
    if band:
        note = "shaded: 95% interval" if tuple(band) == EVAL_BAND else f"shaded: {band[0]} to {band[1]}"
    return _draw(Path(path), lines, title or key, x, _AXIS_LABELS.get(key, key), note=note)


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write the standard figures of a run under `run_dir/plots/`; return the paths written.

    Reads `run_dir/metrics.jsonl` (a `UserError` names a malformed line). A figure whose metrics
    never appear in the file is skipped, so an SFT run gets no KL figure.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / METRICS_FILE)
    keys = {k for row in rows for k in row}
    out_dir = run_dir / "plots"
    name = run_dir.name
    written = []

    fns = sorted(k for k in keys if k.startswith("reward/") and k not in _NOT_REWARD_FNS)
    reward = [_Line("total (weighted)", series(rows, "reward/total"))] if "reward/total" in keys else []
    reward += [_Line(k.removeprefix("reward/"), series(rows, k), thin=True) for k in fns]
    if reward:
        written.append(_draw(out_dir / "reward.png", reward, f"{name}: reward", "step", "mean reward per response"))

    accuracy = []
    if "eval/accuracy" in keys:
        accuracy.append(_Line("held-out (95% interval)", series(rows, "eval/accuracy", band=EVAL_BAND), markers=True))
    if "reward/accuracy" in keys:
        accuracy.append(_Line("training (rollouts)", series(rows, "reward/accuracy"), thin=True))
    if accuracy:
        written.append(_draw(out_dir / "accuracy.png", accuracy, f"{name}: accuracy", "step",
                             "accuracy (fraction correct)", ylim=(-0.02, 1.02)))

    length = []
    if "rollout/response_length" in keys:
        length.append(_Line("training rollouts", series(rows, "rollout/response_length")))
    if "eval/response_length" in keys:
        length.append(_Line("held-out", series(rows, "eval/response_length"), thin=True, markers=True))
    if length:
        written.append(_draw(out_dir / "response_length.png", length, f"{name}: response length", "step",
                             "mean response length (tokens)"))

    kl = []
    if "loss/approx_kl" in keys:
        kl.append(_Line("approx_kl: policy vs rollout policy", series(rows, "loss/approx_kl")))
    if "loss/kl" in keys:
        kl.append(_Line("kl: policy vs reference", series(rows, "loss/kl")))
    if kl:
        written.append(_draw(out_dir / "kl.png", kl, f"{name}: KL", "step", "KL estimate (nats per token)"))

    behaviour = [_Line(label, series(rows, key), thin=thin, markers=key.startswith("eval/"))
                 for key, label, thin in BEHAVIOUR if key in keys]
    if behaviour:
        written.append(_draw(out_dir / "behaviour.png", behaviour, f"{name}: self-checks and truncation", "step",
                             "share of responses", ylim=(-0.02, 1.02)))
    return written


def _draw(path: Path, lines: list[_Line], title: str, x: str, ylabel: str,
          ylim: tuple[float, float] | None = None, note: str | None = None) -> Path:
    """Draw `lines` on one axes and save a PNG at `path` (parent folders created).

    `note` heads the legend (e.g. what a shaded band means).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=120, layout="constrained")
    ax = fig.subplots()
    scale, xlabel = _x_axis(x, lines)
    # One smoothing window per figure, so every smoothed curve on it means the same thing.
    longest = max((len(line.data.x) for line in lines if not line.markers), default=0)
    window = max(5, longest // 25) if longest > SMOOTH_ABOVE else 0
    _enough_styles(ax, len(lines))
    for line in lines:
        _draw_line(ax, line, scale, window)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    if lines:
        if window:
            note = "; ".join(filter(None, [note, f"faint: each step; solid: mean of last {window} steps"]))
        ax.legend(loc="best", fontsize="small", title=note, title_fontsize="small", frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _enough_styles(ax, n: int) -> None:
    """More curves than colours (matplotlib's 10): the colours again dashed, then dotted, so that no
    two runs of a report look alike. Ten curves or fewer keep the default cycle."""
    from matplotlib import rcParams

    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    if n > len(colors):
        ax.set_prop_cycle(color=colors * 3, linestyle=[style for style in ("-", "--", ":") for _ in colors])


def _draw_line(ax, line: _Line, scale: float, window: int) -> None:
    """Plot one curve; with `window`, faint raw points and their moving average in the same colour."""
    xs = [v / scale for v in line.data.x]
    ys = line.data.y
    style = {"linewidth": 1.0 if line.thin else 1.8}
    if line.markers:
        style.update(marker="o", markersize=4)
    if window and not line.markers:
        (raw,) = ax.plot(xs, ys, linewidth=0.8, alpha=0.3)
        ax.plot(xs, moving_average(ys, window), color=raw.get_color(), linestyle=raw.get_linestyle(), label=line.label, **style)
        return
    (drawn,) = ax.plot(xs, ys, label=line.label, **style)
    if line.data.low is not None:
        ax.fill_between(xs, line.data.low, line.data.high, color=drawn.get_color(), alpha=0.2, linewidth=0)


def _x_axis(x: str, lines: list[_Line]) -> tuple[float, str]:
    """Divisor and label for the x axis: steps as they are, elapsed time in s, min or h."""
    if x != "time/elapsed":
        return 1.0, _AXIS_LABELS.get(x, x)
    longest = max((v for line in lines for v in line.data.x if not math.isnan(v)), default=0.0)
    for scale, unit in ((3600.0, "h"), (60.0, "min")):
        if longest >= 2 * scale:
            return scale, f"elapsed time ({unit})"
    return 1.0, "elapsed time (s)"
