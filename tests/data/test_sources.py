"""`scheme:location` parsing, split names, and keeping `import tinyr1.data` light.

Run: .venv/bin/python -m pytest tests/data/test_sources.py -q
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tinyr1.data import SCHEMES, load_problems, parse_source
from tinyr1.errors import UserError

from .conftest import GSM8K, cfg


def test_parse_source_splits_at_the_first_colon():
    assert parse_source("jsonl:C:/data/p.jsonl") == ("jsonl", "C:/data/p.jsonl")
    assert set(SCHEMES) == {"gsm8k", "math", "synthetic", "jsonl", "hf"}


def test_source_without_colon_is_refused_with_examples():
    with pytest.raises(UserError, match=r"data\.source 'gsm8k' has no scheme; write scheme:location, e\.g\. gsm8k:"):
        load_problems(cfg("gsm8k"), "train")


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown scheme 'csv'; known schemes: gsm8k, math, synthetic, jsonl"):
        load_problems(cfg("csv:data.csv"), "train")


def test_empty_location_is_refused():
    with pytest.raises(UserError, match=r"names no location after 'math:'"):
        load_problems(cfg("math:"), "train")


def test_unknown_split_is_refused():
    with pytest.raises(UserError, match=r"split 'validation' is not one of train, test"):
        load_problems(cfg(f"gsm8k:{GSM8K}"), "validation")


def test_a_missing_relative_path_that_is_not_a_hub_id_is_a_missing_folder():
    with pytest.raises(UserError, match=r"gsm8k:no/such/GSM8K: no/such/GSM8K does not exist"):
        load_problems(cfg("gsm8k:no/such/GSM8K"), "train")


def test_importing_tinyr1_data_loads_no_heavy_package():
    code = (
        "import sys, tinyr1.data; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'datasets', 'reasoning_gym', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
