"""Grade a JSON Lines file of responses: the function behind `tinyr1 grade FILE.jsonl`.

Each input line is `{"response": str, "answer": str}`, optionally with `"style"` (boxed, gsm8k or
r1) overriding the default for that line; other keys are kept. Each output line is the input line
plus `extracted`, `method` and `correct` (see `tinyr1.rewards.answers.grade`).

    from tinyr1.rewards.grade_file import grade_jsonl
    summary = grade_jsonl("samples.jsonl", "graded.jsonl", style="gsm8k")
    print(summary["accuracy"], summary["parsed_rate"])

The whole input is checked before anything is graded, and the output is written atomically, so a
bad line (missing key, non-string value, unknown style) raises `UserError` naming file, line and
key, and leaves no output file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinyr1.errors import UserError
from tinyr1.io import read_jsonl, write_jsonl
from tinyr1.rewards.answers import STYLES, grade

_REQUIRED_KEYS = ("response", "answer")


def grade_jsonl(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    style: str = "boxed",
    fallback: bool = True,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Grade every line of `path`, write verdicts to `out_path`, and return a summary.

    Summary keys: `n` (lines graded), `correct`, `accuracy` (correct / n), `parsed` (lines where an
    answer was found), `parsed_rate` (parsed / n), `fallback` (answers found only as the last
    number), `out_path`.
    """
    if style not in STYLES:
        raise UserError(f"unknown answer style {style!r}; allowed: {', '.join(STYLES)}")
    records = _read_records(Path(path), style)
    rows, correct, parsed, fallback_used = [], 0, 0, 0
    for record, line_style in records:
        verdict = grade(record["response"], record["answer"], line_style, fallback, timeout)
        rows.append({**record, "extracted": verdict.extracted, "method": verdict.method, "correct": verdict.correct})
        correct += verdict.correct
        parsed += verdict.found
        fallback_used += verdict.method == "fallback"
    write_jsonl(out_path, rows)
    n = len(rows)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "parsed": parsed,
        "parsed_rate": parsed / n,
        "fallback": fallback_used,
        "out_path": str(out_path),
    }


def _read_records(path: Path, default_style: str) -> list[tuple[dict[str, Any], str]]:
    """All records of `path` with the style each uses; UserError on the first bad line."""
    records = []
    for lineno, record in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key in _REQUIRED_KEYS:
            if key not in record:
                raise UserError(f'{where}: missing key "{key}"; each line needs "response" and "answer"')
            value = record[key]
            if key == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
                record[key] = str(value)  # GSM8K-style files often store the answer as a number
            elif not isinstance(value, str):
                kind = type(value).__name__
                expected = "a string or a number" if key == "answer" else "a string"
                raise UserError(f'{where}: key "{key}" must be {expected}, got {kind}')
        style = record.get("style", default_style)
        if style not in STYLES:
            raise UserError(f'{where}: key "style" is {style!r}; allowed: {", ".join(STYLES)}')
        records.append((record, style))
    if not records:
        raise UserError(f'{path}: no records (expected JSON lines with "response" and "answer")')
    return records
