"""One decode step of the sampling engine at a fixed batch, against the matmuls it cannot avoid.

    .venv/bin/python benchmarks/decode_step.py [--batch 64 128] [--group 8] [--prompt 57] [--generated 64]

Rows are laid out as in a GRPO rollout: `batch / group` prompts of `--prompt` tokens, `--group`
samples each, `--generated` tokens already decoded. For each batch size, the median time of one
decode step of the embedded model's bf16 sampling copy (the draw of the next token not included):

  - `GroupedDecoder` (`rollout/decoder.py`, what the engine runs for Llama-family models);
  - transformers' forward with the engine's preallocated cache and decode attention (what it runs
    for other models, and what it ran for all before);
  - that step's linear layers alone (the same weight shapes, `F.linear` on random bf16 inputs,
    each shape repeated while its weight stays in cache, best of 5): a ceiling for these shapes.

Each as GFLOP/s (2 x parameters x batch per step) and as a share of the bf16 matmul peak measured
in the same run (`ceilings.py`). The gap to the last column is everything that is not a matmul
on cached weights: attention, norms, rotary embeddings, weights streamed from memory, per-call cost.
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
def decode_step_seconds(model, batch: int, group: int, prompt: int, generated: int, steps: int, kind: str) -> float:
    """Median seconds of one engine decode step at `batch` rows (`batch / group` prompts).

    kind: "grouped" (GroupedDecoder as the engine runs it: the compiled attention kernel where it
    builds), "eager" (GroupedDecoder, attention as eager PyTorch ops), "forward" (transformers')."""
    from tinyr1.rollout import engine

    prompts = max(1, batch // group)
    ids = torch.randint(100, 10000, (prompts, prompt))
    mask = torch.ones(prompts, prompt, dtype=torch.long)
    positions = (mask.cumsum(-1) - 1)
    engine._register_attention()
    previous, native = model.config._attn_implementation, os.environ.get("TINYR1_NATIVE")
    model.set_attn_implementation(engine.ATTENTION)
    if kind == "eager":
        os.environ["TINYR1_NATIVE"] = "0"
    try:
        stepper = engine._ForwardSteps if kind == "forward" else engine._GroupedSteps
        runner = stepper(model, ids, mask, positions, batch // prompts, generated + steps + 2)
        rows = prompts * (batch // prompts)
        tokens, live, times = torch.randint(100, 10000, (rows,)), torch.ones(rows, dtype=torch.bool), []
        for k in range(generated + steps):
            t0 = time.perf_counter()
            runner.step(tokens, torch.full((rows,), prompt + k), live)
            times.append(time.perf_counter() - t0)
        timed = sorted(times[generated:])
        return timed[len(timed) // 2]
    finally:
        model.set_attn_implementation(previous)
        os.environ.pop("TINYR1_NATIVE", None) if native is None else os.environ.__setitem__("TINYR1_NATIVE", native)


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
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (rows sharing a prompt)")
    ap.add_argument("--prompt", type=int, default=57, help="prompt tokens (the quickstart's are 56-58)")
    ap.add_argument("--generated", type=int, default=64, help="response tokens already in the cache")
    ap.add_argument("--steps", type=int, default=20, help="timed decode steps (median reported)")
    args = ap.parse_args()
    model = load_bf16_model()
    params = sum(p.numel() for p in model.parameters())  # the tied embedding counted once: it is the head
    peak = matmul_peak("bfloat16")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
          f"bf16 matmul peak {peak:.0f} GFLOP/s, {params / 1e6:.1f}M parameters, groups of {args.group}, "
          f"prompt {args.prompt} + {args.generated} generated tokens")
    from tinyr1.rollout import decoder

    print("GroupedDecoder attention:", decoder.native_reason(model, torch.bfloat16, torch.device("cpu")) or "compiled kernel")
    print("| batch | GroupedDecoder step ms | GFLOP/s (% bf16 peak) | same, eager attention ms | GFLOP/s (% bf16 peak) "
          "| transformers forward step ms | GFLOP/s (% bf16 peak) | linear layers alone ms | GFLOP/s (% bf16 peak) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in args.batch:
        flops = 2 * params * b
        rate = lambda t: f"{flops / t / 1e9:.0f} ({100 * flops / t / 1e9 / peak:.0f}%)"
        common = (model, b, args.group, args.prompt, args.generated, args.steps)
        grouped, eager, forward = (decode_step_seconds(*common, kind=k) for k in ("grouped", "eager", "forward"))
        lin = linears_seconds(model, b)
        print(f"| {b} | {1000 * grouped:.1f} | {rate(grouped)} | {1000 * eager:.1f} | {rate(eager)} "
              f"| {1000 * forward:.1f} | {rate(forward)} | {1000 * lin:.1f} | {rate(lin)} |", flush=True)


if __name__ == "__main__":
    main()
