"""The run folder: checkpoints stored without pickle, a crafted pickle refused, a lock that keeps a
second process out, names that stay inside runs/, resume that checks its overrides, a run without
a checkpoint that starts again, and a checkpoint after the last step."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import tinyr1
from tinyr1.config import parse_overrides, validate
from tinyr1.errors import UserError
from tinyr1.recipes.grpo import train
from tinyr1.training.checkpoint import (
    create_run_dir,
    latest_checkpoint,
    load_run_config,
    new_run_dir,
    read_trainer_state,
    write_trainer_state,
)

DRIVER = Path(__file__).with_name("cli_with_test_reward.py")  # the command line, in a process of its own
SRC = Path(tinyr1.__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- trainer state without pickle


def test_trainer_state_round_trips_through_json_and_safetensors(tmp_path):
    shared = torch.arange(6.0)
    state = {
        "step": 3, "elapsed": 0.1 + 0.2, "rng_python": random.getstate(), "rng_torch": torch.get_rng_state(),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": shared}, 1: {"exp_avg": shared[:2]}},
                      "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1], "foreach": None}]},
        "extra": {"kl_coef": float("inf"), "__odd": "key"},
    }
    write_trainer_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer_state.json", "trainer_state.safetensors"]
    back = read_trainer_state(tmp_path)
    assert back["rng_python"] == state["rng_python"] and isinstance(back["rng_python"], tuple)  # random.setstate takes it
    assert list(back["optimizer"]["state"]) == [0, 1]  # integer keys, as optimizer.load_state_dict needs them
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert torch.equal(back["optimizer"]["state"][1]["exp_avg"], shared[:2]) and torch.equal(back["rng_torch"], state["rng_torch"])
    assert back["elapsed"] == state["elapsed"] and back["extra"] == state["extra"]  # floats exactly, odd keys kept


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_in_a_run_folder_is_refused_and_never_runs(tmp_path):
    """A run folder from someone else: its (old-style) trainer_state.pt holds a __reduce__ payload."""
    ckpt, marker = tmp_path / "checkpoint-4", tmp_path / "PWNED"
    ckpt.mkdir()
    payload = _Payload()
    payload.marker = marker
    torch.save({"step": 4, "optimizer": payload}, ckpt / "trainer_state.pt")
    with pytest.raises(UserError, match=r"refused: it holds Python objects that could run code.*GLOBAL posix.system"):
        read_trainer_state(ckpt)
    assert not marker.exists()


def test_a_checkpoint_written_by_older_versions_still_loads_without_pickle(tmp_path):
    state = {"step": 2, "elapsed": 1.5, "rng_python": random.getstate(), "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}}}
    torch.save(state, tmp_path / "trainer_state.pt")  # what tinyr1 wrote before, loaded with weights_only=True
    back = read_trainer_state(tmp_path)
    assert back["step"] == 2 and back["rng_python"] == state["rng_python"]


@pytest.mark.parametrize("damage", ["truncated tensors", "malformed json", "missing tensors", "truncated legacy"])
def test_a_corrupt_trainer_state_is_one_clear_line(tmp_path, damage):
    write_trainer_state(tmp_path, {"step": 1, "t": torch.ones(100)})
    if damage == "truncated tensors":
        data = (tmp_path / "trainer_state.safetensors").read_bytes()
        (tmp_path / "trainer_state.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "malformed json":
        (tmp_path / "trainer_state.json").write_text('{"step": 1, "t": {"__tens')
    elif damage == "missing tensors":
        (tmp_path / "trainer_state.safetensors").unlink()
    else:
        for f in tmp_path.iterdir():
            f.unlink()
        torch.save({"step": 1, "t": torch.ones(100)}, tmp_path / "trainer_state.pt")
        data = (tmp_path / "trainer_state.pt").read_bytes()
        (tmp_path / "trainer_state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=f"{tmp_path}.*corrupt trainer state") as e:
        read_trainer_state(tmp_path)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- names and the lock


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs", "a/b", "..", ""])
def test_a_run_name_cannot_leave_the_runs_folder(tiny_job, name):
    with pytest.raises(UserError, match="config key 'run.name': expected a folder name inside run.output_dir"):
        validate(tiny_job(run__name=name))


def test_a_name_that_holds_a_finished_run_is_refused(tiny_job):
    job = tiny_job(run__name="taken", run__steps=1)
    train(job, new_run_dir(job))
    with pytest.raises(UserError, match="already holds a run; continue it with --resume"):
        new_run_dir(job)


def test_a_folder_locked_by_another_process_is_refused_even_after_the_name_check(tiny_job, tmp_path):
    """Two processes started together both pass `new_run_dir`; only one gets the folder."""
    job = tiny_job(run__name="busy")
    run_dir = new_run_dir(job)
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
        "os.write(fd, b'4242'); print('locked', flush=True); time.sleep(60)"), str(run_dir / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=r"is in use by another tinyr1 process \(pid 4242\)"):
            create_run_dir(run_dir, job)
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    create_run_dir(run_dir, job)  # the kernel dropped the lock with its holder: nothing stale is left
    assert (run_dir / "config.yaml").is_file()


# ----------------------------------------------------------------------------- resume


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_save_every_0_still_checkpoints_the_last_step_so_a_finished_run_can_go_on(tiny_job):
    job = tiny_job(run__name="ends", run__steps=2, run__save_every=0)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    assert latest_checkpoint(run_dir).name == "checkpoint-2"
    train(load_run_config(run_dir, parse_overrides(["--run.steps=3"])), run_dir, resume=True)
    assert [r["step"] for r in _metrics(run_dir) if "loss/policy" in r] == [1, 2, 3]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["steps"] == 3  # the accepted override, written back


def test_resuming_a_finished_run_adds_no_duplicate_evaluation(tiny_job):
    job = tiny_job(run__name="done", run__steps=2)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    before = [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/seconds"))} for r in _metrics(run_dir)]
    train(load_run_config(run_dir, {}), run_dir, resume=True)  # e.g. after a crash between final/ and summary.json
    after = [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/seconds"))} for r in _metrics(run_dir)]
    assert after == before and [r["step"] for r in after if "eval/accuracy" in r] == [0, 2]


def test_a_run_stopped_before_its_first_checkpoint_starts_again_on_resume(tiny_job, capsys):
    job = tiny_job(run__name="early", run__steps=2, run__save_every=0)
    run_dir = new_run_dir(job)
    create_run_dir(run_dir, job)  # killed after creating the folder, before any checkpoint
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "eval/accuracy": 0.5}\n{"step": 1, "reward/total": 9}\n')
    with pytest.raises(UserError, match="already holds a run; it has no checkpoint: start it again with --resume"):
        new_run_dir(job)
    resumed = load_run_config(run_dir, parse_overrides(["--optim.lr=0.02"]))  # no checkpoint: anything may change
    summary = train(resumed, run_dir, resume=True)
    assert "holds no checkpoint (the run stopped before its first one): starting it again from step 0" in capsys.readouterr().err
    assert [r["step"] for r in _metrics(run_dir)] == [0, 1, 2, 2] and summary["steps"] == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"] == 0.02


@pytest.mark.parametrize("override, message", [
    ("--lora.rank=8", "--lora.rank=8 differs from the run's 4"),
    ("--algorithm=sft", "--algorithm='sft' differs from the run's 'grpo'"),
    ("--optim.lr=0.5", "--optim.lr=0.5 differs from the run's 0.01"),
])
def test_resume_refuses_overrides_its_checkpoint_cannot_honour(tiny_job, override, message):
    job = tiny_job(run__name="fixed", run__steps=1)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    config = (run_dir / "config.yaml").read_text()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)") + ".*a resume may change only"):
        load_run_config(run_dir, parse_overrides([override]))
    assert (run_dir / "config.yaml").read_text() == config


def test_resume_names_the_command_for_a_folder_of_the_other_kind(tiny_job, tmp_path):
    from tinyr1.config import RMTrainJob

    job = tiny_job(run__name="policy", run__steps=1)
    run_dir = new_run_dir(job)
    create_run_dir(run_dir, job)
    with pytest.raises(UserError, match="holds a `tinyr1 train` run; continue it with `tinyr1 train --resume"):
        load_run_config(run_dir, {}, RMTrainJob)
    rm_dir = tmp_path / "rm"
    rm_dir.mkdir()
    (rm_dir / "config.yaml").write_text(yaml.safe_dump({"train": {"out": str(rm_dir)}}))
    with pytest.raises(UserError, match="holds a reward-model run; continue it with `tinyr1 rm train --resume"):
        load_run_config(rm_dir, {})


@pytest.mark.timeout(900)
def test_two_train_commands_with_one_run_name_at_once(tiny_model_dir, tmp_path):
    """The real thing: a second `tinyr1 train` beside a running one is refused; the first runs on."""
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"question": f"Calculate {a} + 1.", "answer": str(a + 1)}) + "\n" for a in range(12)))
    args = [sys.executable, str(DRIVER), "train", "--algorithm=sft", f"--model.name={tiny_model_dir}", "--model.device=cpu",
            f"--data.source=jsonl:{data}", "--data.test_size=2", "--run.eval_size=2", "--sampling.max_new_tokens=4",
            f"--run.output_dir={tmp_path / 'runs'}", "--run.name=same", "--run.steps=2", "--run.progress=false",
            "--sft.batch_size=2", "--lora.rank=2"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "TINYR1_PAUSE_AT": "logged:1"}
    first = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while "tinyr1: paused at logged:1" not in first.stderr.readline():
            assert time.monotonic() < deadline and first.poll() is None
        second = subprocess.run(args, env={**env, "TINYR1_PAUSE_AT": ""}, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"is in use by another tinyr1 process (pid {first.pid})" in second.stderr.strip().splitlines()[-1]
        resumed = subprocess.run([*args[:2], "train", "--resume", str(tmp_path / "runs" / "same")], env={**env, "TINYR1_PAUSE_AT": ""},
                                 capture_output=True, text=True, timeout=300, check=False)  # a --resume beside it, too
        assert resumed.returncode == 2 and f"in use by another tinyr1 process (pid {first.pid})" in resumed.stderr
        assert [json.loads(line)["step"] for line in (tmp_path / "runs" / "same" / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    finally:
        first.kill()
        first.wait()
