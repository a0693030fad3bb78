"""This machine's matmul ceiling: the best GFLOP/s torch reaches on square matmuls, per dtype.

    .venv/bin/python benchmarks/ceilings.py [--sizes 512 1024 2048] [--repeats 5] [--threads N]

Prints one row per (dtype, size): the best of `--repeats` timed runs of `a @ b` (n x n by n x n,
2 n^3 floating point operations), in GFLOP/s, and each dtype's best over all sizes. This is the
hardware limit the training benchmarks compare against (`grpo_vs_trl.py` prints it next to the
achieved GFLOP/s of sampling and update): a small model cannot beat it, and the gap says how much
time goes to something other than the matrix units (memory traffic, Python, small shapes).

`matmul_peak(dtype)` is the importable form: the best GFLOP/s over the default sizes.
The figure is a ceiling, not a promise: other processes on the machine lower it, so run it on an
idle machine (the script prints the load average it saw).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

SIZES = (512, 1024, 2048)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n by n x n matmul over `repeats` timed runs (after one warm-up)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    inner = max(1, int(2e9 // (2 * n**3)))  # ~2 GFLOP per timed run, so small sizes are timed over several calls
    torch.matmul(a, b)  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best / 1e9


def matmul_peak(dtype: torch.dtype | str, sizes=SIZES, repeats: int = 5) -> float:
    """The best matmul GFLOP/s over `sizes` for `dtype` (torch dtype or "float32" / "bfloat16")."""
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    return max(matmul_gflops(n, dtype, repeats) for n in sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="square matrix sizes n")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per size; the best counts")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tinyr1.rollout.policy_copy import cpu_has_bf16

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
          f"native bf16 units (AVX512-BF16 / AMX): {'yes' if cpu_has_bf16() else 'no: optim.bf16=auto trains in float32'}")
    print(f"| dtype | {' | '.join(f'n={n}' for n in args.sizes)} | peak GFLOP/s |")
    print(f"| --- | {' | '.join('---' for _ in args.sizes)} | --- |")
    for name, dtype in DTYPES.items():
        row = [matmul_gflops(n, dtype, args.repeats) for n in args.sizes]
        print(f"| {name} | {' | '.join(map(_gflops, row))} | **{_gflops(max(row))}** |")


def _gflops(g: float) -> str:
    return f"{g:.1f}" if g < 10 else f"{g:.0f}"  # emulated bfloat16 runs at ~1 GFLOP/s


if __name__ == "__main__":
    main()
