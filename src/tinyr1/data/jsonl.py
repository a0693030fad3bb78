"""Problems from any JSON Lines file (`jsonl:<file>`).

Each line is a JSON object; `cfg.question_field` (default `question`) holds the question and
`cfg.answer_field` (default `answer`) the reference answer (`data/rows.py`: numbers become text,
a GSM8K-style answer ending in `#### N` gives N). Ids are `<file stem>/<line number>`.
A file has no test split of its own, so one is held out (splits.py).

Run: `.venv/bin/python -m pytest tests/data/test_jsonl.py -q`
"""

from __future__ import annotations

from pathlib import Path

from tinyr1.config import DataConfig
from tinyr1.data.rows import rows_to_problems
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.types import Problem


def read_file(path: Path, question_field: str, answer_field: str) -> list[Problem]:
    """Every problem of `path`, in line order; a bad line raises `UserError` naming file:line:key."""
    problems = rows_to_problems(((f"{path}:{n}", rec) for n, rec in read_jsonl(path)), question_field, answer_field,
                                lambda i, where: f"{path.stem}/{where.rpartition(':')[2]}", "jsonl")
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
