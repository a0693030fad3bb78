"""One decode step of the sampling engine at a fixed batch, against the matmuls it cannot avoid.

    .venv/bin/python benchmarks/decode_step.py [--batch 64 128] [--context 100] [--steps 20]

For each batch size: the time of one decode step of the embedded model's bf16 sampling copy as
`rollout/engine.py` runs it (transformers forward, preallocated float32 cache, decode attention
as two matmuls, last-position logits; the draw of the next token not included), and the time of
that step's linear layers alone (the same weight shapes, `F.linear` on random bf16 inputs, best
of 5). Both as GFLOP/s (2 x parameters x batch per step) and as a share of the bf16 matmul peak
(`ceilings.py`).
The gap between the two columns is everything that is not a matmul: attention, norms, rotary
embeddings, residual adds, and the framework's per-call cost on small tensors.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def load_bf16_model():
    from tinyr1.config import TrainJob, load_config
    from tinyr1.models.load import load_model

    job = load_config(TrainJob, ROOT / "configs" / "quickstart.yaml", {"model": {"dtype": "bfloat16"}})
    model, _ = load_model(job.model)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def decode_step_seconds(model, batch: int, context: int, steps: int) -> float:
    """Median seconds of one engine decode step at `batch` rows after a `context`-token prefill."""
    from tinyr1.rollout import engine

    engine._register_attention()
    previous = model.config._attn_implementation
    model.set_attn_implementation(engine.ATTENTION)
    try:
        cache = engine.preallocated_cache(context + steps + 2)
        ids = torch.randint(100, 10000, (batch, context))
        mask = torch.ones(batch, context, dtype=torch.long)
        model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
        tokens, pos, times = torch.randint(100, 10000, (batch, 1)), torch.full((batch, 1), context), []
        for _ in range(steps + 1):  # the first step warms up
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], 1)
            t0 = time.perf_counter()
            model(input_ids=tokens, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
            times.append(time.perf_counter() - t0)
            pos = pos + 1
        return sorted(times[1:])[len(times[1:]) // 2]
    finally:
        model.set_attn_implementation(previous)


@torch.no_grad()
def linears_seconds(model, batch: int, repeats: int = 5) -> float:
    """Seconds for every linear layer of one decode step (plus the vocabulary head) at `batch` rows."""
    shapes: dict[tuple[int, int], int] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            shapes[tuple(module.weight.shape)] = shapes.get(tuple(module.weight.shape), 0) + 1
    total = 0.0
    for (n, k), count in shapes.items():
        w, x = torch.randn(n, k).bfloat16(), torch.randn(batch, k).bfloat16()
        F.linear(x, w)
        inner = max(1, 2000 // count)
        best = min(_timed(lambda: F.linear(x, w), inner) for _ in range(repeats))
        total += best * count
    return total


def _timed(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def main() -> None:
    from ceilings import matmul_peak

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64], help="rows decoded together")
    ap.add_argument("--context", type=int, default=100, help="tokens already in the cache")
    ap.add_argument("--steps", type=int, default=20, help="timed decode steps (median reported)")
    args = ap.parse_args()
    model = load_bf16_model()
    params = sum(p.numel() for p in model.parameters())  # the tied embedding counted once: it is the head
    peak = matmul_peak("bfloat16")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
          f"bf16 matmul peak {peak:.0f} GFLOP/s, {params / 1e6:.1f}M parameters, context {args.context}")
    print("| batch | decode step ms | GFLOP/s (% bf16 peak) | its linear layers alone, ms | GFLOP/s (% bf16 peak) | share of the step in linears |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in args.batch:
        flops = 2 * params * b
        step = decode_step_seconds(model, b, args.context, args.steps)
        lin = linears_seconds(model, b)
        rate = lambda t: f"{flops / t / 1e9:.0f} ({100 * flops / t / 1e9 / peak:.0f}%)"
        print(f"| {b} | {1000 * step:.1f} | {rate(step)} | {1000 * lin:.1f} | {rate(lin)} | {100 * lin / step:.0f}% |", flush=True)

if __name__ == "__main__":
    main()
