"""The optimizer and learning-rate schedule of every recipe, reward models included.

    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, total_steps=job.run.steps)

AdamW over the given parameters; the rate warms up linearly over `optim.warmup_steps`, then
stays constant or follows a cosine to 0 at `total_steps` (`optim.schedule`). One scheduler step
per optimizer step.

    >>> [round(lr_factor(s, warmup=2, total=6, schedule="cosine"), 3) for s in range(7)]
    [0.333, 0.667, 1.0, 0.854, 0.5, 0.146, 0.0]
"""

from __future__ import annotations

import math

import torch

from tinyr1.config import OptimConfig


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """The multiplier of `optim.lr` after `step` optimizer steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def build_optimizer(params, optim: OptimConfig, total_steps: int):
    """AdamW over `params` and its warm-up + constant/cosine schedule over `total_steps`."""
    optimizer = torch.optim.AdamW(list(params), lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, optim.warmup_steps, total_steps, optim.schedule))
    return optimizer, scheduler
