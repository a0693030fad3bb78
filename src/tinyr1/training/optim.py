"""The optimizer and learning-rate schedule of every recipe, reward models included.

    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, total_steps=job.run.steps)

AdamW over the given parameters; the rate warms up linearly over `optim.warmup_steps`, then
stays constant or follows a cosine to 0 at `total_steps` (`optim.schedule`). One scheduler step
per optimizer step.

Every loop asks a `NonFiniteGuard` before each optimizer step (`optim.on_nonfinite`):

    guard = NonFiniteGuard(job.optim.on_nonfinite)
    if guard.allows(step, {"loss/policy": loss}, grad_norm):
        optimizer.step()
        guard.check_weights(step, params)

    >>> [round(lr_factor(s, warmup=2, total=6, schedule="cosine"), 3) for s in range(7)]
    [0.333, 0.667, 1.0, 0.854, 0.5, 0.146, 0.0]
"""

from __future__ import annotations

import math

import torch

from tinyr1 import distributed as D
from tinyr1 import faults
from tinyr1.config import OptimConfig
from tinyr1.errors import UserError


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


class NonFiniteError(UserError):
    """A NaN or infinite loss, gradient norm, reward or weight stopped the run (`optim.on_nonfinite`)."""


class NonFiniteGuard:
    """The `optim.on_nonfinite` policy: checks a step's quantities before the optimizer touches
    the weights. `stop` raises `NonFiniteError` (one line naming the step and the quantity);
    `skip` answers False, so the loop drops that optimizer step (`skipped` counts them).
    Every process decides alike (one all-reduce), so all stop or skip together."""

    def __init__(self, policy: str = "stop"):
        self.policy, self.skipped = policy, 0

    def allows(self, step: int, quantities: dict[str, float | torch.Tensor], grad_norm=None) -> bool:
        """True when every quantity (and `grad_norm`, where the engine reports one) is finite."""
        faults.reached("update")  # tests: a process killed here dies mid-update
        if grad_norm is not None and D.grad_norm_known():
            quantities = quantities | {"loss/grad_norm": grad_norm}
        bad = {k: float(v) for k, v in quantities.items() if v is not None and not math.isfinite(float(v))}
        if not D.all_reduce_max(int(bool(bad))):
            return True
        what = ", ".join(f"{k} is {v}" for k, v in bad.items()) or "a quantity on another process is not finite"
        if self.policy == "stop":
            raise NonFiniteError(f"step {step}: {what}; stopped before the optimizer step, so no weight became "
                                 "non-finite (checkpoints hold the last good step). Lower optim.lr or lora.alpha, or set "
                                 "optim.on_nonfinite=skip to drop such steps")
        self.skipped += 1
        return False

    def check_weights(self, step: int, params) -> None:
        """After an optimizer step: weights that overflowed cannot be taken back, so the run
        stops whatever the policy, before anything saves them."""
        local = [p.to_local() if hasattr(p, "to_local") else p for p in params]  # FSDP2: this process's shards
        finite = bool(torch.stack([torch.isfinite(p.detach()).all() for p in local]).all()) if local else True  # one sync
        if D.all_reduce_max(int(not finite)):
            raise NonFiniteError(f"step {step}: the optimizer step made weights non-finite (optim.lr too large?); stopped "
                                 "before saving them (checkpoints hold the last good step). Lower optim.lr")
