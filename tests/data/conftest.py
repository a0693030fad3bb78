"""Shared helpers for the data tests: fixture paths and a DataConfig builder.

The fixtures under tests/fixtures/ are small files written by hand in the real layouts
(GSM8K JSON lines, MATH per-problem JSON files); see tests/fixtures/*/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tinyr1.config import DataConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GSM8K = FIXTURES / "GSM8K"
MATH = FIXTURES / "MATH"
JSONL = FIXTURES / "data" / "problems.jsonl"


def cfg(source: str, **kw) -> DataConfig:
    """A DataConfig for `source` with any other fields set by keyword."""
    return DataConfig(source=source, **kw)


@pytest.fixture
def gsm8k_train_only(tmp_path: Path) -> Path:
    """A GSM8K folder with train.jsonl only (12 lines, lines 6 and 9 the same question)."""
    folder = tmp_path / "GSM8K"
    folder.mkdir()
    shutil.copy(GSM8K / "train.jsonl", folder / "train.jsonl")
    return folder


@pytest.fixture
def math_train_only(tmp_path: Path) -> Path:
    """A MATH folder with train/ only (8 problems over 4 subjects)."""
    folder = tmp_path / "MATH"
    shutil.copytree(MATH / "train", folder / "train")
    return folder
