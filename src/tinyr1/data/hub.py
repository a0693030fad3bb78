"""GSM8K and MATH from the Hugging Face hub (`gsm8k:openai/gsm8k`, `math:EleutherAI/hendrycks_math`).

Used when a `gsm8k:` or `math:` location is not an existing local path and looks like a hub id
(`owner/name`). Rows come from `datasets.load_dataset`, imported only here; they go through the
same record parsers as the local folders (gsm8k.to_problem, math.to_problem), and the hub's own
train/test splits are used as they are. Known mirrors and their configs:

- `openai/gsm8k`: config `main`; ids `gsm8k/<split>/<row + 1>` (the line number in the
  original JSONL files);
- `EleutherAI/hendrycks_math`: one config per subject, loaded one after the other;
- any other MATH mirror (e.g. `DigitalLearningGmbH/MATH-lighteval`): its default config, the
  subject taken from each row's `type` (or `subject`). MATH ids are `<subject>/<split>/<row>`.

Offline or failing, a `UserError` says the hub could not be reached and names the local seed
layout to use instead. Tests replace `datasets` with a fake module (tests/data/test_hub.py).
"""

from __future__ import annotations

import re
from typing import Any

from tinyr1.config import DataConfig
from tinyr1.data import gsm8k, math
from tinyr1.data.splits import Source
from tinyr1.errors import UserError
from tinyr1.types import Problem

# owner/name with the characters the hub allows; a local path that exists wins over this.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

GSM8K_CONFIGS = {"openai/gsm8k": "main"}
MATH_CONFIGS = {"EleutherAI/hendrycks_math": list(math.SUBJECTS)}


def looks_like_hub_id(location: str) -> bool:
    """True for `owner/name` (`openai/gsm8k`); False for `../data/GSM8K`, `/abs/path`, `name`."""
    return bool(_HUB_ID.fullmatch(location)) and ".." not in location


def load_rows(scheme: str, name: str, config: str | None, split: str, layout: str) -> list[dict[str, Any]]:
    """Rows of one hub dataset split as plain dicts; any failure becomes a `UserError`."""
    where = f"{scheme}:{name}"
    try:
        # lazy: datasets is slow to import and only needed here
        from datasets import load_dataset
    except ImportError:
        raise UserError(f"{where}: hub datasets need the `datasets` package (pip install datasets); or use a local folder: {layout}") from None
    try:
        kwargs = {"split": split} if config is None else {"name": config, "split": split}
        rows = load_dataset(name, **kwargs)
        return [dict(r) for r in rows]
    except Exception as e:  # offline, unknown name, missing split: all are the user's to fix
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"{where}: the Hugging Face hub could not be reached or has no dataset {name!r} "
            f"(config {config!r}, split {split!r}; {type(e).__name__}: {reason}), and no local "
            f"folder {name!r} exists. Offline? Use a local folder in the seed layout instead, "
            f"{scheme}:<folder> with {layout}"
        ) from None


def open_gsm8k(cfg: DataConfig, name: str) -> Source:
    """A `Source` over a GSM8K hub dataset (train and test splits)."""
    config = GSM8K_CONFIGS.get(name)

    def read(split: str) -> list[Problem]:
        rows = load_rows("gsm8k", name, config, split, gsm8k.LAYOUT)
        return [
            gsm8k.to_problem(row, f"gsm8k/{split}/{i + 1}", f"gsm8k:{name} ({split} row {i})")
            for i, row in enumerate(rows)
        ]

    return Source(name=f"gsm8k:{name}", read=read, has_test=True)


def _math_rows(name: str, split: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(subject, row index, row) for every row of `split`, over the mirror's configs."""
    if name in MATH_CONFIGS:
        return [
            (subject, i, row)
            for subject in MATH_CONFIGS[name]
            for i, row in enumerate(load_rows("math", name, subject, split, math.LAYOUT))
        ]
    rows = load_rows("math", name, None, split, math.LAYOUT)
    return [(math.subject_of(str(row.get("type") or row.get("subject") or "unknown")), i, row) for i, row in enumerate(rows)]


def open_math(cfg: DataConfig, name: str) -> Source:
    """A `Source` over a MATH hub mirror (train and test splits), with cfg's subject/level filter."""
    keep, filters = math.selection(cfg, set(math.SUBJECTS))

    def read(split: str) -> list[Problem]:
        problems, skipped = [], []
        for subject, i, row in _math_rows(name, split):
            pid = f"{subject}/{split}/{i}"
            problem = math.to_problem(row, pid, subject, f"math:{name} ({subject} {split} row {i})")
            if problem is None:
                skipped.append(pid)
            else:
                problems.append(problem)
        math.warn_skipped(f"math:{name} ({split})", skipped)
        return problems

    return Source(name=f"math:{name}", read=read, has_test=True, keep=keep, filters=filters)
