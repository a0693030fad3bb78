"""`tinyr1 grade FILE.jsonl`: grade lines {response, answer[, style]} and print a summary.

    tinyr1 grade answers.jsonl [--out OUT.jsonl] [--style S] [--no-fallback] [--timeout SEC]
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyr1.cli.args import ArgumentParser
from tinyr1.errors import UserError
from tinyr1.io import check_output_file
from tinyr1.rewards.grade_file import grade_jsonl


def main(args: list[str]) -> int:
    parser = ArgumentParser(prog="tinyr1 grade", description="Grade lines {response, answer[, style]} of a JSONL file.")
    parser.add_argument("file")
    parser.add_argument("--out", help="where to write one verdict per line (default: FILE.graded.jsonl)")
    parser.add_argument("--style", default="boxed", choices=["boxed", "gsm8k", "r1"])
    parser.add_argument("--no-fallback", action="store_true", help="do not fall back to the last number")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per answer check")
    ns = parser.parse_args(args)
    if not ns.timeout > 0:  # as grading.timeout everywhere else
        raise UserError(f"--timeout: expected a number of seconds > 0, got {ns.timeout}")
    out = check_output_file(ns.out or str(Path(ns.file).with_suffix("")) + ".graded.jsonl", (ns.file,))
    summary = grade_jsonl(ns.file, out, style=ns.style, fallback=not ns.no_fallback, timeout=ns.timeout)
    print(json.dumps(summary))
    return 0
