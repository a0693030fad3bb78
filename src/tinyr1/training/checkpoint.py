"""The run folder on disk: creating it, checkpoints that resume exactly, the final model.

Run folder layout (`runs/<name>/`):
    config.yaml            the resolved config of the run
    metrics.jsonl          one flat dict per step (and per held-out evaluation)
    samples.jsonl          a few completions per step with their rewards
    checkpoint-<step>/     save_pretrained model or adapter + tokenizer + trainer_state.pt
    final/                 the trained model or adapter (what `tinyr1 eval --model runs/<name>` loads)
    plots/*.png            reward, held-out accuracy, response length, KL against step
    summary.json           eval_before, eval_after, wall time

A checkpoint is written to a temporary folder and renamed into place, so a crash mid-save never
leaves a half checkpoint that resume would pick. Under several processes only rank 0 writes;
every process takes part in gathering sharded weights and loads checkpoints on resume.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from tinyr1 import distributed as D
from tinyr1.config import TrainJob, load_config, to_dict
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl, write_jsonl
from tinyr1.training.problems import ProblemStream


def new_run_dir(job: TrainJob) -> Path:
    """The folder a new run will write (created by `Run` once the job's data, rewards and model
    have loaded, so bad input leaves nothing behind). A named run must not exist yet; a default
    name (`<algorithm>-<date>-<time>`) taken already gets a suffix `-2`, `-3`, ..."""
    if job.run.name:
        run_dir = Path(job.run.output_dir) / job.run.name
        if (run_dir / "config.yaml").exists():
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another run.name")
        return run_dir
    base = Path(job.run.output_dir) / f"{job.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, k = base, 1
    while run_dir.exists():
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return run_dir


def create_run_dir(run_dir: Path, job) -> None:
    """Create the run folder with its resolved config.yaml (rank 0)."""
    if (run_dir / "config.yaml").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(job), sort_keys=False))


def load_run_config(run_dir: Path, overrides: dict[str, Any], cls: type = TrainJob):
    """The job saved in a run folder's config.yaml (a `cls`), with `overrides` applied: what `--resume` continues."""
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there (not a tinyr1 run folder)")
    return load_config(cls, run_dir / "config.yaml", overrides)


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.pt").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1])) if ckpts else None


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
        tmp = run_dir / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        D.unwrap(model).save_pretrained(tmp, state_dict=weights)  # peft keeps the adapter's keys of it
        tokenizer.save_pretrained(tmp)
        state = dict(
            step=step, elapsed=elapsed, optimizer=optimizer_state, scheduler=scheduler.state_dict(),
            stream=stream.state_dict(), rng_torch=rng["torch"], rng_python=rng["python"], rng_cuda=rng["cuda"],
            extra=extra or {}, **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
        )
        torch.save(state, tmp / "trainer_state.pt")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # a crash mid-save never leaves a half checkpoint that resume would pick
        for old in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    D.barrier()
    return path


def load_checkpoint(path: Path, model, optimizer, scheduler, stream: ProblemStream) -> tuple[int, float, dict[str, Any]]:
    """Restore weights, optimizer, schedule, data position and RNG; returns (step, elapsed, extra).

    Every process loads the same file; each takes back its own RNG state when the checkpoint was
    saved by as many processes (otherwise rank r > 0 reseeds from the step and r). Sharded models
    (FSDP2) keep their shard of the whole weights and optimizer state the file holds.
    """
    model = D.unwrap(model)
    weights = path / ("adapter_model.safetensors" if (path / "adapter_config.json").is_file() else "model.safetensors")
    with D.loading_full(model):
        if hasattr(model, "peft_config"):
            set_peft_model_state_dict(model, load_file(weights))
        else:
            model.load_state_dict(load_file(weights), strict=False)
    state = torch.load(path / "trainer_state.pt", weights_only=False)
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
    return state["step"], state["elapsed"], state.get("extra", {})


def save_final(run_dir: Path, model, tokenizer) -> Path:
    """The trained model (or adapter) in save_pretrained format under `final/`.

    Called on every process: they all take part in gathering sharded weights (FSDP2, ZeRO-3);
    rank 0 writes.
    """
    weights = D.full_state_dict(model, main_only=True)
    if not D.is_main():
        return run_dir / "final"
    tmp = run_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    D.unwrap(model).save_pretrained(tmp, state_dict=weights)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    tmp.rename(run_dir / "final")
    return run_dir / "final"


def truncate_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint: those steps are about to be redone."""
    for name in ("metrics.jsonl", "samples.jsonl"):
        path = run_dir / name
        if path.is_file():
            path_text = path.read_text(encoding="utf-8")
            if path_text and not path_text.endswith("\n"):  # a crash mid-line: drop the partial line
                path.write_text(path_text[: path_text.rfind("\n") + 1], encoding="utf-8")
            write_jsonl(path, [row for _, row in read_jsonl(path) if row.get("step", 0) <= step])


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}
