"""A checkpoint's trainer state (optimizer, schedule, data position, RNG, extras) on disk, without pickle.

    write_trainer_state(folder, state)     # trainer_state.json + trainer_state.safetensors
    state = read_trainer_state(folder)     # the same nested dict back, tuples and integer keys kept

The JSON holds the structure and every number (Python floats round-trip exactly); each tensor
goes to the safetensors file and is named in the JSON (`{"__tensor__": "t3"}`). Tuples (Python's
RNG state, AdamW's betas) and dicts with non-string keys (the optimizer's per-parameter state,
keyed by index) are tagged so that they come back as they were: `optimizer.load_state_dict` and
`random.setstate` take the result as is. Reading executes nothing. A `trainer_state.pt` written
by tinyr1 before this format loads with `torch.load(weights_only=True)`, which refuses anything
but tensors and plain values: a crafted pickle is refused with one line, its payload never runs.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tinyr1.errors import UserError

STATE_JSON, STATE_TENSORS, LEGACY_STATE = "trainer_state.json", "trainer_state.safetensors", "trainer_state.pt"


def _pack(obj: Any, tensors: dict[str, torch.Tensor], storages: set[int]) -> Any:
    """`obj` as JSON with every tensor moved to `tensors` (named t0, t1, ...); tuples and dicts
    with non-string keys keep their types (`{"__tuple__": [...]}`, `{"__items__": [[k, v], ...]}`)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages and t.numel():  # safetensors refuses tensors sharing memory (tied weights)
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        name = f"t{len(tensors)}"
        tensors[name] = t
        return {"__tensor__": name}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors, storages) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors, storages) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _pack(v, tensors, storages) for k, v in obj.items()}
        return {"__items__": [[_pack(k, tensors, storages), _pack(v, tensors, storages)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_unpack(k, tensors): _unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    return obj


def write_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    """`state` as trainer_state.json (structure, numbers) + trainer_state.safetensors (tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(_pack(state, tensors, set()))
    save_file(tensors, folder / STATE_TENSORS)
    (folder / STATE_JSON).write_text(text, encoding="utf-8")


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder, executing nothing; `UserError` when it is corrupt
    or (an old trainer_state.pt) holds anything but tensors and plain values."""
    if not (folder / STATE_JSON).is_file() and (folder / LEGACY_STATE).is_file():
        return _read_legacy(folder / LEGACY_STATE)
    try:
        tensors = load_file(folder / STATE_TENSORS)
        state = _unpack(json.loads((folder / STATE_JSON).read_bytes().decode("utf-8")), tensors)
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError("no step in it")
        return state
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise UserError(f"{folder}: corrupt trainer state ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"remove {folder.name} to resume from the checkpoint before it") from None


def _read_legacy(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise UserError(f"{path}: refused: it holds Python objects that could run code when loaded, not only tensors "
                        f"and plain values ({(found or ['not a weights-only pickle'])[0][:160]}); tinyr1 never writes "
                        "such a file, so do not trust this run folder") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise UserError(f"{path}: corrupt trainer state ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"remove {path.parent.name} to resume from the checkpoint before it") from None
