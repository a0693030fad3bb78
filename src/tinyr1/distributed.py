"""Data parallelism over W processes (`accelerate launch`, `torchrun`); nothing at all in one process.

    accelerate launch --num_processes 2 -m tinyr1.cli train configs/quickstart.yaml
    torchrun --nproc_per_node 8 -m tinyr1.cli train configs/gsm8k_grpo_smollm2_360m.yaml

How one training step spreads over W processes (every process runs the same loop):
- Data: every process draws the WHOLE step's prompts from the same seeded ProblemStream, so all
  streams stay at one position (one checkpointed number), and keeps its contiguous slice in rank
  order (`training.problems.take_share`). A GRPO group never spans two processes.
- Statistics over the batch (GRPO advantages, whose `scale_rewards: batch` and REINFORCE++ need
  the whole batch; reward means; the equal-group share; PPO's advantage whitening and adaptive
  KL; loss metrics) come from values gathered or all-reduced here, so they are the 1-process
  numbers of the same global batch.
- Gradients: the policy (and PPO's critic) goes through accelerate's `Accelerator.prepare`: DDP
  by default (gloo on CPU, NCCL on GPU), FSDP or DeepSpeed when the accelerate config says so.
  A step's micro-batches accumulate locally and only the last backward all-reduces
  (`sync_last`), so processes may hold different numbers of micro-batches.
- Loss normalisation (`loss_divisor`): a token-level loss divides by the GLOBAL token count and,
  because DDP AVERAGES gradients over the W processes, each process divides by global / W.
- Files: only rank 0 writes (metrics, samples, checkpoints, final/, plots, summary) and shows
  progress bars. On resume every rank loads the checkpoint, so the run folder must be on a
  filesystem every node sees. Checkpoints keep each rank's RNG state. Sharded weights and
  optimizer state (FSDP2; weights under ZeRO-3) are first gathered by every process
  (`full_state_dict`, `full_optimizer_state`), so files hold whole tensors, as in one process.
- Held-out evaluation is sharded: each process evaluates a contiguous slice of the problems, the
  per-problem rows are gathered and every process computes the same summary.

In one process (no launcher, or one process) every function here returns its input or does
nothing, and no process group is initialised. accelerate (slow to import), DeepSpeed (an
optional extra) and torch's DTensor (sharded engines only) are imported inside the functions
that need them, only on those paths.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist

from tinyr1.errors import UserError

_accelerator = None  # accelerate's Accelerator, once `init` joined a group of more than one process


def launched() -> bool:
    """True when a launcher started this process as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    """This process's rank as the launcher set it (RANK; 0 without a launcher), before or without `init`."""
    return int(os.environ.get("RANK", "0"))


def launch_world_size() -> int:
    """The number of processes the launcher started (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(cpu: bool = False) -> None:
    """Join the process group when launched on several processes; a no-op otherwise (and when done).

    `cpu` keeps a GPU machine on CPU with gloo (`model.device: cpu`); without CUDA it is implied.
    """
    global _accelerator
    if _accelerator is not None or not launched():
        return
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available())
    check_engine(accelerator)
    _accelerator = accelerator


def check_engine(accelerator) -> None:
    """Refuse FSDP1: tinyr1 gathers sharded weights as FSDP2's DTensors (`full_state_dict`)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP and accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise UserError("the accelerate config selects FSDP1, which tinyr1 does not support: set fsdp_version: 2 "
                        "under fsdp_config (see configs/accelerate/fsdp.yaml)")


def shutdown() -> None:
    """Wait for every process, then leave the process group (end of a CLI command)."""
    global _accelerator
    if _accelerator is not None:
        _accelerator.wait_for_everyone()
        _accelerator.end_training()  # destroys the process group
        _accelerator = None


def world_size() -> int:
    return _accelerator.num_processes if _accelerator is not None else 1


