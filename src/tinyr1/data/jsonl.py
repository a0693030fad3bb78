"""Problems from any JSON Lines file (`jsonl:<file>`).

Each line is a JSON object; `cfg.question_field` (default `question`) holds the question and
`cfg.answer_field` (default `answer`) the reference answer, used as is (no `####` parsing).
Numeric answers become text (`72` -> "72", `0.5` -> "0.5"). Ids are `<file stem>/<line number>`.
A file has no test split of its own, so one is held out (splits.py).

Run: `.venv/bin/python -m pytest tests/data/test_jsonl.py -q`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyr1.config import DataConfig
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.types import Problem


def _text(value: Any) -> str | None:
    """A usable answer as text: strings as they are, numbers written out, anything else None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def read_file(path: Path, question_field: str, answer_field: str) -> list[Problem]:
    """Every problem of `path`, in line order; a bad line raises `UserError` naming file:line:key."""
    problems = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        question = rec.get(question_field)
        if not isinstance(question, str) or not question.strip():
            raise UserError(
                f"{where}: key '{question_field}' is missing or not a non-empty string "
                f"(set data.question_field to the key holding the question; this line has {sorted(rec)})"
            )
        answer = _text(rec.get(answer_field))
        if answer is None:
            raise UserError(
                f"{where}: key '{answer_field}' is missing or not a string or number "
                f"(set data.answer_field to the key holding the answer; this line has {sorted(rec)})"
            )
        problems.append(Problem(id=f"{path.stem}/{lineno}", question=question, answer=answer, meta={"source": "jsonl"}))
    if not problems:
        raise UserError(f"{path}: the file holds no problems")
    return problems


def open_file(cfg: DataConfig, location: str) -> Source:
    """A `Source` over one JSON Lines file (train only; the test split is held out of it)."""
    path = Path(location).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(
            f"jsonl:{location}: {path} {what}; expected a JSON Lines file with one object per line "
            f'holding keys {cfg.question_field!r} and {cfg.answer_field!r}'
        )
    return Source(
        name=f"jsonl:{location}",
        read=lambda split: read_file(path, cfg.question_field, cfg.answer_field),
    )
