"""The run folder on disk: creating and locking it, checkpoints that resume exactly, the final model.

Run folder layout (`runs/<name>/`):
    config.yaml            the resolved config of the run (with the overrides a resume accepted)
    metrics.jsonl          one flat dict per step (and per held-out evaluation)
    samples.jsonl          a few completions per step with their rewards
    checkpoint-<step>/     save_pretrained model or adapter + tokenizer + trainer_state.json/.safetensors
    final/                 the trained model or adapter (what `tinyr1 eval --model runs/<name>` loads)
    plots/*.png            reward, held-out accuracy, response length, KL against step
    summary.json           eval_before, eval_after, wall time
    .lock                  held (flock) by the process training in the folder

What a crash cannot do:
- leave a half checkpoint that resume would pick: a checkpoint is written to a temporary folder
  (a name of its own per process) and renamed into place; leftovers are removed on resume;
- keep log lines for steps the checkpoint does not hold: the checkpoint records how long
  metrics.jsonl and samples.jsonl were, and resume cuts them back to that;
- run code on resume: the trainer state is JSON plus safetensors, no pickle (`trainer_state.py`).
Two processes never train in one folder: the folder's `.lock` is taken before anything is written.
Under several processes only rank 0 writes; every process takes part in gathering sharded
weights and loads checkpoints on resume.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from peft import set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file

from tinyr1 import distributed as D
from tinyr1 import faults
from tinyr1.config import TrainJob, load_config, read_yaml, to_dict, validate_resume
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl, write_jsonl, write_text_atomic
from tinyr1.training.problems import ProblemStream
from tinyr1.training.trainer_state import LEGACY_STATE, STATE_JSON, read_trainer_state, write_trainer_state

LOGS = ("metrics.jsonl", "samples.jsonl")  # cut back to their checkpointed length on resume


# ----------------------------------------------------------------------------- the folder and its lock


def new_run_dir(job: TrainJob) -> Path:
    """The folder a new run will write (created by `Run` once the job's data, rewards and model
    have loaded, so bad input leaves nothing behind). A named run must not exist yet; a default
    name (`<algorithm>-<date>-<time>`) taken already gets a suffix `-2`, `-3`, ..."""
    if job.run.name:
        run_dir = Path(job.run.output_dir) / job.run.name
        _refuse_existing_run(run_dir)
        return run_dir
    base = Path(job.run.output_dir) / f"{job.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, k = base, 1
    while run_dir.exists():
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return run_dir


def _refuse_existing_run(run_dir: Path) -> None:
    holder = lock_holder(run_dir)
    if holder is not None:
        raise UserError(f"{run_dir} is in use by another tinyr1 process (pid {holder}); wait for it to end, "
                        "or pick another run.name")
    if (run_dir / "config.yaml").exists():
        how = (f"continue it with --resume {run_dir}" if latest_checkpoint(run_dir) is not None
               else f"it has no checkpoint: start it again with --resume {run_dir} (its config, from step 0)")
        raise UserError(f"{run_dir} already holds a run; {how}, or pick another run.name")


_HELD: dict[Path, int] = {}  # run folders this process holds the lock of: path -> open lock file


def lock_holder(run_dir: Path) -> str | None:
    """The pid written in the run folder's lock while another process holds it, else None."""
    if run_dir.resolve() in _HELD or not (run_dir / ".lock").is_file():
        return None
    fd = os.open(run_dir / ".lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken and dropped at once: only asks whether it is free
        return None
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
    finally:
        os.close(fd)


def lock_run_dir(run_dir: Path) -> None:
    """Take the run folder's lock (creating the folder) or raise `UserError` naming the holder.

    An flock on `.lock`: the kernel releases it when the process ends, however it ends, so a
    killed run never leaves a stale lock. The same process may take it again (a run resumed in
    the process that started it)."""
    key = run_dir.resolve()
    if key in _HELD:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{run_dir} is in use by another tinyr1 process (pid {holder}); wait for it to end, "
                        "or pick another run.name") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd


