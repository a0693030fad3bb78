"""Crash-exact resume, tested by killing: every algorithm's run is SIGKILLed at chosen moments
(mid-rollout, mid-update, after a metrics line but before its checkpoint, halfway through writing
a checkpoint, after final/), resumed each time with `--resume`, and must end bitwise equal to an
uninterrupted run of the same seed: the same metrics.jsonl (times aside), samples.jsonl,
summary.json and final weights. Each process runs the real command line (`cli_with_test_reward.py`)
and kills itself at the moment `TINYR1_KILL_AT` names (`tinyr1.faults`), a real SIGKILL.

Small on purpose (tiny model, 4 steps, a checkpoint every step or two): about 20 processes.
A randomized version with external kills at random times is `benchmarks/kill_resume.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tinyr1
from tinyr1.training.checkpoint import latest_checkpoint

DRIVER = Path(__file__).with_name("cli_with_test_reward.py")
SRC = Path(tinyr1.__file__).resolve().parents[1]
VOLATILE = ("time/", "timing/", "eval/seconds")  # wall-clock readings: the only keys allowed to differ


def run_cli(args: list[str], kill_at: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The command line in a process of its own (killed at `kill_at`, see `tinyr1.faults`). A process
    still running after `timeout` seconds gets SIGABRT, so faulthandler prints where it hangs."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "TINYR1_KILL_AT": kill_at or ""}
    cmd = [sys.executable, "-X", "faulthandler", str(DRIVER), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(args)} still ran after {timeout} s; its stacks:\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _policy_config(tmp: Path, tiny_model_dir: Path, problems: Path, algorithm: str) -> Path:
    config = {
        "algorithm": algorithm,
        "model": {"name": str(tiny_model_dir), "device": "cpu"},
        "data": {"source": f"jsonl:{problems}", "test_size": 4},
        "sampling": {"max_new_tokens": 8, "batch_size": 16},
        "reward": {"weights": {"length_parity": 1.0, "correctness": 0.5}},
        "run": {"output_dir": str(tmp / "runs"), "steps": 4, "eval_every": 2, "eval_size": 4, "progress": False,
                "save_every": 2 if algorithm == "sft" else 1, "log_samples": 2},
        "lora": {"rank": 4, "alpha": 8},
        "optim": {"lr": 0.01, "micro_batch_size": 4},
        "grpo": {"batch_size": 8, "group_size": 4},
        "ppo": {"batch_size": 4, "mini_batch_size": 2, "epochs": 2},
        "sft": {"batch_size": 4, "max_length": 64},
    }
    path = tmp / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def _assert_same_run(resumed: Path, whole: Path) -> None:
    assert _rows(resumed / "metrics.jsonl") == _rows(whole / "metrics.jsonl")
    assert _rows(resumed / "samples.jsonl") == _rows(whole / "samples.jsonl")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (resumed, whole))
    for s in (a, b):
        for key in ("wall_time_s", "train_seconds"):
            s.pop(key, None)
    assert a == b
    wa, wb = _weights(resumed / "final"), _weights(whole / "final")
    assert wa.keys() == wb.keys() and wa
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"


def _kill_and_resume(start: list[str], resume: list[str], run_dir: Path, moments: list[str]) -> None:
    """Start the run, killed at the first moment; resume it, killed at the next; ...; then resume to the end."""
    for i, moment in enumerate(moments):
        done = run_cli(start if i == 0 else resume, kill_at=moment)
        assert done.returncode == -signal.SIGKILL, f"not killed at {moment}: {done.returncode}\n{done.stderr[-3000:]}"
        ckpt = latest_checkpoint(run_dir)
        if moment.startswith("checkpoint"):  # a half-written checkpoint lies there, never taken for one
            step = int(moment.split(":")[1])
            assert list(run_dir.glob(f".checkpoint-{step}.*.tmp")) and not (run_dir / f"checkpoint-{step}").exists()
            assert ckpt is None or ckpt.name != f"checkpoint-{step}"
    done = run_cli(resume)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(run_dir.glob(".checkpoint-*")) and not list(run_dir.glob(".final*"))  # leftovers cleared


# moments: `<where>:<step>` (tinyr1.faults); step 0 is the evaluation before training, before any checkpoint
POLICY_CASES = {
    "grpo": ["sampling:0", "sampling:2", "update:3", "checkpoint:3"],
    "ppo": ["update:2", "logged:3", "final:4"],
    "sft": ["logged:1", "checkpoint:2", "logged:3"],  # a checkpoint every 2 steps: step 3's line goes on resume
}


@pytest.mark.timeout(1200)  # about 15 processes; a loaded 2-core machine takes minutes
@pytest.mark.parametrize("algorithm", list(POLICY_CASES))
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_run(algorithm, tiny_model_dir, problems_file, tmp_path):
    config = _policy_config(tmp_path, tiny_model_dir, problems_file, algorithm)
    whole = run_cli(["train", str(config), "--run.name=whole"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "runs" / "cut"
    _kill_and_resume(["train", str(config), "--run.name=cut"], ["train", "--resume", str(run_dir)], run_dir,
                     POLICY_CASES[algorithm])
    _assert_same_run(run_dir, tmp_path / "runs" / "whole")


@pytest.mark.timeout(1200)
def test_a_reward_model_run_killed_at_any_moment_resumes_to_the_uninterrupted_run(tiny_model_dir, responses_file, tmp_path):
    def args(out: Path) -> list[str]:
        return ["rm", "train", f"--model={tiny_model_dir}", f"--data={responses_file}", f"--out={out}", "--epochs=5",
                "--max-steps=4", "--train.batch_size=3", "--train.save_every=1", "--train.progress=false", "--lr=0.001"]

    whole = run_cli(args(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "cut"
    _kill_and_resume(args(run_dir), ["rm", "train", "--resume", str(run_dir)], run_dir, ["update:2", "checkpoint:2", "logged:3"])
    _assert_same_run(run_dir, tmp_path / "whole")
