"""Tests for tinyr1.plots: per-step dedup, the run figures and the cross-run overlay."""

from __future__ import annotations

import math
import random
import subprocess
import sys

from tinyr1.plots import EVAL_BAND, moving_average, plot_curves, plot_run, series
from tinyr1.tracking import MetricsLogger, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic_run(run_dir, steps=30, eval_every=10):
    """A GRPO-like run: training lines every step, eval lines every `eval_every` steps."""
    rng = random.Random(0)
    logger = MetricsLogger(run_dir)
    for step in range(1, steps + 1):
        acc = min(1.0, 0.2 + step / steps * 0.5 + rng.uniform(-0.1, 0.1))
        logger.log({"reward/correctness": acc, "reward/format": 0.5 + step / (2 * steps), "reward/total": acc + 0.1,
                    "reward/accuracy": acc, "reward/equal_groups": 0.3, "rollout/response_length": 120 - step,
                    "loss/approx_kl": 0.001 * step, "loss/kl": 0.002 * step, "rollout/self_check": step / (2 * steps),
                    "rollout/truncated": 0.1, "time/elapsed": 10.0 * step}, step)
        if step % eval_every == 0:
            logger.log({"eval/accuracy": 0.2 + step / steps / 2, "eval/accuracy_ci_low": 0.1 + step / steps / 2,
                        "eval/accuracy_ci_high": 0.3 + step / steps / 2, "eval/n": 100, "eval/self_check": 0.2,
                        "eval/truncated": 0.05, "eval/response_length": 100.0, "time/elapsed": 10.0 * step + 5}, step)
    return run_dir


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_series_keeps_last_line_per_step_after_a_resume():
    rows = [{"step": s, "reward/total": 0.1 * s} for s in range(1, 6)]
    rows += [{"step": 3, "eval/accuracy": 0.5}]  # an eval line at a training step does not shadow it
    rows += [{"step": s, "reward/total": 1.0 + s} for s in (4, 5, 6)]  # resumed from step 3
    got = series(rows, "reward/total")
    assert got.x == [1, 2, 3, 4, 5, 6]
    assert got.y == [0.1, 0.2, 0.1 * 3, 5.0, 6.0, 7.0]
    assert series(rows, "eval/accuracy").y == [0.5]


def test_series_reads_band_from_the_same_line_and_nulls_as_nan():
    rows = [{"step": 10, "eval/accuracy": 0.4, "eval/accuracy_ci_low": 0.3, "eval/accuracy_ci_high": 0.5},
            {"step": 20, "eval/accuracy": None, "time/elapsed": 5.0}]
    got = series(rows, "eval/accuracy", band=EVAL_BAND)
    assert got.low[0] == 0.3 and got.high[0] == 0.5 and math.isnan(got.low[1]) and math.isnan(got.y[1])
    assert series(rows, "eval/accuracy", x="time/elapsed").x == [5.0]  # lines without x are left out


def test_moving_average_is_trailing_and_ignores_nan():
    # window 2: [1], [1, 3], [3, nan] -> 3, [nan, 5] -> 5
    assert moving_average([1.0, 3.0, math.nan, 5.0], 2) == [1.0, 2.0, 3.0, 5.0]


def test_plot_run_writes_the_five_figures(tmp_path):
    run = _synthetic_run(tmp_path / "demo")
    paths = plot_run(run)
    assert [p.name for p in paths] == ["reward.png", "accuracy.png", "response_length.png", "kl.png", "behaviour.png"]
    for path in paths:
        assert path.parent == run / "plots"
        _assert_png(path)


def test_plot_run_skips_figures_whose_keys_are_absent(tmp_path):
    logger = MetricsLogger(tmp_path / "sft")
    for step in range(1, 4):
        logger.log({"loss/total": 1.0 / step, "rollout/response_length": 50.0}, step)
    assert [p.name for p in plot_run(tmp_path / "sft")] == ["response_length.png"]
    assert not (tmp_path / "sft" / "plots" / "kl.png").exists()


def test_plot_run_smooths_a_long_run_after_a_resume(tmp_path):
    run = _synthetic_run(tmp_path / "long", steps=120, eval_every=40)
    logger = MetricsLogger(run)
    for step in range(100, 121):  # resumed from step 99: steps 100..120 logged twice
        logger.log({"reward/total": 0.9, "eval/accuracy": 0.8} if step == 120 else {"reward/total": 0.9}, step)
    assert len(plot_run(run)) == 5  # the synthetic run logs behaviour metrics too
    rows = read_metrics(run / "metrics.jsonl")
    assert len(series(rows, "reward/total").x) == 120


def test_plot_curves_overlays_two_runs_in_one_file(tmp_path):
    a = read_metrics(_synthetic_run(tmp_path / "grpo") / "metrics.jsonl")
    b = read_metrics(_synthetic_run(tmp_path / "ppo", eval_every=5) / "metrics.jsonl")
    out = plot_curves({"grpo": a, "ppo": b}, "eval/accuracy", x="time/elapsed", path=tmp_path / "cmp" / "acc.png",
                      title="held-out accuracy", band=EVAL_BAND)
    assert out == tmp_path / "cmp" / "acc.png"
    _assert_png(out)
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["acc.png"]


def test_plotting_leaves_no_open_pyplot_figures(tmp_path):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plot_run(_synthetic_run(tmp_path / "demo"))
    assert len(plt.get_fignums()) == before


def test_importing_plots_loads_neither_torch_nor_matplotlib():
    code = "import sys, tinyr1.plots; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_more_runs_than_colours_still_draw_alike_runs_apart(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(fig) or save(fig, *a, **k))
    rows = read_metrics(_synthetic_run(tmp_path / "long", steps=120, eval_every=40) / "metrics.jsonl")
    for n in (3, 12):  # 12 runs: more than matplotlib's 10 colours; the curves are smoothed (raw + mean)
        plot_curves({f"run{i}": rows for i in range(n)}, "reward/total", path=tmp_path / f"{n}.png", title="reward")
        lines = drawn[-1].axes[0].get_legend().get_lines()
        styles = [(line.get_color(), line.get_linestyle()) for line in lines]
        assert len(styles) == n and len(set(styles)) == n  # no two runs look alike
        assert [s for _, s in styles[:10]] == ["-"] * min(n, 10)  # up to 10 runs: solid, as before
    assert styles[10:] == [(styles[0][0], "--"), (styles[1][0], "--")]  # then the colours again, dashed