def unlock_run_dir(run_dir: Path) -> None:
    fd = _HELD.pop(run_dir.resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the file releases the flock


def create_run_dir(run_dir: Path, job) -> None:
    """Lock the run folder, then create it with its resolved config.yaml (rank 0). The check that
    no run is there yet happens under the lock, so two processes started together cannot both pass."""
    lock_run_dir(run_dir)
    _refuse_existing_run(run_dir)
    write_config(run_dir, job)


def write_config(run_dir: Path, job) -> None:
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(job), sort_keys=False))


def remove_leftovers(run_dir: Path) -> None:
    """Temporary folders a killed process left half written (only the lock holder calls this)."""
    for tmp in [*run_dir.glob(".checkpoint-*.tmp"), *run_dir.glob(".checkpoint-*.old"), *run_dir.glob(".final.*.tmp"),
                *run_dir.glob(".final.*.old")]:
        shutil.rmtree(tmp, ignore_errors=True)


def load_run_config(run_dir: Path, overrides: dict[str, Any], cls: type = TrainJob):
    """The job saved in a run folder's config.yaml (a `cls`), with `overrides` applied: what `--resume`
    continues. Overrides that a resumed run cannot honour (`config.validate_resume`) are refused;
    a folder without a checkpoint starts again from step 0, so any override goes there."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there (not a tinyr1 run folder)")
    holder = lock_holder(run_dir)  # checked again under the lock itself, before anything is written
    if holder is not None:
        raise UserError(f"--resume {run_dir}: in use by another tinyr1 process (pid {holder}); wait for it to end")
    saved_keys = set(read_yaml(path))
    if saved_keys and "algorithm" in saved_keys and cls is not TrainJob:
        raise UserError(f"--resume {run_dir}: that folder holds a `tinyr1 train` run; continue it with "
                        f"`tinyr1 train --resume {run_dir}`")
    if saved_keys and "train" in saved_keys and cls is TrainJob:
        raise UserError(f"--resume {run_dir}: that folder holds a reward-model run; continue it with "
                        f"`tinyr1 rm train --resume {run_dir}` (or `tinyr1 prm train --resume`)")
    saved = load_config(cls, path)
    job = load_config(cls, path, overrides)
    validate_resume(saved, job, has_checkpoint=latest_checkpoint(run_dir) is not None, where=f"--resume {run_dir}")
    return job


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: corrupt ({str(e).splitlines()[0]}); remove it to resume") from None


# ----------------------------------------------------------------------------- checkpoints


def _step_of(path: Path) -> int:
    tail = path.name.split("-")[-1]
    return int(tail) if tail.isdigit() else -1


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*")
             if _step_of(p) >= 0 and ((p / STATE_JSON).is_file() or (p / LEGACY_STATE).is_file())]
    return max(ckpts, key=_step_of) if ckpts else None


def _log_sizes(run_dir: Path) -> dict[str, int]:
    return {name: (run_dir / name).stat().st_size if (run_dir / name).is_file() else 0 for name in LOGS}


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, stream: ProblemStream,
                    elapsed: float, keep: int = 2, extra: dict[str, Any] | None = None) -> Path:
    """Model/adapter + tokenizer (save_pretrained) and everything needed to continue exactly.

    Called on every process: their RNG states are gathered (`rng_ranks`, several processes only),
    so are sharded weights and optimizer state (FSDP2, ZeRO-3: the files hold the whole tensors,
    as one process writes them), and rank 0 writes; the others wait until the checkpoint is complete.
    """
    path = run_dir / f"checkpoint-{step}"
    rng = dict(torch=torch.get_rng_state(), python=random.getstate(),
               cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    rng_ranks = D.gather_objects(rng)
    weights = D.full_state_dict(model, main_only=True)
    optimizer_state = D.full_optimizer_state(optimizer, main_only=True)
    if D.is_main():
        tmp = run_dir / f".checkpoint-{step}.{os.getpid()}.tmp"  # a name of its own: never another process's
        shutil.rmtree(tmp, ignore_errors=True)
        D.unwrap(model).save_pretrained(tmp, state_dict=weights)  # peft keeps the adapter's keys of it
        tokenizer.save_pretrained(tmp)
        faults.reached("checkpoint")  # tests: a process killed here leaves a half-written folder
        state = dict(
            step=step, elapsed=elapsed, optimizer=optimizer_state, scheduler=scheduler.state_dict(),
            stream=stream.state_dict(), rng_torch=rng["torch"], rng_python=rng["python"], rng_cuda=rng["cuda"],
            extra=extra or {}, logs=_log_sizes(run_dir), **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
        )
        write_trainer_state(tmp, state)
        _replace(tmp, path)  # a crash mid-save never leaves a half checkpoint that resume would pick
        for old in sorted(run_dir.glob("checkpoint-*"), key=_step_of)[:-keep]:  # renamed first: never half removed
            gone = old.with_name(f".{old.name}.{os.getpid()}.old")
            old.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)
    D.barrier()
    return path


def _replace(tmp: Path, path: Path) -> None:
    """Rename the complete folder `tmp` to `path`; an old `path` is moved aside first, then removed."""
    if path.exists():
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


def load_checkpoint(path: Path, model, optimizer, scheduler, stream: ProblemStream) -> tuple[int, float, dict[str, Any], dict[str, int]]:
    """Restore weights, optimizer, schedule, data position and RNG; returns (step, elapsed, extra, log sizes).

    Every process loads the same file; each takes back its own RNG state when the checkpoint was
    saved by as many processes (otherwise rank r > 0 reseeds from the step and r). Sharded models
    (FSDP2) keep their shard of the whole weights and optimizer state the file holds.
    """
    model = D.unwrap(model)
    state = read_trainer_state(path)
    weights = path / ("adapter_model.safetensors" if (path / "adapter_config.json").is_file() else "model.safetensors")
    try:
        tensors = load_file(weights)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{weights}: corrupt or missing weights ({str(e).splitlines()[0]}); remove {path.name} to resume "
                        "from the checkpoint before it") from None
    with D.loading_full(model):
        if hasattr(model, "peft_config"):
            set_peft_model_state_dict(model, tensors)
        else:
            model.load_state_dict(tensors, strict=False)
    D.load_optimizer_state(optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stream.load_state_dict(state["stream"])
    rng = dict(torch=state["rng_torch"], python=state["rng_python"], cuda=state["rng_cuda"])
    if len(state.get("rng_ranks", [rng])) == D.world_size():
        rng = state.get("rng_ranks", [rng])[D.rank()]
    elif D.rank() > 0:  # resumed on another number of processes: fresh, distinct noise per rank
        torch.manual_seed(state["step"] * 1009 + D.rank())
        random.seed(state["step"] * 1009 + D.rank())
        rng = None
    if rng is not None:
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return state["step"], state["elapsed"], state.get("extra", {}), state.get("logs", {})


def save_final(run_dir: Path, model, tokenizer) -> Path:
    """The trained model (or adapter) in save_pretrained format under `final/`.

    Called on every process: they all take part in gathering sharded weights (FSDP2, ZeRO-3);
    rank 0 writes.
    """
    weights = D.full_state_dict(model, main_only=True)
    if not D.is_main():
        return run_dir / "final"
    tmp = run_dir / f".final.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    D.unwrap(model).save_pretrained(tmp, state_dict=weights)
    tokenizer.save_pretrained(tmp)
    _replace(tmp, run_dir / "final")
    return run_dir / "final"


def truncate_logs(run_dir: Path, step: int, sizes: dict[str, int] | None = None) -> None:
    """On resume, drop log lines written after the checkpoint: those steps are about to be redone.

    `sizes`: each log's length when the checkpoint was written (exact: a held-out evaluation
    logged after it goes too); checkpoints of older versions keep the lines of steps <= `step`."""
    for name in LOGS:
        path = run_dir / name
        if not path.is_file():
            continue
        if sizes and name in sizes:
            if path.stat().st_size > sizes[name]:
                with path.open("r+b") as f:
                    f.truncate(sizes[name])
            continue
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):  # a crash mid-line: drop the partial line
            path.write_bytes(data[: data.rfind(b"\n") + 1])
        write_jsonl(path, [row for _, row in read_jsonl(path) if row.get("step", 0) <= step])


def clear_logs(run_dir: Path) -> None:
    """A run started again from step 0: what its earlier attempt logged goes."""
    for name in (*LOGS, "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
