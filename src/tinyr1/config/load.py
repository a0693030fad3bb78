"""Loading a config: a YAML file, then dotted overrides from the command line, into a job dataclass.

    job = load_config(TrainJob, "configs/quickstart.yaml", parse_overrides(["--grpo.beta=0.04"]))

Unknown keys, wrong types and values outside a `Literal` raise `UserError` naming the key (and the
file, for keys read from one). Keys that moved get a message naming their new place (`MOVED`).
`help_text(cls)` prints every key with its type, default and documentation.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from tinyr1.errors import UserError

# Keys that used to exist, and where they went: a config written for an older tinyr1 gets a
# message saying what to rename instead of a bare "unknown key".
MOVED = {
    "grpo.temperature": "sampling.temperature",
    "ppo.temperature": "sampling.temperature",
    "eval.temperature": "sampling.temperature",
    "collect.temperature": "sampling.temperature",
    "label.temperature": "sampling.temperature",
    "run.tensorboard": "run.report_to",
}



def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the docstring written under it."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting where a YAML/CLI spelling allows."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"config key '{key}': {value!r} is not allowed; expected one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except UserError:
                continue
        raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # CLI spelling: --data.levels=1,2
            value = [yaml.safe_load(v) if item_tp is not str else v for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads `5e-4` (no dot in the mantissa) as a string
        raise UserError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key '{key}': expected a string, got {value!r}")
    return value


def apply(obj: Any, values: dict[str, Any], prefix: str = "", merge_dicts: bool = False) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            if key in MOVED:
                raise UserError(f"config key '{key}' is now '{MOVED[key]}'; rename it (`tinyr1 train --help` documents it)")
            raise UserError(f"unknown config key '{key}'; known keys here: {', '.join(sorted(names))}")
        tp = hints[k]
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise UserError(f"config key '{key}': expected a section (mapping), got {v!r}")
            apply(current, v, prefix=f"{key}.", merge_dicts=merge_dicts)
        elif merge_dicts and isinstance(current, dict) and isinstance(v, dict):
            # `--reward.weights.format=0.1` adds to the mapping; a YAML file replaces it whole.
            setattr(obj, k, {**current, **_coerce(v, tp, key)})
        else:
            setattr(obj, k, _coerce(v, tp, key))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `['--a.b=1', '--c', 'x']` into a nested dict `{'a': {'b': 1}, 'c': 'x'}`.

    Values are read as YAML scalars (`1` -> int, `true` -> bool, `null` -> None).
    """
    nested: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise UserError(f"unexpected argument {arg!r}; overrides look like --section.key=value")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise UserError(f"override {arg} has no value; write {arg}=VALUE")
            key, raw = arg[2:], args[i + 1]
            i += 1
        i += 1
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
            value = raw  # "a: b" typed on the command line is a string, not a mapping
        node = nested
        head, colon, tail = key.partition(":")
        parts = head.replace("-", "_").split(".")
        parts[-1] += colon + tail  # `--reward.weights.orm:runs/rm-1.5=1`: a path after `:` is kept as written
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


# The configs shipped inside the package (the repository's `configs/` links here), so that a wheel
# install runs `tinyr1 train` and `tinyr1 train configs/sft_quickstart.yaml` from any folder.
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """`path` when it exists; else the packaged config of that name (`configs/x.yaml` or `x.yaml`)."""
    path = Path(path)
    if path.exists():
        return path
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) else path
    packaged = CONFIGS_DIR / relative
    return packaged if not path.is_absolute() and packaged.is_file() else path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; `UserError` naming the file (and line) otherwise."""
    path = resolve_config_path(path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")))
        raise UserError(f"{path}: config file not found" + (" (a folder)" if path.is_dir() else f" (the packaged ones: {shipped})"))
    try:
        values = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    return values


def load_config(cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None):
    """Build `cls()` and apply a YAML file, then overrides. Raises `UserError` on any bad key."""
    cfg = cls()
    if path is not None:
        values = read_yaml(path)
        try:
            apply(cfg, values)
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
    if overrides:
        apply(cfg, overrides, merge_dicts=True)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def help_text(cls: type, prefix: str = "") -> str:
    """One line per key: `--section.key  TYPE  (default)  doc`."""
    lines = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines.append(help_text(type(default), prefix=f"{key}."))
            continue
        lines.append(f"  --{key}={default!r}  [{_type_name(hints[f.name])}]\n      {docs.get(f.name, '')}")
    return "\n".join(lines)
