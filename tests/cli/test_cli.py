"""The command line as a user runs it: files written, exit status 2 and one clear line on bad input."""

import json

import pytest

from tinyr1.cli import main


@pytest.fixture
def problems_jsonl(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"q": f"Calculate {i} + 1.", "a": i + 1}) + "\n" for i in range(12)))
    return path


def test_eval_end_to_end_on_tiny_model(tiny_model_dir, problems_jsonl, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main([
        "eval", "--model", str(tiny_model_dir), "--data", f"jsonl:{problems_jsonl}", "--data.question_field=q",
        "--data.answer_field=a", "--data.test_size=5", "--split", "test", "--limit", "4", "--samples", "4",
        "--sampling.max_new_tokens=6", f"--out={out}",
    ])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("n", "accuracy", "accuracy_ci95", "parsed_rate", "mean_response_tokens", "pass@1", "pass@2", "pass@4", "maj@4"):
        assert key in summary
    assert summary["n"] == 4 and 0 <= summary["accuracy"] <= 1
    rows = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 + 4 * 4  # greedy rows, then K samples per problem
    assert {"prompt", "response", "extracted", "reference", "correct"} <= rows[0].keys()
    assert rows[0]["prompt"].startswith("<|im_start|>user\nCalculate")
    assert "accuracy (greedy)" in capsys.readouterr().out


def test_eval_samples_are_the_same_for_a_seed_whatever_ran_before(tiny_model_dir, problems_jsonl, tmp_path):
    import torch

    def sampled(seed: int, name: str) -> list[str]:
        torch.rand(7)  # whatever drew from torch's generator before must not change the samples
        out = tmp_path / name
        assert main(["eval", "--model", str(tiny_model_dir), "--data", f"jsonl:{problems_jsonl}", "--data.question_field=q",
                     "--data.answer_field=a", "--data.test_size=5", "--limit", "3", "--samples", "4", "--seed", str(seed),
                     "--sampling.max_new_tokens=8", f"--out={out}"]) == 0
        return [r["response"] for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines()) if r["mode"] == "sample"]

    first = sampled(0, "a")
    assert len(first) == 12 and sampled(0, "b") == first
    assert sampled(1, "c") != first


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--data", "nosuch:x"], "unknown"),
        (["eval", "--data", "gsm8k:/no/such/folder"], "/no/such/folder"),
        (["eval", "--style", "latex"], "config key 'prompt.style': 'latex' is not allowed"),
        (["eval", "--eval.colour=red"], "unknown config key 'eval.colour'"),
        (["eval", "--model", "/no/such/model", "--data", "synthetic:chain_sum", "--data.size=10", "--data.test_size=5"], "model '/no/such/model' not found"),
        (["eval", "--limit", "0"], "config key 'eval.limit'"),
        (["eval", "missing.yaml"], "missing.yaml: config file not found"),
        (["train", "--grpo.batch_size=10", "--grpo.group_size=4"], "config key 'grpo.batch_size': expected a positive multiple of grpo.group_size=4, got 10"),
        (["train", "--grpo.scale_rewards=median"], "config key 'grpo.scale_rewards': 'median' is not allowed; expected one of 'group', 'batch', 'none'"),
        (["train", "--optim.lr=fast"], "config key 'optim.lr': expected a number, got 'fast'"),
        (["train", "--resume"], "--resume needs a run folder"),
        (["train", "--resume", "/no/such/run"], "no config.yaml there"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_jsonl_line_is_named(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n{"question": oops}\n')
    assert main(["eval", "--data", f"jsonl:{path}"]) == 2
    assert f"{path}:2" in capsys.readouterr().err


def test_help_lists_documented_keys(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--grpo.scale_rewards='group'" in out and "Dr.GRPO" in out


def test_dry_run_checks_the_gpu_config_offline(monkeypatch, capsys):
    """The 360M/GSM8K config validates and runs one step with a tiny stand-in model, offline."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "GSM8K" / "train.jsonl").is_file():
        pytest.skip("../shared/data is not beside the checkout")
    monkeypatch.chdir(root)
    assert main(["train", "configs/gsm8k_grpo_smollm2_360m.yaml", "--dry-run"]) == 0
    assert "dry run ok" in capsys.readouterr().out


def test_eval_bench_takes_the_presets_prompt_and_strict_grading_unless_overridden(tiny_model_dir, tmp_path):
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks" / "gsm8k"
    out = tmp_path / "bench"
    assert main(["eval", "--bench", "gsm8k", "--data", str(bench), "--model", str(tiny_model_dir),
                 "--sampling.max_new_tokens=4", f"--out={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert summary["bench"] == "gsm8k" and summary["metric"] == "pass@1 (greedy)" and summary["n"] == 2
    assert summary["style"] == "boxed" and len(rows) == 2  # greedy only: the preset takes one sample
    assert "Please reason step by step, and put your final answer within \\boxed{}." in rows[0]["prompt"]
    assert [r["reference"] for r in rows] == ["18", "3"]
    again = tmp_path / "bench-gsm8k-style"
    assert main(["eval", "--bench", "gsm8k", "--data", str(bench), "--model", str(tiny_model_dir), "--style", "gsm8k",
                 "--sampling.max_new_tokens=4", f"--out={again}"]) == 0
    assert json.loads((again / "summary.json").read_text())["style"] == "gsm8k"  # an explicit key wins


def test_report_to_names_a_missing_tracker_and_moved_keys_are_named(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert main(["train", "--run.report_to=wandb", "--dry-run"]) == 2
    assert "run.report_to" in capsys.readouterr().err
    assert main(["train", "--run.tensorboard=true"]) == 2
    assert "config key 'run.tensorboard' is now 'run.report_to'" in capsys.readouterr().err


def test_push_is_a_command(tmp_path, capsys):
    assert main(["push", str(tmp_path / "no-run"), "me/model", "--to-dir", str(tmp_path / "out")]) == 2
    assert "no-run" in capsys.readouterr().err


def test_a_200000_character_question_is_refused_with_one_line_not_run(tiny_model_dir, tmp_path, capsys):
    """It used to run for minutes at gigabytes and return garbage; the prompt is checked against the context first."""
    import time

    (tmp_path / "GSM8K").mkdir()
    rows = [{"question": "Calculate 1 + 1.", "answer": "#### 2"}] * 3 + [{"question": "Add: " + "1 + " * 50_000 + "1.", "answer": "#### 1"}]
    (tmp_path / "GSM8K" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0 = time.monotonic()
    code = main(["eval", f"--model={tiny_model_dir}", f"--data=gsm8k:{tmp_path / 'GSM8K'}", "--split=test",
                 "--sampling.max_new_tokens=4", f"--out={tmp_path / 'out'}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tinyr1:")]
    assert code == 2 and len(err) == 1 and "problem 'gsm8k/test/4': its prompt is" in err[0]
    assert "exceeds the model's 2,048 positions" in err[0]
    assert time.monotonic() - t0 < 120 and not (tmp_path / "out").exists()


def test_the_closing_line_names_before_and_after_or_says_there_was_no_before():
    from tinyr1.cli.train import result_line

    after = {"accuracy": 0.465, "accuracy_ci95": [0.3971, 0.5342], "n": 200}
    before = {"accuracy": 0.27, "accuracy_ci95": [0.2134, 0.3349], "n": 200}
    assert result_line({"eval_before": before, "eval_after": after, "wall_time_s": 90.0}, "runs/x") == (
        "held-out accuracy 27.0% [21.3%, 33.5%] -> 46.5% [39.7%, 53.4%] (n=200), 1.5 min; wrote runs/x/summary.json")
    assert result_line({"eval_after": after, "wall_time_s": 90.0}, "runs/x") == (
        "held-out accuracy (not evaluated before training: run.eval_before=false) 46.5% [39.7%, 53.4%] (n=200), 1.5 min; "
        "wrote runs/x/summary.json")
