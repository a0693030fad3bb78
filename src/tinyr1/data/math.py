"""MATH (Hendrycks et al. 2021) from a local folder in the seed layout (`math:<folder>`).

Layout: `<folder>/<split>/<subject>/<id>.json` for split `train` (and optionally `test`), one
JSON object per file with keys `problem, level, type, solution`. The reference answer is the last
`\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`) of the solution. Ids are `<subject>/<id>`; meta
holds `subject` (the folder name), `type` (display name) and `level` (1-5, None for "Level ?").
Files are read in subject order, then numerically by id, so the order never depends on the file
system. A file whose answer is an empty `\\boxed{}` (two in the MATH train split) is skipped
with a warning: its answer cannot be checked. `cfg.subjects` (folder or type names, any case)
and `cfg.levels` filter the problems after the train/test split (splits.py says why). The hub
mirrors live in hub.py and reuse `to_problem` and `selection`.

Run: `.venv/bin/python -m pytest tests/data/test_math.py -q`
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable

from tinyr1.config import DataConfig
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.rewards.answers import last_boxed
from tinyr1.types import Problem

LAYOUT = (
    "a folder holding train/<subject>/<id>.json (and optionally test/<subject>/<id>.json), "
    "each file a JSON object with keys problem, level, type, solution (answer in \\boxed{})"
)

# Folder name -> `type` display name of the seven MATH subjects.
SUBJECTS = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}

_LEVEL = re.compile(r"(?:level\s*)?(\d+|\?)", re.IGNORECASE)


def parse_level(value: Any) -> int | None:
    """`"Level 3"` -> 3, `3` -> 3, `"Level ?"` -> None; anything else raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _LEVEL.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected 'Level 1'..'Level 5' or 'Level ?', got {value!r}")
    return None if m.group(1) == "?" else int(m.group(1))


def subject_of(type_name: str) -> str:
    """The folder name for a `type` display name (`Number Theory` -> `number_theory`)."""
    for folder, display in SUBJECTS.items():
        if display.casefold() == type_name.casefold():
            return folder
    return re.sub(r"[^a-z0-9]+", "_", type_name.casefold()).strip("_")


def to_problem(record: Any, pid: str, subject: str, where: str) -> Problem | None:
    """Turn one MATH record into a `Problem`; `where` (a file or hub row) names it in errors.

    Returns None when the final answer is an empty `\\boxed{}`: two MATH train files
    (number_theory/7115, 7117) really have one, so their answer cannot be checked and callers
    skip them (with a warning) rather than refuse the whole dataset.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object with keys problem, level, type, solution")
    for key in ("problem", "solution"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise UserError(f"{where}: key '{key}' is missing or not a non-empty string")
    try:
        level = parse_level(record.get("level", "Level ?"))
    except ValueError as e:
        raise UserError(f"{where}: key 'level': {e}") from None
    answer = record.get("answer")  # some hub mirrors carry it; the seed layout does not
    if not isinstance(answer, str) or not answer.strip():
        answer = last_boxed(record["solution"])
    if answer is None:
        raise UserError(f"{where}: the solution has no \\boxed{{...}} final answer (expected {LAYOUT})")
    if not answer.strip():
        return None
    return Problem(
        id=pid,
        question=record["problem"],
        answer=answer,
        solution=record["solution"],
        meta={
            "source": "math",
            "subject": subject,
            "type": record.get("type") or SUBJECTS.get(subject, subject),
            "level": level,
        },
    )


def _id_key(name: str) -> tuple[int, int | str]:
    # Numeric ids sort as numbers (2 before 10); anything else after them, by name.
    stem = name[: -len(".json")]
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def read_split(folder: Path, split: str) -> list[Problem]:
    """Every problem under `<folder>/<split>/`, subjects alphabetically, ids numerically."""
    problems, skipped = [], []
    subjects = sorted(e.name for e in os.scandir(folder / split) if e.is_dir() and not e.name.startswith("."))
    for subject in subjects:
        names = [n for n in os.listdir(folder / split / subject) if n.endswith(".json") and not n.startswith(".")]
        for name in sorted(names, key=_id_key):
            path = folder / split / subject / name
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{path}: not valid JSON ({e}); expected {LAYOUT}") from None
            problem = to_problem(record, f"{subject}/{name[:-5]}", subject, str(path))
            if problem is None:
                skipped.append(f"{subject}/{name[:-5]}")
            else:
                problems.append(problem)
    warn_skipped(str(folder / split), skipped)
    if not problems:
        raise UserError(f"{folder / split}: no <subject>/<id>.json files found; expected {LAYOUT}")
    return problems


def warn_skipped(where: str, ids: list[str]) -> None:
    """One warning naming the problems dropped for an empty `\\boxed{}` (none: no warning)."""
    if ids:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        warnings.warn(f"{where}: skipped {len(ids)} problem(s) whose \\boxed{{}} answer is empty: {shown}", stacklevel=3)


def selection(cfg: DataConfig, known: set[str]) -> tuple[Callable[[Problem], bool] | None, str]:
    """The subject/level filter of `cfg` and its spelling for messages; (None, "") when unfiltered.

    `known` holds the subject folder names the source has; a subject that names neither one of
    them nor a MATH subject raises `UserError` (a typo must not silently drop a subject).
    """
    names = known | set(SUBJECTS) | {s.casefold() for s in SUBJECTS.values()}
    wanted = {s.casefold() for s in cfg.subjects}
    unknown = sorted(s for s in cfg.subjects if s.casefold() not in names)
    if unknown:
        raise UserError(f"data.subjects: unknown subject(s) {unknown}; known: {', '.join(sorted(known | set(SUBJECTS)))}")
    bad_levels = [lv for lv in cfg.levels if not 1 <= lv <= 5]
    if bad_levels:
        raise UserError(f"data.levels: {bad_levels} outside 1-5")
    levels = set(cfg.levels)
    if not wanted and not levels:
        return None, ""

    def keep(p: Problem) -> bool:
        if levels and p.meta["level"] not in levels:
            return False
        return not wanted or bool(wanted & {p.meta["subject"].casefold(), str(p.meta["type"]).casefold()})

    spelled = " ".join(f"{k}={v}" for k, v in (("subjects", cfg.subjects), ("levels", cfg.levels)) if v)
    return keep, spelled


def open_folder(cfg: DataConfig, location: str) -> Source:
    """A `Source` over a local MATH folder; raises `UserError` when the layout is not there."""
    folder = Path(location).expanduser()
    if not (folder / "train").is_dir() and not (folder / "test").is_dir():
        if not folder.exists():
            what = "does not exist"
        elif (folder.name in ("train", "test")) or any((folder / s).is_dir() for s in SUBJECTS):
            what = f"holds the subject folders itself; point at {folder.parent} instead"
        else:
            what = "has neither a train/ nor a test/ folder"
        raise UserError(f"math:{location}: {folder} {what}; expected {LAYOUT}")
    splits = tuple(s for s in ("train", "test") if (folder / s).is_dir())
    known = {e.name.casefold() for s in splits for e in os.scandir(folder / s) if e.is_dir()}
    keep, filters = selection(cfg, known)

    def read(split: str) -> list[Problem]:
        if split not in splits:  # a folder of test/ alone serves `--split test`
            raise UserError(f"math:{location}: {folder} has no {split}/ folder (the {split} split this needs); expected {LAYOUT}")
        return read_split(folder, split)

    return Source(name=f"math:{location}", read=read, has_test="test" in splits, keep=keep, filters=filters)
