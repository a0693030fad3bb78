"""Tests for tinyr1.report: the comparison table, the base row, the verdict, figures and bad input.

Run folders are written by hand with known numbers (no model, no training), so every cell of the
table can be asserted exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyr1.cli import main
from tinyr1.report import method_name, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = {"accuracy": 0.30, "accuracy_ci95": [0.20, 0.40], "n": 100}


def _record(acc, lo, hi, n=100, **extra):
    return {"accuracy": acc, "accuracy_ci95": [lo, hi], "n": n, **extra}


def _eval_line(step, elapsed, rec, **extra):
    lo, hi = rec["accuracy_ci95"]
    return {"step": step, "time/elapsed": elapsed, "eval/accuracy": rec["accuracy"], "eval/accuracy_ci_low": lo,
            "eval/accuracy_ci_high": hi, "eval/n": rec["n"], **extra}


def make_run(root, name, *, algorithm="grpo", section=None, rank=32, before=BASE, after=None, steps=4,
             done_steps=None, wall_s=120.0, train_keys=True, final_eval_extra=None, model="tiny-model", saved=None,
             strict=None):
    """A run folder: config.yaml, metrics.jsonl (30 s per step, 250 tokens per step), summary.json.

    `after=None` leaves the run unfinished after `done_steps` steps (no eval_after). `saved`: (before
    rows, after rows) saved as eval/step-0.jsonl and eval/step-<steps>.jsonl, their accuracy written
    into the summary's records; `strict`: a GSM8K-style run graded with (False) or without (True)
    the last-number fallback.
    """
    run = root / name
    run.mkdir(parents=True)
    config = {"algorithm": algorithm, "model": {"name": model}, "data": {"source": "synthetic:basic_arithmetic"},
              "lora": {"rank": rank}, "run": {"name": name, "steps": steps}, algorithm: section or {}}
    if strict is not None:
        config |= {"prompt": {"style": "gsm8k"}, "grading": {"fallback": not strict}}
    if saved:
        (run / "eval").mkdir()
        for step, part in zip((0, steps), saved):
            (run / "eval" / f"step-{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        before = _rows_record(saved[0], "eval/step-0.jsonl")
        after = _rows_record(saved[1], f"eval/step-{steps}.jsonl") if after else None
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    done = steps if after else (done_steps or 0)
    rows = [_eval_line(0, 10.0, before)] if before else []
    for s in range(1, done + 1):
        rows.append({"step": s, "time/elapsed": 10.0 + 25.0 * s} | ({
            "reward/total": 0.1 * s, "rollout/response_length": 50.0 - s, "rollout/tokens": 250,
            "loss/approx_kl": 0.01 * s} if train_keys else {"loss/sft": 1.0 / s}))
    if after:
        rows.append(_eval_line(steps, wall_s, after, **(final_eval_extra or {})))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"eval_before": before} if before else {}
    if after:
        summary |= {"eval_after": after, "steps": steps, "wall_time_s": wall_s, "model": model,
                    "data": "synthetic:basic_arithmetic", "algorithm": algorithm}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def eval_rows(n, right, no_marker_right=(), self_check=(), truncated=(), tokens=20):
    """n GSM8K-style greedy rows graded strictly: `right` answered `#### <ref>`; `no_marker_right` end
    with the right number but no `####` (wrong strictly, right with the fallback); the rest `#### 0`."""
    rows = []
    for i in range(n):
        ref = str(i + 1)
        if i in right:
            response, extracted, method = f"{i} + 1 = {ref}\n#### {ref}", ref, "style"
        elif i in no_marker_right:
            response, extracted, method = f"{i} + 1 = {ref}, so {ref}", None, None
        else:
            response, extracted, method = "#### 0", "0", "style"
        rows.append({"id": f"gsm8k/train/{i}", "mode": "greedy", "sample": 0,
                     "response": ("Wait. " if i in self_check else "") + response, "extracted": extracted,
                     "method": method, "reference": ref, "correct": i in right, "tokens": tokens,
                     "finished": i not in truncated, "self_check": i in self_check})
    return rows


def _rows_record(rows, name):
    correct = sum(r["correct"] for r in rows)
    return _record(correct / len(rows), max(0.0, correct / len(rows) - 0.2), min(1.0, correct / len(rows) + 0.2),
                   n=len(rows), rows_file=name)


@pytest.fixture
def three_runs(tmp_path):
    a = make_run(tmp_path, "a", after=_record(0.60, 0.50, 0.70))
    b = make_run(tmp_path, "b", section={"loss_aggregation": "dr_grpo", "advantage": "rloo"}, rank=0, wall_s=300.0,
                 after=_record(0.45, 0.35, 0.55, **{"pass@1": 0.4, "pass@4": 0.7, "maj@4": 0.5}))
    c = make_run(tmp_path, "c", algorithm="ppo", section={"kl_coef": 0.05}, after=_record(0.35, 0.26, 0.45),
                 final_eval_extra={"eval/pass@4": 0.55})
    return a, b, c


def test_table_has_a_base_row_then_one_exact_row_per_run(three_runs, tmp_path):
    text = write_report(list(three_runs), tmp_path / "out").read_text()
    assert ("| run | method | model | LoRA rank | steps | wall time (min) | tokens generated | held-out accuracy after "
            "(95% interval) | change (points) | pass@1 | pass@4 | maj@4 |") in text
    assert "| base model | - | tiny-model | - | 0 | - | - | 30.0% [20.0, 40.0] | - | - | - | - |" in text
    assert "| a | grpo | tiny-model | 32 | 4 | 2.0 | 1,000 | 60.0% [50.0, 70.0] | +30.0 | - | - | - |" in text
    assert ("| b | grpo (dr_grpo, rloo) | tiny-model | full | 4 | 5.0 | 1,000 | 45.0% [35.0, 55.0] | +15.0 "
            "| 40.0% | 70.0% | 50.0% |") in text
    assert "| c | ppo | tiny-model | 32 | 4 | 2.0 | 1,000 | 35.0% [26.0, 45.0] | +5.0 | - | 55.0% | - |" in text
    assert text.index("| base model |") < text.index("| a |") < text.index("| b |") < text.index("| c |")
    assert "All runs start from the same base model (`tiny-model`)" in text


def test_runs_from_different_starts_show_before_per_run(tmp_path):
    a = make_run(tmp_path, "a", after=_record(0.60, 0.50, 0.70))
    d = make_run(tmp_path, "d", before=_record(0.25, 0.17, 0.35), after=_record(0.40, 0.31, 0.50))
    text = write_report([a, d], tmp_path / "out").read_text()
    assert "| base model |" not in text
    assert "held-out accuracy before -> after (95% interval)" in text
    assert "| a | grpo | tiny-model | 32 | 4 | 2.0 | 1,000 | 30.0% [20.0, 40.0] -> 60.0% [50.0, 70.0] | +30.0 |" in text
    assert "| d | grpo | tiny-model | 32 | 4 | 2.0 | 1,000 | 25.0% [17.0, 35.0] -> 40.0% [31.0, 50.0] | +15.0 |" in text
    assert "they differ in accuracy before training (25.0%, 30.0%)" in text
    assert "compare their accuracies with care" in text


def test_verdict_overlapping_runner_up_is_not_distinguishable(three_runs, tmp_path):
    text = write_report(list(three_runs), tmp_path / "out").read_text()
    assert ("**a** (grpo) reached the highest held-out accuracy, 60.0% [50.0, 70.0], up 30.0 points from the base "
            "model's 30.0% [20.0, 40.0] before training; the intervals do not overlap.") in text
    assert ("The runner-up, **b** (grpo (dr_grpo, rloo)) at 45.0% [35.0, 55.0], overlaps it: the two are not "
            "distinguishable at this sample size.") in text


def test_verdict_separated_runner_up_is_behind(three_runs, tmp_path):
    a, _, c = three_runs
    text = write_report([c, a], tmp_path / "out").read_text()
    assert "**a** (grpo) reached the highest held-out accuracy" in text
    assert "The runner-up, **c** (ppo) at 35.0% [26.0, 45.0], does not overlap it: **a** is ahead." in text


def test_verdict_gain_within_the_base_interval_is_not_distinguishable(tmp_path):
    run = make_run(tmp_path, "small", after=_record(0.35, 0.26, 0.45))
    text = write_report([run], tmp_path / "out").read_text()
    assert ("**small** (grpo) reached the highest held-out accuracy, 35.0% [26.0, 45.0], up 5.0 points from the base "
            "model's 30.0% [20.0, 40.0] before training; the intervals overlap, so the change is not distinguishable "
            "at this sample size (n=100).") in text
    assert "runner-up" not in text


def test_unfinished_run_is_listed_with_its_latest_eval_and_left_out_of_the_verdict(three_runs, tmp_path):
    e = make_run(tmp_path, "e", after=None, done_steps=2)
    with (e / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(_eval_line(2, 70.0, _record(0.50, 0.40, 0.60))) + "\n")
    text = write_report([three_runs[0], e], tmp_path / "out").read_text()
    assert "| e | grpo | tiny-model | 32 | 2 of 4 (unfinished) | 1.2 | 500 | unfinished (step 2: 50.0% [40.0, 60.0]) | - |" in text
    assert "| base model |" in text and "runner-up" not in text
    assert "Unfinished, left out of the verdict: e." in text


def test_only_unfinished_runs_give_no_verdict(tmp_path):
    e = make_run(tmp_path, "e", after=None, done_steps=1)
    text = write_report([e], tmp_path / "out").read_text()
    assert "| e | grpo | tiny-model | 32 | 1 of 4 (unfinished) | 0.6 | 250 | unfinished | - |" in text
    assert "No run has finished its final held-out evaluation yet, so there is no verdict." in text


def test_figures_are_pngs_referenced_from_the_report(three_runs, tmp_path):
    out = tmp_path / "out"
    text = write_report(list(three_runs), out, title="Quickstart methods").read_text()
    assert text.startswith("# Quickstart methods\n")
    for stem in ("reward", "accuracy", "response_length", "kl"):
        for axis in ("step", "time"):
            name = f"{stem}_{axis}.png"
            assert (out / name).read_bytes()[:8] == PNG_MAGIC
            assert f"]({name})" in text
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == sorted(
        f"{s}_{a}.png" for s in ("reward", "accuracy", "response_length", "kl") for a in ("step", "time"))


def test_figure_whose_metric_no_run_logged_is_skipped(tmp_path):
    sft = make_run(tmp_path, "sft", algorithm="sft", after=_record(0.40, 0.31, 0.50), train_keys=False)
    out = tmp_path / "out"
    text = write_report([sft], out).read_text()
    assert sorted(p.name for p in out.glob("*.png")) == ["accuracy_step.png", "accuracy_time.png"]
    assert "reward_step.png" not in text and "kl_step.png" not in text
    assert "| sft | sft | tiny-model | 32 | 4 | 2.0 | - | 40.0% [31.0, 50.0] | +10.0 |" in text


@pytest.mark.parametrize(
    "algorithm, section, expected",
    [
        ("grpo", {"loss_aggregation": "token", "scale_rewards": "group", "advantage": "grpo", "beta": 0.0}, "grpo"),
        ("grpo", {"loss_aggregation": "dr_grpo", "advantage": "rloo"}, "grpo (dr_grpo, rloo)"),
        ("grpo", {"scale_rewards": "none", "beta": 0.04, "dynamic_sampling": True}, "grpo (scale=none, beta=0.04, dynamic sampling)"),
        ("ppo", {"kl_coef": 0.05, "critic": "shared"}, "ppo"),
        ("ppo", {"critic": "separate", "whiten_advantages": False}, "ppo (separate critic, no whitening)"),
        ("sft", {"packing": True}, "sft (packing)"),
    ],
)
def test_method_names_the_algorithm_and_its_non_default_variant(algorithm, section, expected):
    assert method_name({"algorithm": algorithm, algorithm: section}) == expected


def test_runs_with_the_same_folder_name_get_their_parent_in_the_name(tmp_path):
    x = make_run(tmp_path / "x", "run", after=_record(0.60, 0.50, 0.70))
    y = make_run(tmp_path / "y", "run", after=_record(0.40, 0.31, 0.50))
    text = write_report([x, y, x], tmp_path / "out").read_text()  # the same folder twice counts once
    assert text.count("| x/run | grpo |") == 1 and text.count("| y/run | grpo |") == 1


def test_runs_are_named_as_given_not_as_absolute_paths(tmp_path, monkeypatch):
    make_run(tmp_path / "runs", "a", after=_record(0.60, 0.50, 0.70))
    monkeypatch.chdir(tmp_path)  # a report committed beside the code must not name this machine's folders
    text = write_report([Path("runs/a"), Path("runs/./a")], Path("out")).read_text()
    assert "Runs: `runs/a`." in text and str(tmp_path) not in text


def test_cli_writes_the_report(three_runs, tmp_path, capsys):
    out = tmp_path / "cli-out"
    assert main(["report", *map(str, three_runs), "--out", str(out), "--title", "T"]) == 0
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    assert (out / "report.md").read_text().startswith("# T\n")


def _not_a_run(tmp_path):  # what `tinyr1 eval` writes: a summary but no config
    path = tmp_path / "eval-out"
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(BASE))
    return path, "not a training run folder (no config.yaml)"


def _empty_run(tmp_path):
    path = tmp_path / "starting"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"algorithm": "grpo"}))
    return path, "nothing to report yet"


def _bad_summary(tmp_path):
    path = make_run(tmp_path, "broken", after=_record(0.5, 0.4, 0.6))
    (path / "summary.json").write_text("{not json")
    return path / "summary.json", "could not be parsed"


def _missing(tmp_path):
    return tmp_path / "no-such-run", "no such run folder"


@pytest.mark.parametrize("make_bad", [_not_a_run, _empty_run, _bad_summary, _missing])
def test_bad_run_folder_exits_2_naming_it(make_bad, three_runs, tmp_path, capsys):
    bad, message = make_bad(tmp_path)
    assert main(["report", str(three_runs[0]), str(bad.parent if bad.name == "summary.json" else bad),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and message in err


def test_folder_of_runs_is_refused_with_a_hint_to_pass_the_runs(three_runs, tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert f"it holds run folders (a, b, c): pass those, e.g. tinyr1 report {tmp_path}/*" in capsys.readouterr().err


def test_no_run_folders_exits_2(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "out")]) == 2
    assert "no run folders given" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_import_loads_neither_torch_nor_matplotlib():
    code = "import sys, tinyr1.report; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ----------------------------------------------------------------------------- saved rows: paired tests, grading


BEFORE_ROWS = eval_rows(20, right={0, 1, 2, 3, 4})  # 5 of 20 right: 25%
# After: 2, 3, 4 still right, 0 and 1 lost (only before: b = 2), 5..14 gained (only after: c = 10): 13 of 20 = 65%;
# 15 and 16 end on the right number without `####`: wrong strictly, right with the last-number fallback (15 of 20).
AFTER_ROWS = eval_rows(20, right=set(range(2, 15)), no_marker_right={15, 16}, self_check={2, 3, 4, 5}, truncated={19},
                       tokens=30)


def test_a_strict_run_shows_its_paired_p_and_the_fallback_figure_beside_it(tmp_path):
    run = make_run(tmp_path, "strict", after=True, saved=(BEFORE_ROWS, AFTER_ROWS), strict=True)
    text = write_report([run], tmp_path / "out").read_text()
    assert ("| held-out accuracy after (95% interval) | change (points) | p (after vs before) | grading "
            "| other grading (same responses) |") in text
    # McNemar, b = 2, c = 10: p = 2 * (1 + 12 + 66) / 4096 = 0.0386
    assert "| 65.0% [45.0, 85.0] | +40.0 | 0.0386 | strict | last-number fallback: 75.0% |" in text
    # the base row: the before rows re-graded with the fallback are the same 25% (every wrong row has a marker)
    assert "| 25.0% [5.0, 45.0] | - | - | strict | last-number fallback: 25.0% |" in text
    assert ("up 40.0 points from the base model's 25.0% [5.0, 45.0] before training; paired on the same 20 problems "
            "(10 right only after, 2 only before), McNemar's exact test: significant at the 0.05 level but not at 0.01 "
            "(p = 0.0386); the change is +40.0 [") in text
    assert "intervals overlap" not in text and "Graded with the last-number fallback" not in text
    # behaviour: 20 -> 30 tokens, 0% -> 5% truncated, 0% -> 20% self-checks
    assert "| strict | 20.0 -> 30.0 | 0.0% -> 5.0% | 0.0% -> 20.0% |" in text


def test_runs_on_the_same_problems_are_compared_pairwise_and_the_runner_up_by_the_paired_test(tmp_path):
    better = make_run(tmp_path, "better", after=True, saved=(BEFORE_ROWS, AFTER_ROWS), strict=True)
    # worse: right on 0..6 (7 of 20 = 35%); against better: only worse right 0, 1 (a = 2), only better 7..14 (c = 8)
    worse = make_run(tmp_path, "worse", after=True, saved=(BEFORE_ROWS, eval_rows(20, right=set(range(7)))), strict=True)
    text = write_report([worse, better], tmp_path / "out").read_text()
    # b = 2, c = 8: p = 2 * (1 + 10 + 45) / 1024 = 112 / 1024 = 0.109
    assert "| A | B | n | A accuracy | B accuracy | B - A (points) | only A right | only B right | p | grading |" in text
    assert "| worse | better | 20 | 35.0% | 65.0% | +30.0 [" in text and "| 2 | 8 | 0.109 | strict |" in text
    assert ("The runner-up, **worse** (grpo) at 35.0% [15.0, 55.0], paired with it on the same 20 problems (2 + 8 "
            "answered by only one of the two): not significant (p = 0.109); the two are not distinguishable") in text


def test_a_chain_is_compared_with_the_model_it_started_from(tmp_path):
    # SFT from the base (5 of 20 -> 7 of 20), then GRPO from the SFT run folder (7 -> 13 of 20)
    sft_after = eval_rows(20, right=set(range(7)))
    sft = make_run(tmp_path, "sft", algorithm="sft", after=True, saved=(BEFORE_ROWS, sft_after), strict=True)
    grpo = make_run(tmp_path, "grpo", after=True, saved=(sft_after, AFTER_ROWS), strict=True, model=str(sft))
    text = write_report([sft, grpo], tmp_path / "out").read_text()
    # base -> grpo: only base right 0, 1 (b = 2), only grpo right 5..14 (c = 10): p = 0.0386
    assert "| base (tiny-model) | grpo | 20 | 25.0% | 65.0% | +40.0 [" in text and "| 2 | 10 | 0.0386 | strict |" in text
    assert "| base (tiny-model) | sft | 20 | 25.0% | 35.0% |" in text and "| sft | grpo | 20 | 35.0% | 65.0% |" in text
    assert ("Against the model its chain started from, base (tiny-model), on the same 20 problems: +40.0 [") in text
    assert "significant at the 0.05 level but not at 0.01 (p = 0.0386)." in text


def test_a_chains_later_stage_starts_where_its_first_ended_on_the_wall_time_axis(tmp_path, monkeypatch):
    # base -> sft (120 s) -> grpo (300 s) -> grpo2 (50 s); "other" starts from the base model
    sft = make_run(tmp_path, "sft", algorithm="sft", after=_record(0.4, 0.3, 0.5), wall_s=120.0)
    grpo = make_run(tmp_path, "grpo", after=_record(0.5, 0.4, 0.6), wall_s=300.0, model=str(sft))
    grpo2 = make_run(tmp_path, "grpo2", after=_record(0.5, 0.4, 0.6), wall_s=50.0, model=str(grpo))
    other = make_run(tmp_path, "other", after=_record(0.5, 0.4, 0.6), wall_s=90.0)
    drawn = {}

    def capture(runs, key, x="step", **kwargs):
        drawn[(key, x)] = {name: [row["time/elapsed"] for row in rows if key in row] for name, rows in runs.items()}

    monkeypatch.setattr("tinyr1.report.plot_curves", capture)
    text = write_report([sft, grpo, grpo2, other], tmp_path / "out").read_text()
    by_time = drawn[("eval/accuracy", "time/elapsed")]
    assert by_time["sft: sft"] == [10.0, 120.0] and by_time["other: grpo"] == [10.0, 90.0]
    assert by_time["grpo: grpo"] == [130.0, 420.0]  # 10 s and 300 s of its own clock, after sft's 120 s
    assert by_time["grpo2: grpo"] == [430.0, 470.0]  # after sft's 120 s and grpo's 300 s
    assert drawn[("eval/accuracy", "step")]["grpo: grpo"] == [10.0, 300.0]  # the step axis is untouched
    assert "another run of this report (grpo, grpo2) begins where that run ended" in text


def test_an_archived_chain_with_gzipped_evaluations_reads_like_the_runs_it_was(tmp_path, monkeypatch):
    # the chain of test_a_chain_is_compared_with_the_model_it_started_from, archived: eval/*.jsonl
    # gzipped, and GRPO's model is `runs/sft`, a folder no longer there, matched by folder name
    import gzip

    sft_after = eval_rows(20, right=set(range(7)))
    sft = make_run(tmp_path / "archive", "sft", algorithm="sft", after=True, saved=(BEFORE_ROWS, sft_after),
                   strict=True)
    grpo = make_run(tmp_path / "archive", "grpo", after=True, saved=(sft_after, AFTER_ROWS), strict=True,
                    model="runs/sft")
    for f in [*sft.glob("eval/*.jsonl"), *grpo.glob("eval/*.jsonl")]:
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    monkeypatch.chdir(tmp_path)  # runs/sft does not exist here
    text = write_report([sft, grpo], tmp_path / "out").read_text()
    assert "| base (tiny-model) | grpo | 20 | 25.0% | 65.0% | +40.0 [" in text and "| 2 | 10 | 0.0386 | strict |" in text
    assert "| sft | grpo | 20 | 35.0% | 65.0% |" in text
    assert "Against the model its chain started from, base (tiny-model), on the same 20 problems: +40.0 [" in text
    assert "another run of this report (grpo) begins where that run ended" in text


def test_runs_on_different_problems_are_not_paired(tmp_path):
    a = make_run(tmp_path, "a", after=True, saved=(BEFORE_ROWS, AFTER_ROWS), strict=True)
    b = make_run(tmp_path, "b", after=True, saved=(BEFORE_ROWS[:10], AFTER_ROWS[:10]), strict=True)
    text = write_report([a, b], tmp_path / "out").read_text()
    assert "| a | b |" not in text and "| b | a |" not in text  # each is paired with its own base only
    assert "| base (tiny-model) | a | 20 |" in text and "| base (tiny-model) | b | 10 |" in text
    assert "The runner-up, **a** (grpo) at 65.0% [45.0, 85.0], overlaps it" in text  # b: 8 of its 10 right


def test_a_gsm8k_run_graded_with_the_fallback_is_flagged_with_its_strict_figure(tmp_path):
    # the same responses graded with the fallback: 15 and 16 count (15 of 20 = 75%); strictly 13 of 20
    graded = [r | {"correct": r["correct"] or r["id"] in {"gsm8k/train/15", "gsm8k/train/16"},
                   "method": r["method"] or "fallback"} for r in AFTER_ROWS]
    run = make_run(tmp_path, "loose", after=True, saved=(BEFORE_ROWS, graded), strict=False)
    text = write_report([run], tmp_path / "out").read_text()
    assert "| 75.0% [55.0, 95.0] | +50.0 |" in text and "| fallback | strict: 65.0% |" in text
    assert "Graded with the last-number fallback, so not the strict GSM8K figure: loose" in text


def test_summary_without_rows_files_keeps_the_interval_verdict(three_runs, tmp_path):
    text = write_report(list(three_runs), tmp_path / "out").read_text()
    assert "p (after vs before)" not in text and "## Paired comparisons" not in text and "## Held-out behaviour" not in text


def test_two_methods_with_two_seeds_each_are_compared_by_their_seed_averaged_accuracy(tmp_path):
    # method x (grpo defaults): right on 0..4 and 0..5; method y (dr_grpo): right on 0..9 and 0..11
    runs = [make_run(tmp_path, name, section=section, after=True, saved=(BEFORE_ROWS, eval_rows(20, right=set(range(k)))),
                     strict=True)
            for name, section, k in (("x-seed0", None, 5), ("y-seed0", {"loss_aggregation": "dr_grpo"}, 10),
                                     ("x-seed1", None, 6), ("y-seed1", {"loss_aggregation": "dr_grpo"}, 12),
                                     ("z-alone", {"loss_aggregation": "sequence"}, 7))]
    text = write_report(runs, tmp_path / "out").read_text()
    assert "## Methods over seeds" in text
    # per problem (x runs 2 x 2 y runs) 2 * right_y - 2 * right_x: problem 5 -> 2, 6..9 -> 4, 10..11 -> 2, others 0:
    # 7 problems differ, all the same sign: p = 2 / 2^7 = 0.0156; B - A = 22 / (20 * 4) = +27.5 points
    assert ("| x-seed0 + x-seed1 | y-seed0 + y-seed1 | 20 | 27.5% | 55.0% | +27.5 [" in text
            and "] | 7 | 0.0156 | strict |" in text)
    assert "z-alone" not in text.split("## Methods over seeds")[1].split("##")[0]  # one seed: no method row


@pytest.mark.parametrize("p, expected", [
    (0.0072, "significant (p = 0.0072 < 0.01)"),
    (3e-7, "significant (p < 0.0001)"),  # not "p = < 0.0001 < 0.01"
    (0.0386, "significant at the 0.05 level but not at 0.01 (p = 0.0386)"),
    (0.572, "not significant (p = 0.572)"),
])
def test_significance_reads_each_level(p, expected):
    from tinyr1.comparisons import significance

    assert significance(p) == expected
