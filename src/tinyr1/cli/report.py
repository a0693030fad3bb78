"""`tinyr1 report RUN_DIR...`: compare training runs: a table, a verdict and overlaid curves.

    tinyr1 report runs/grpo runs/ppo runs/sft [--out report/] [--title T]
"""

from __future__ import annotations

from pathlib import Path

from tinyr1.cli.args import ArgumentParser
from tinyr1.errors import UserError
from tinyr1.report import write_report


def main(args: list[str]) -> int:
    parser = ArgumentParser(prog="tinyr1 report", description="Compare training runs: a table of held-out "
                                     "accuracy before -> after, a verdict, and overlaid curves, in OUT/report.md.")
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders written by tinyr1 train")
    parser.add_argument("--out", default="report/", help="folder for report.md and its PNGs (default: report/)")
    parser.add_argument("--title", help="heading of the report")
    ns = parser.parse_args(args)
    if Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise UserError(f"--out {ns.out}: a file; expected a folder for report.md and its figures")
    path = write_report([Path(d) for d in ns.run_dirs], Path(ns.out), title=ns.title)
    print(f"wrote {path}")
    return 0