def rank() -> int:
    return _accelerator.process_index if _accelerator is not None else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files, prints and shows progress bars."""
    return rank() == 0


# ----------------------------------------------------------------------------- collectives


def _reduce(x, op: str):
    """Sum or max of a tensor or a Python number over every process (a copy; `x` is untouched)."""
    if _accelerator is None:
        return x

    if isinstance(x, torch.Tensor):
        t = x.detach().to(_accelerator.device, copy=True)
    else:  # Python numbers reduce in 64 bits
        t = torch.tensor(x, dtype=torch.float64 if isinstance(x, float) else torch.int64, device=_accelerator.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.to(x.device) if isinstance(x, torch.Tensor) else t.item()


def all_reduce_sum(x):
    """Sum of a tensor or number over processes."""
    return _reduce(x, "sum")


def all_reduce_max(x):
    """Maximum of a tensor or number over processes."""
    return _reduce(x, "max")


def reduce_dict(values: dict[str, float], op: str = "mean") -> dict[str, float]:
    """Every value of a flat dict of floats reduced over processes by `op` (mean, sum or max), in one call."""
    if _accelerator is None or not values:
        return values

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    t = _reduce(t, "max" if op == "max" else "sum")
    if op == "mean":
        t = t / world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj` (picklable, small), as a list in rank order; `[obj]` in one process."""
    if _accelerator is None:
        return [obj]

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather(t):
    """Every process's tensor (small, any length along dim 0) concatenated in rank order, on CPU."""
    if _accelerator is None:
        return t

    return torch.cat(gather_objects(t.detach().cpu()))


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` (picklable) on every process."""
    if _accelerator is None:
        return obj

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if _accelerator is not None:
        _accelerator.wait_for_everyone()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. converting and caching a model), then the others."""
    if _accelerator is None:
        yield
    else:
        with _accelerator.main_process_first():
            yield


def shard(items: Sequence) -> Sequence:
    """This process's contiguous slice of `items` (sizes differ by at most one); all of it in one process."""
    w, r = world_size(), rank()
    return items[r * len(items) // w : (r + 1) * len(items) // w]


# ----------------------------------------------------------------------------- training


def prepare(*objects):
    """Models and optimizer wrapped for data parallelism by accelerate (DDP by default, or the
    engine of the accelerate config); returned unchanged in one process."""
    if _accelerator is None:
        return objects if len(objects) > 1 else objects[0]

    prepared = _accelerator.prepare(*objects)
    for obj in prepared if len(objects) > 1 else [prepared]:
        if isinstance(obj, torch.nn.parallel.DistributedDataParallel):
            # No buffer broadcast at every forward (the buffers, e.g. rotary tables, are equal on every
            # process): it is a collective, and processes run different numbers of forward passes.
            obj.broadcast_buffers = False
    return prepared


def unwrap(model):
    """The plain model inside a DDP / FSDP wrapper (for saving, sampling copies, disabling adapters)."""
    return _accelerator.unwrap_model(model) if _accelerator is not None else model


# ----------------------------------------------------------------------------- sharded weights (FSDP2, ZeRO-3)
# FSDP2 turns every parameter into a DTensor holding this process's shard; DeepSpeed ZeRO-3 leaves
# an empty placeholder with a `ds_id`. Saving, sampling copies and resume need the FULL tensors:
# every process must take part in gathering them (collectives), in the same order.


def _zero3_params(model) -> list:
    return [p for p in model.parameters() if hasattr(p, "ds_id")]


def is_sharded(model) -> bool:
    """True when the model's parameters are shards (FSDP2 DTensors or DeepSpeed ZeRO-3 partitions)."""
    if _accelerator is None:
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in unwrap(model).parameters())


def full_state_dict(model, main_only: bool = False) -> dict[str, Any]:
    """The model's state dict with whole tensors: the plain `state_dict()` in one process and under
    DDP; FSDP2 DTensors and ZeRO-3 partitions gathered. A collective when sharded: call it on every process.

    `main_only` (for saving): rank 0 keeps the gathered tensors, on CPU; the others return {}.
    Tied weights (one parameter under two names) stay one tensor, as `save_pretrained` expects.
    """
    model = unwrap(model)
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.tensor import DTensor

    zero3 = _zero3_params(model)
    if zero3:
        import deepspeed  # only on this path: DeepSpeed is an optional extra

        gathering = deepspeed.zero.GatheredParameters(zero3, modifier_rank=None)
    else:
        gathering = contextlib.nullcontext()
    owner = {name: id(p) for name, p in model.named_parameters(remove_duplicate=False)}
    keep = not main_only or is_main()
    gathered: dict[Any, Any] = {}
    out: dict[str, Any] = {}
    with torch.no_grad(), gathering:
        for name, value in model.state_dict().items():
            key = owner.get(name, name)
            if key not in gathered:  # every process gathers the same tensors in the same order
                t = value.full_tensor() if isinstance(value, DTensor) else value.clone() if zero3 else value
                gathered[key] = (t.cpu() if main_only else t) if keep else None
            out[name] = gathered[key]
    return out if keep else {}


@contextlib.contextmanager
def loading_full(model):
    """Around a `load_state_dict` of whole tensors (a checkpoint's) into the model: under FSDP2 each
    process copies its shard out of them; under ZeRO-3 the partitions are gathered, filled, and
    rank 0's values partitioned again. Nothing in one process or under DDP. Every process enters it."""
    if not is_sharded(model):
        yield
        return
    zero3 = _zero3_params(unwrap(model))
    if zero3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(zero3, modifier_rank=0):
            yield
    else:
        from torch.distributed.tensor.experimental import implicit_replication

        with implicit_replication():  # a plain tensor counts as a replicated DTensor: copy_ takes the local shard
            yield


def full_optimizer_state(optimizer, main_only: bool = False) -> dict[str, Any]:
    """`optimizer.state_dict()` with FSDP2's DTensor shards gathered into whole tensors: the format of
    one process, so a checkpoint resumes under any engine. As is in one process and under DDP.
    A collective under FSDP2: call it on every process. `main_only`: as in `full_state_dict`."""
    state = optimizer.state_dict()
    if _accelerator is None:
        return state
    from torch.distributed.tensor import DTensor

    if not any(isinstance(v, DTensor) for s in state["state"].values() for v in s.values()):
        return state
    keep = not main_only or is_main()
    full: dict[Any, dict[str, Any]] = {}
    for i in sorted(state["state"]):  # the same order on every process
        full[i] = {}
        for k in sorted(state["state"][i]):
            v = state["state"][i][k]
            v = v.full_tensor() if isinstance(v, DTensor) else v
            if keep:
                full[i][k] = v.cpu() if main_only and hasattr(v, "cpu") else v
    return {"state": full, "param_groups": state["param_groups"]} if keep else {}


def load_optimizer_state(optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict` of a whole (one-process format) state; under FSDP2 each process
    keeps its shard of every tensor shaped like its parameter. Refused under DeepSpeed, whose
    optimizer state is one partition per process, which tinyr1 checkpoints do not hold."""
    if _accelerator is not None:
        from accelerate.utils import DistributedType
        from torch.distributed.tensor import DTensor, distribute_tensor

        if _accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise UserError("resuming under DeepSpeed is not supported: its optimizer state is partitioned over the "
                            "processes (use DDP or FSDP2, configs/accelerate/ddp.yaml or fsdp.yaml)")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if any(isinstance(p, DTensor) for p in params):
            def shard(v, p):  # src_data_rank=None: every process holds the whole tensor, no communication
                if isinstance(p, DTensor) and hasattr(v, "shape") and v.shape == p.shape:
                    return distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                return v

            state = dict(state, state={i: {k: shard(v, params[i]) for k, v in s.items()} for i, s in state["state"].items()})
    optimizer.load_state_dict(state)


def seed_per_rank(seed: int) -> None:
    """Give each process its own sampling noise (seed + rank); nothing in one process."""
    if _accelerator is not None:
        torch.manual_seed(seed + rank())
        random.seed(seed + rank())


def loss_divisor(local_count):
    """The divisor of a loss summed over this process's tokens (or sequences), clamped at 1.

    The rule: divide by the GLOBAL count (all processes' tokens), not this process's own, and
    multiply by W because DDP AVERAGES the W processes' gradients:
        (1/W) * sum_r W * loss_r / global = sum over all tokens / global = the full-batch loss.
    Both at once: each process divides by global / W. In one process: the local count.
    """
    total = all_reduce_sum(local_count)
    total = total.clamp(min=1) if hasattr(total, "clamp") else max(1, total)
    return total / world_size() if _accelerator is not None else total


def sync_last(models, items: Sequence) -> Iterator:
    """Yield `items` (a step's micro-batches); run each loop body but the last under `no_sync`.

    Gradients of the earlier micro-batches accumulate locally; the last backward all-reduces
    the accumulated sum once. So each process makes exactly one synchronising backward per
    optimizer step, whatever its number of micro-batches. `models`: one prepared model or a list.
    """
    models = models if isinstance(models, (list, tuple)) else [models]
    for i, item in enumerate(items):
        if _accelerator is None or i == len(items) - 1:
            yield item
            continue
        # DeepSpeed ignores no_sync and steps inside `backward` unless accelerate's gradient state
        # says the backward is not the last one (accelerate has no public setter for it)
        _accelerator.gradient_state._set_sync_gradients(False)
        try:
            with contextlib.ExitStack() as stack:
                for m in models:
                    stack.enter_context(_accelerator.no_sync(m))
                yield item
        finally:
            _accelerator.gradient_state._set_sync_gradients(True)


def backward(loss) -> None:
    """`loss.backward()`, through accelerate when distributed (DeepSpeed runs its own backward)."""
    if _accelerator is None:
        loss.backward()
    else:
        _accelerator.backward(loss)


def grad_norm_known() -> bool:
    """False under DeepSpeed, which clips inside its own step: `clip_grad_norm_` returns NaN there."""
    if _accelerator is None:
        return True
    from accelerate.utils import DistributedType

    return _accelerator.distributed_type != DistributedType.DEEPSPEED


def clip_grad_norm_(parameters, max_norm: float):
    """Clip the (already all-reduced) gradients' global norm; returns the norm before clipping."""
    if _accelerator is None:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    norm = _accelerator.clip_grad_norm_(parameters, max_norm)  # DeepSpeed clips inside its step (its config)
    return float("nan") if norm is None else norm
