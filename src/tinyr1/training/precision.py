"""`optim.bf16`: bfloat16 autocast in the update, decided once per run for the hardware it runs on.

    job = resolve_bf16(job)   # optim.bf16 becomes a plain bool; every loop calls this before it builds the model

`auto` turns autocast on where the training device multiplies bfloat16 natively (a GPU that
supports it; a CPU with AVX512-BF16 or AMX) and off elsewhere. Without those units PyTorch
emulates bfloat16 matmuls: on a 2-core AMD EPYC (Zen 3), 1.1 GFLOP/s against 80 in float32
(benchmarks/RESULTS.md), so an explicit `true` there is kept (it is what was asked) but named in a warning.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from tinyr1 import distributed as D
from tinyr1.models.load import pick_device
from tinyr1.rollout.policy_copy import resolve_dtype


def native_bf16(device: str) -> bool:
    """True when `device` ('cpu' or 'cuda') runs bfloat16 matrix products in hardware: where the
    sampling copy's `sampling.dtype: auto` picks bfloat16 (one test for both)."""
    return resolve_dtype("auto", torch.device(device)) is torch.bfloat16


def resolve_bf16(job):
    """`job` with `optim.bf16` a bool: `auto` resolved for `model.device`, quietly (config.yaml
    records the choice); a warning (main process) when `true` asks for bfloat16 the hardware emulates."""
    wanted = job.optim.bf16
    if isinstance(wanted, bool) and not wanted:
        return job
    device = pick_device(job.model.device)
    native = native_bf16(device)
    if wanted == "auto":
        return dataclasses.replace(job, optim=dataclasses.replace(job.optim, bf16=native))
    if not native and D.is_main():
        print(f"tinyr1: warning: optim.bf16=true on a {device.upper()} without native bfloat16 units (AVX512-BF16 / "
              "AMX): PyTorch emulates bfloat16 there, matrix products run ~100x slower than in float32; set "
              "optim.bf16=auto (or false)", file=sys.stderr, flush=True)
    return job
