"""Held-out evaluation rows of a training run on disk: one JSON Lines file per evaluation.

    runs/<name>/eval/step-0.jsonl     before training        (summary.json: eval_before.rows_file)
    runs/<name>/eval/step-10.jsonl    every run.eval_every steps
    runs/<name>/eval/step-50.jsonl    after training         (summary.json: eval_after.rows_file)

One line per held-out problem, the row `tinyr1.evaluate` grades (id, response, extracted, method,
reference, correct, tokens, finished, self_check, ...) without its prompt, which the run's config
rebuilds. With them two evaluations can be compared problem by problem (`tinyr1.stats`), and a
response can be re-graded another way without running the model again:

- strict: only the answer style's marker counts (`grading.fallback: false`; for GSM8K the
  `####` line). A row is strictly correct when it is correct and its answer was found by the
  marker (`method == "style"`), whichever grading the run used.
- fallback: a response without the marker is graded on its last number. A strictly graded row
  without a marker (`method` None) is graded again that way; every other row keeps its verdict.

Only rank 0 writes; every file is written whole, atomically. Importing this module imports
neither torch nor the answer checker's worker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tinyr1.errors import UserError
from tinyr1.io import read_jsonl, write_jsonl
from tinyr1.rewards.answers import grade

EVAL_DIR = "eval"
_STEP_FILE = re.compile(r"step-(\d+)\.jsonl")
_DROPPED = ("prompt",)  # rebuilt from the run's config; the same long text on every row


def rows_file(step: int) -> str:
    """The file of the evaluation at `step`, relative to the run folder: `eval/step-<step>.jsonl`."""
    return f"{EVAL_DIR}/step-{step}.jsonl"


def write_rows(run_dir: str | os.PathLike, step: int, rows: list[dict[str, Any]]) -> str:
    """Write one evaluation's rows (atomically) and return the file's path relative to `run_dir`."""
    name = rows_file(step)
    write_jsonl(Path(run_dir) / name, [{k: v for k, v in row.items() if k not in _DROPPED} for row in rows])
    return name


def prune(run_dir: str | os.PathLike, after_step: int) -> None:
    """Delete the evaluation files of steps after `after_step` (a resumed run evaluates them again)."""
    folder = Path(run_dir) / EVAL_DIR
    for path in folder.glob("step-*.jsonl") if folder.is_dir() else ():
        m = _STEP_FILE.fullmatch(path.name)
        if m and int(m.group(1)) > after_step:
            path.unlink()


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The greedy rows of one evaluation file; `UserError` naming the file for a malformed one."""
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("correct"), bool):
            raise UserError(f"{path}:{lineno}: expected an evaluation row with a string 'id' and a boolean 'correct'")
        if row.get("mode", "greedy") == "greedy":
            rows.append(row)
    return rows


def by_id(rows: list[dict[str, Any]], verdict, where: str = "evaluation") -> dict[str, bool]:
    """`{problem id: verdict(row)}`; `UserError` when an id repeats (the rows cannot be paired)."""
    out: dict[str, bool] = {}
    for row in rows:
        if row["id"] in out:
            raise UserError(f"{where}: problem id {row['id']!r} appears twice; evaluation rows must have unique ids")
        out[row["id"]] = bool(verdict(row))
    return out


def strict_correct(row: dict[str, Any]) -> bool:
    """Correct with the answer found by the style's marker (no last-number fallback)."""
    return bool(row["correct"]) and row.get("method") == "style"


def fallback_correct(row: dict[str, Any], style: str, timeout: float = 5.0) -> bool:
    """Correct when a response without the marker is graded on its last number (re-graded if needed)."""
    if row.get("method") is not None:  # the marker was found, or the run already fell back
        return bool(row["correct"])
    return grade(row.get("response", ""), str(row.get("reference", "")), style, fallback=True, timeout=timeout).correct
