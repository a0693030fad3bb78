"""The sampler's one compiled kernel: a decode step's attention (`decode_attention.cpp`).

Built on first use with torch.utils.cpp_extension (a C++ compiler and ninja, about 10 s on
2 cores, printed once to stderr) into torch's extension cache, keyed by the source, the flags and
this CPU (`-march=native`), and loaded from there afterwards. Where it cannot be built (no
compiler, another platform) the decoder runs the same attention as eager PyTorch ops; the reason is
printed once. `TINYR1_NATIVE=0` turns the kernel off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode_attention.cpp")
BLOCK = 16  # key positions per block; the head dim must be a multiple of it
MAX_GROUP = 8  # query heads per kv head the kernel is instantiated for
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]  # fast-math: vectorised exp; no infinities used
_state: dict = {}


def _cpu_identity() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("model name", "flags")))
    except OSError:
        return platform.processor() or platform.machine()


def _build():
    from torch.utils import cpp_extension

    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_identity().encode()
                         + torch.__version__.encode()).hexdigest()[:12]
    name = f"tinyr1_native_{key}"
    try:
        built = (Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    except Exception:  # a private helper: if it moves, say so every time rather than fail
        built = False
    if not built:
        print("tinyr1: compiling the decode-attention kernel (once, about 10 s)", file=sys.stderr, flush=True)
    cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=FLAGS, is_python_module=False, verbose=False)
    return torch.ops.tinyr1.decode_attention


def decode_attention():
    """The compiled `decode_attention` op, or None where it is off or cannot be built."""
    if os.environ.get("TINYR1_NATIVE", "1") == "0":
        return None
    if "op" not in _state:
        try:
            _state["op"] = _build()
        except Exception as e:  # no compiler, no ninja, an unsupported platform: eager attention instead
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            print(f"tinyr1: decode-attention kernel not built ({first[:200]}); using eager attention",
                  file=sys.stderr, flush=True)
            _state["op"] = None
    return _state["op"]
