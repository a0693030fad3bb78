"""The `tinyr1` command line: one module per command, dispatched by `main` (cli/main.py)."""

from tinyr1.cli.main import main

__all__ = ["main"]
