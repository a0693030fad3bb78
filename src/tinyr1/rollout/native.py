"""The sampler's compiled kernels (`decode_attention.cpp`): a decode step's attention, RMSNorm,
rotary + cache write, silu(gate) * up, and the draw of the next tokens.

Built on first use with torch.utils.cpp_extension (a C++ compiler and ninja, about 10 s on
2 cores, said once on stderr) into `~/.cache/torch_extensions/tinyr1/` (or `$TORCH_EXTENSIONS_DIR`),
in a folder named by a hash of the source, the flags, torch's version and this CPU
(`-march=native`), and loaded from there afterwards (directly: a process killed at any moment
never leaves a lock that later ones would wait on). Where it cannot be built (no
compiler, another platform) the decoder runs the same attention as eager PyTorch ops; the reason is
printed once. `TINYR1_NATIVE=0` turns the kernel off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
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

    text = SOURCE.read_bytes()
    identity = " ".join(FLAGS) + _cpu_identity() + torch.__version__
    key = hashlib.sha256(text + identity.encode()).hexdigest()[:12]
    name = f"tinyr1_native_{key}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(cpp_extension.get_default_build_root(), "tinyr1")
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    # compiled from a copy in the build folder: ninja rebuilds when the source's path changes
    # (another checkout, a worktree), and the name already says which source it is
    source = directory / SOURCE.name
    if not source.exists() or source.read_bytes() != text:
        tmp = directory / f"{SOURCE.name}.{os.getpid()}.tmp"
        tmp.write_bytes(text)
        os.replace(tmp, source)  # atomic: ranks of a distributed run may get here together
    library = directory / f"{name}.so"
    if library.exists():  # built before: loaded as is, no ninja run and no lock file to wait on
        torch.ops.load_library(str(library))
        return torch.ops.tinyr1
    # Built in a folder of this process's own, then moved into place: cpp_extension guards its
    # build folder with a lock file that a process killed mid-build leaves behind, and every
    # later process would wait on it for ever; here a killed build leaves only its own folder.
    print("tinyr1: compiling the decode-attention kernel (once, about 10 s)", file=sys.stderr, flush=True)
    build = directory / f"build.{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    cpp_extension.load(name=name, sources=[str(source)], extra_cflags=FLAGS, is_python_module=False, verbose=False,
                       build_directory=str(build))
    os.replace(build / library.name, library)  # atomic: processes building together each install a whole library
    shutil.rmtree(build, ignore_errors=True)
    return torch.ops.tinyr1


def kernels():
    """The compiled ops (`torch.ops.tinyr1`: decode_attention, rms_norm, rotary_append, silu_mul, draw), or None
    where they are off or cannot be built."""
    if os.environ.get("TINYR1_NATIVE", "1") == "0":
        return None
    if "op" not in _state:
        try:
            _state["op"] = _build()
        except Exception as e:  # no compiler, no ninja, an unsupported platform: eager attention instead
            lines = str(e).strip().splitlines() or [type(e).__name__]
            why = next((x for x in lines if "error" in x.lower() and "ninja" not in x.lower()), lines[-1])
            print(f"tinyr1: decode-attention kernel not built ({why.strip()[:300]}); using eager attention",
                  file=sys.stderr, flush=True)
            _state["op"] = None
    return _state["op"]


def decode_attention():
    """The compiled `decode_attention` op, or None where it is off or cannot be built."""
    ops = kernels()
    return None if ops is None else ops.decode_attention
