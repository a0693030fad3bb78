"""Problems from rows of any table: a JSON Lines file, a `datasets` dataset (hub or local), or a
Python list of dicts. One field holds the question, one the reference answer.

    hf:<hub id or datasets folder>   a dataset's train / test splits (`datasets.load_dataset`, or
                                     `load_from_disk` for a folder saved with `save_to_disk`)
    rows_to_problems(rows, "question", "answer", ...)   what `tinyr1.train(dataset=...)` uses

The answer is taken as written (numbers become text), except that a GSM8K-style answer whose
last line is `#### N` gives the answer N and keeps the whole text as the worked solution. The
field names are `data.question_field` / `data.answer_field`.

    >>> [(p.id, p.answer, p.solution) for p in rows_to_problems([("r1", {"q": "1+1?", "a": 2}),
    ...     ("r2", {"q": "2+3?", "a": "2 + 3 = 5\\n#### 5"})], "q", "a", lambda i, where: f"t/{i}", "demo")]
    [('t/0', '2', None), ('t/1', '5', '2 + 3 = 5\\n#### 5')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tinyr1.config import DataConfig
from tinyr1.data.gsm8k import final_answer
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.types import Problem


def answer_text(value: Any) -> str | None:
    """A usable answer as text: strings as they are, numbers written out, anything else None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def rows_to_problems(rows: Iterable[tuple[str, dict[str, Any]]], question_field: str, answer_field: str,
                     make_id: Callable[[int, str], str], source: str) -> list[Problem]:
    """(where, row) pairs -> Problems; a bad row raises `UserError` naming where it is and the key."""
    problems = []
    for i, (where, rec) in enumerate(rows):
        question = rec.get(question_field)
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{where}: key '{question_field}' is missing or not a non-empty string (set data.question_field "
                            f"to the key holding the question; this row has {sorted(rec)})")
        answer = answer_text(rec.get(answer_field))
        if answer is None:
            raise UserError(f"{where}: key '{answer_field}' is missing or not a string or number (set data.answer_field "
                            f"to the key holding the answer; this row has {sorted(rec)})")
        final = final_answer(answer) if "####" in answer else None
        problems.append(Problem(id=make_id(i, where), question=question, answer=final or answer,
                                solution=answer if final else None, meta={"source": source}))
    return problems


def _load_split(location: str, split: str) -> list[dict[str, Any]] | None:
    """A split of a local `save_to_disk` folder or a hub dataset as dicts; None when it has no such split."""
    # lazy: datasets is slow to import and only needed for these sources
    import datasets

    try:
        if Path(location).expanduser().is_dir():
            loaded = datasets.load_from_disk(str(Path(location).expanduser()))
            if isinstance(loaded, datasets.Dataset):
                return [dict(r) for r in loaded] if split == "train" else None
            return [dict(r) for r in loaded[split]] if split in loaded else None
        builder = datasets.load_dataset_builder(location)
        if split not in (builder.info.splits or {}):
            return None
        return [dict(r) for r in datasets.load_dataset(location, split=split)]
    except (OSError, ValueError, FileNotFoundError, ConnectionError) as e:
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"hf:{location}: could not be read as a datasets folder or hub dataset ({type(e).__name__}: "
                        f"{reason}); offline, give a folder written by Dataset.save_to_disk or a jsonl: file") from None


def open_dataset(cfg: DataConfig, location: str) -> Source:
    """A `Source` over a `datasets` dataset: its own test split when it has one, else one held out."""
    cache: dict[str, list[Problem] | None] = {}

    def read(split: str) -> list[Problem]:
        if split not in cache:
            rows = _load_split(location, split)
            cache[split] = None if rows is None else rows_to_problems(
                ((f"hf:{location} ({split} row {i})", r) for i, r in enumerate(rows)), cfg.question_field,
                cfg.answer_field, lambda i, where: f"{Path(location).name}/{split}/{i}", "hf")
        if cache[split] is None:
            raise UserError(f"hf:{location}: no {split} split")
        return cache[split]

    has_test = _load_split(location, "test") is not None
    return Source(name=f"hf:{location}", read=read, has_test=has_test)
