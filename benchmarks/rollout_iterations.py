"""tinyr1's GRPO rollouts alone, one after another with an update in between: how fast is a decode
iteration at the full batch, rollout by rollout?

    .venv/bin/python benchmarks/rollout_iterations.py [--rollouts 8] [--new-tokens 128] [--no-update]

The same job as `grpo_vs_trl.py` (the quickstart's problems and settings, 8 prompts x 8 samples,
temperature 1, LoRA r32, bf16 sampling copy), in this one process and without TRL: each round
refreshes the sampling copy, collects a rollout (`grpo.collect`), and then (unless `--no-update`)
runs the GRPO update on it, as a training step does. Per rollout it prints the decode iterations
at all rows (before any row finished; the draw, the loop's bookkeeping and the model's step), their
median in ms and as GFLOP/s (2 x base parameters x rows per iteration) and share of the bf16
matmul peak measured at the start (`ceilings.py`), the same rate over all its decode iterations
(64 rows down to the last one: the work done over the time taken), then the medians over the
rollouts. The numbers
move by 10-20% from rollout to rollout on a shared machine; that spread is what it shows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollouts", type=int, default=8, help="rollouts measured (after one warm-up rollout)")
    ap.add_argument("--new-tokens", type=int, default=128, help="max new tokens per response")
    ap.add_argument("--no-update", action="store_true", help="rollouts back to back, no update in between")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from ceilings import matmul_peak
    from grpo_vs_trl import base_params, bench_job, correctness_fn, load_data

    from tinyr1.recipes import grpo
    from tinyr1.rollout import engine
    from tinyr1.rollout.policy_copy import SamplingCopy
    from tinyr1.training.optim import build_optimizer
    from tinyr1.training.policy import build_policy

    peak = matmul_peak("bfloat16", repeats=3)
    cfg = {"prompts": 8, "samples": 8, "max_new_tokens": args.new_tokens, "seed": args.seed}
    torch.manual_seed(args.seed)
    job = bench_job(cfg)
    data, reward_fns = load_data(job), {"correctness": (correctness_fn(job), 1.0)}
    model, tokenizer = build_policy(job)
    sampler = SamplingCopy(model, job.model, job.sampling.dtype)
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    rows_full, params = job.grpo.batch_size, base_params(model)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"bf16 matmul peak {peak:.0f} GFLOP/s, {rows_full} rows, max {args.new_tokens} new tokens, "
          f"{'no update' if args.no_update else 'an update'} between rollouts", flush=True)
    print("| rollout | rollout s | full-batch iterations | median ms | GFLOP/s (% bf16 peak) | all iterations | their GFLOP/s (% bf16 peak) |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    medians, rates = [], []
    for i in range(args.rollouts + 1):
        engine.STEP_TIMES = []
        t0 = time.perf_counter()
        rows, rewards, *_ = grpo.collect(sampler.refresh(model), tokenizer, data.stream, job, reward_fns, data.shots, {})
        seconds = time.perf_counter() - t0
        full = [t for r, t in engine.STEP_TIMES if r == rows_full]
        if i > 0 and full:  # the first rollout builds the kernels and prepacks: a warm-up
            med = statistics.median(full)
            medians.append(med)
            g = 2 * params * rows_full / med / 1e9
            # every decode iteration, 64 rows down to the last one: the work done over the time taken
            rate = sum(2 * params * r for r, _ in engine.STEP_TIMES) / sum(t for _, t in engine.STEP_TIMES) / 1e9
            rates.append(rate)
            print(f"| {i} | {seconds:.2f} | {len(full)} | {1000 * med:.1f} | {g:.0f} ({100 * g / peak:.0f}%) | "
                  f"{len(engine.STEP_TIMES)} | {rate:.0f} ({100 * rate / peak:.0f}%) |", flush=True)
        if not args.no_update:
            rollout = S.rollout_from_rows(rows, job.grpo.group_size, tokenizer.pad_token_id)
            advantages = grpo.ADVANTAGES[job.grpo.advantage](rewards, rows, rollout, job, tokenizer)
            grpo.update(model, None, optimizer, scheduler, rollout, advantages, job)
    if medians:
        med = statistics.median(medians)
        g = 2 * params * rows_full / med / 1e9
        print(f"\nmedian over {len(medians)} rollouts: {1000 * med:.1f} ms per full-batch iteration = {g:.0f} GFLOP/s = "
              f"{100 * g / peak:.0f}% of the bf16 peak (rollout medians {1000 * min(medians):.1f}-{1000 * max(medians):.1f} ms); "
              f"all decode iterations: median {statistics.median(rates):.0f} GFLOP/s = {100 * statistics.median(rates) / peak:.0f}%")


if __name__ == "__main__":
    main()
