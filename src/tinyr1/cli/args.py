"""Command-line arguments shared by every command: an optional config file first, then dotted keys.

    tinyr1 eval my.yaml --model runs/x --sampling.max_new_tokens=512

`load_job` builds the job: the YAML file (if given), then `--section.key=value` overrides; short
flags (`--model`) are aliases of dotted keys (`--model.name`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyr1.config import load_config, parse_overrides, read_yaml
from tinyr1.config.load import apply
from tinyr1.errors import UserError


def split_config_path(args: list[str]) -> tuple[str | None, list[str]]:
    """(the config file given first, or None; the remaining arguments)."""
    if args and not args[0].startswith("-"):
        if not args[0].endswith((".yaml", ".yml")):
            raise UserError(f"expected a config file ending in .yaml as the first argument, got {args[0]!r}")
        return args[0], args[1:]
    return None, args


def expand_aliases(args: list[str], aliases: dict[str, str]) -> list[str]:
    """`--model=x` -> `--model.name=x` for each alias; other arguments unchanged."""
    out = []
    for a in args:
        if a.startswith("--"):
            key, sep, value = a[2:].partition("=")
            a = f"--{aliases.get(key, key)}{sep}{value}"
        out.append(a)
    return out


def load_job(cls, args: list[str], aliases: dict[str, str], defaults: dict | None = None):
    """`cls` from `defaults` (values under everything else), an optional config file, and dotted
    overrides (aliases expanded)."""
    path, rest = split_config_path(args)
    overrides = parse_overrides(expand_aliases(rest, aliases))
    if defaults is None:
        return load_config(cls, path, overrides)
    base = load_config(cls, None, defaults)
    values = read_yaml(path) if path else {}
    try:
        apply(base, values)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    apply(base, overrides, merge_dicts=True)
    return base


def wants_help(args: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def split_resume(args: list[str]) -> tuple[Path | None, list[str]]:
    """(`--resume RUN_DIR` or `--resume=RUN_DIR`, the other arguments)."""
    if "--resume" in args:
        i = args.index("--resume")
        if i + 1 >= len(args):
            raise UserError("--resume needs a run folder: tinyr1 train --resume runs/<name>")
        return Path(args[i + 1]), args[:i] + args[i + 2 :]
    for a in args:
        if a.startswith("--resume="):
            return Path(a[len("--resume=") :]), [b for b in args if b != a]
    return None, args


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands without a config (`grade`, `report`): a bad option is a `UserError`,
    one line and exit 2 like every other bad input, instead of argparse's usage block."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")
