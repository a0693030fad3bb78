"""Load math problems from any supported source: `load_problems(cfg, split)`.

`cfg.source` is `scheme:location`:

    gsm8k:<folder or hub id>   <folder>/train.jsonl (+ test.jsonl), or openai/gsm8k    gsm8k.py
    math:<folder or hub id>    <folder>/train/<subject>/<id>.json (+ test/), or a mirror  math.py
    synthetic:<task>           a reasoning-gym task: basic_arithmetic, chain_sum, ...  synthetic.py
    jsonl:<file>               any JSON Lines file (cfg.question_field, cfg.answer_field)  jsonl.py
    hf:<hub id or folder>      any `datasets` dataset, hub or save_to_disk folder (same fields)  rows.py

A `gsm8k:`/`math:` location that is not an existing path but looks like `owner/name` is read
from the hub (hub.py). The split rule, in short (splits.py has it in full): a source's own test
split is used when it has one; otherwise `cfg.test_size` problems are held out with seed
`cfg.seed`, never overlapping train, duplicates of test questions dropped from train; MATH
filters apply after the split, the step filters `data.min_steps` / `data.max_steps` to the train
split only (difficulty.py). Same cfg, same problems in the same order.

Run:
    .venv/bin/python -c "from tinyr1.config import DataConfig; from tinyr1.data import load_problems; \\
        print(load_problems(DataConfig(source='gsm8k:../shared/data/GSM8K'), 'test')[0])"
"""

from __future__ import annotations

from pathlib import Path

from tinyr1.config import DataConfig
from tinyr1.data import gsm8k, hub, jsonl, math, rows, synthetic
from tinyr1.data.difficulty import within_steps
from tinyr1.data.splits import SPLITS, Source, held_out_split
from tinyr1.errors import UserError
from tinyr1.types import Problem

# scheme -> (opener for a local path or task name, opener for a hub id or None)
SCHEMES = {
    "gsm8k": (gsm8k.open_folder, hub.open_gsm8k),
    "math": (math.open_folder, hub.open_math),
    "synthetic": (synthetic.open_task, None),
    "jsonl": (jsonl.open_file, None),
    "hf": (rows.open_dataset, None),
}
_EXAMPLES = "gsm8k:../shared/data/GSM8K, math:../shared/data/MATH, synthetic:basic_arithmetic, jsonl:problems.jsonl"


def parse_source(source: str) -> tuple[str, str]:
    """Split `scheme:location`; raises `UserError` for a missing colon or an unknown scheme.

    >>> parse_source("gsm8k:data/GSM8K")
    ('gsm8k', 'data/GSM8K')
    """
    scheme, sep, location = source.partition(":")
    if not sep:
        raise UserError(f"data.source {source!r} has no scheme; write scheme:location, e.g. {_EXAMPLES}")
    if scheme not in SCHEMES:
        raise UserError(f"data.source {source!r}: unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)} (e.g. {_EXAMPLES})")
    if not location.strip():
        raise UserError(f"data.source {source!r} names no location after '{scheme}:'; e.g. {_EXAMPLES}")
    return scheme, location.strip()


def open_source(cfg: DataConfig) -> Source:
    """The `Source` for `cfg.source`: a local path wins; an `owner/name` that is not one goes to the hub."""
    scheme, location = parse_source(cfg.source)
    open_local, open_hub = SCHEMES[scheme]
    if open_hub is not None and not Path(location).expanduser().exists() and hub.looks_like_hub_id(location):
        return open_hub(cfg, location)
    return open_local(cfg, location)


def load_problems(cfg: DataConfig, split: str) -> list[Problem]:
    """The problems of `split` ("train" or "test") of `cfg.source`, filtered by cfg, in a fixed order.

    Raises `UserError` for any bad input, and when the selection is empty.
    """
    if split not in SPLITS:
        raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    source = open_source(cfg)
    if source.has_test:
        problems = source.read(split)
    else:
        train, test = held_out_split(source.read("train"), cfg.test_size, cfg.seed, source.name)
        problems = train if split == "train" else test
    if source.keep is not None:
        problems = [p for p in problems if source.keep(p)]
    if split == "train":  # never the held-out side: it stays the same whatever the step filters say
        problems = within_steps(problems, cfg.min_steps, cfg.max_steps, source.name)
    if not problems:
        causes = [f"filters {source.filters}"] if source.filters else []
        if split == "train" and (cfg.min_steps is not None or cfg.max_steps is not None):
            causes.append(f"data.min_steps={cfg.min_steps} / data.max_steps={cfg.max_steps}")
        if split == "test" and cfg.test_size == 0:
            causes.append("data.test_size=0")
        because = f" (because of {' and '.join(causes)})" if causes else ""
        raise UserError(f"{source.name}: no problems left in the {split} split{because}")
    return problems
