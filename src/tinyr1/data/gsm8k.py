"""GSM8K from a local folder in the seed layout (`gsm8k:<folder>`).

Layout: `<folder>/train.jsonl` and optionally `<folder>/test.jsonl`, one JSON object per line,
`{"question": "...", "answer": "reasoning ...\\n#### 72"}`. The reference answer is the text
after the last `####`, with thousands commas removed (`1,200` -> `1200`); the solution is the
whole answer text (calculator annotations `<<48/2=24>>` included). Ids are
`gsm8k/<split>/<line number>`. Without `test.jsonl` a test split is held out of train
(splits.py). The hub variant (`gsm8k:openai/gsm8k`) lives in hub.py and reuses `to_problem`.

Run: `.venv/bin/python -m pytest tests/data/test_gsm8k.py -q`
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tinyr1.config import DataConfig
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.types import Problem

EXAMPLE = '{"question": "...", "answer": "... #### 72"}'
LAYOUT = f"a folder holding train.jsonl (and optionally test.jsonl) with lines {EXAMPLE}"

# A comma between a digit and exactly three digits: "1,234,567" -> "1234567", "1, 2" unchanged.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def final_answer(text: str) -> str | None:
    """The text after the last `####` with thousands commas removed, or None when there is none.

    >>> final_answer("3 + 4 = <<3+4=7>>7\\n#### 1,207")
    '1207'
    >>> final_answer("no marker") is None
    True
    """
    _, sep, tail = text.rpartition("####")
    answer = _THOUSANDS.sub("", tail.strip())
    return answer if sep and answer else None


def to_problem(record: dict[str, Any], pid: str, where: str) -> Problem:
    """Turn one GSM8K record into a `Problem`; `where` (file:line or hub row) names it in errors."""
    for key in ("question", "answer"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            found = "missing" if value is None else f"not a non-empty string ({value!r:.40})"
            raise UserError(f"{where}: key '{key}' is {found}; GSM8K records look like {EXAMPLE}")
    answer = final_answer(record["answer"])
    if answer is None:
        raise UserError(f"{where}: key 'answer' has no final answer after '#### ' (expected '... #### 72')")
    return Problem(
        id=pid,
        question=record["question"],
        answer=answer,
        solution=record["answer"],
        meta={"source": "gsm8k"},
    )


def read_file(path: Path, split: str) -> list[Problem]:
    """Every problem of one GSM8K JSON Lines file, in line order."""
    return [to_problem(rec, f"gsm8k/{split}/{lineno}", f"{path}:{lineno}") for lineno, rec in read_jsonl(path)]


def open_folder(cfg: DataConfig, location: str) -> Source:
    """A `Source` over a local GSM8K folder; raises `UserError` when the layout is not there."""
    folder = Path(location).expanduser()
    if folder.is_file() and folder.suffix == ".jsonl":
        raise UserError(
            f"gsm8k:{location}: expected {LAYOUT}, got a file; point at its folder, "
            f"or use jsonl:{location} for a JSON Lines file of your own"
        )
    if not (folder / "train.jsonl").is_file() and not (folder / "test.jsonl").is_file():
        what = "does not exist" if not folder.exists() else "has neither train.jsonl nor test.jsonl"
        raise UserError(f"gsm8k:{location}: {folder} {what}; expected {LAYOUT}")

    def read(split: str) -> list[Problem]:
        if not (folder / f"{split}.jsonl").is_file():  # a folder of test.jsonl alone serves `--split test`
            raise UserError(f"gsm8k:{location}: {folder} has no {split}.jsonl (the {split} split this needs); expected {LAYOUT}")
        return read_file(folder / f"{split}.jsonl", split)

    return Source(name=f"gsm8k:{location}", read=read, has_test=(folder / "test.jsonl").is_file())
