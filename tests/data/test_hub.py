"""Hub sources with `datasets` replaced by a fake module: records, configs, and the offline message.

No network: `sys.modules["datasets"]` is a stand-in whose `load_dataset` returns rows (or
raises), so the real lazy import path in hub.py runs without the real package.

Run: .venv/bin/python -m pytest tests/data/test_hub.py -q
"""

from __future__ import annotations

import sys
import types

import pytest

from tinyr1.data import load_problems
from tinyr1.data.hub import looks_like_hub_id
from tinyr1.errors import UserError

from .conftest import GSM8K, cfg


def _fake_datasets(monkeypatch, load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


@pytest.fixture
def calls(monkeypatch):
    """A fake hub: GSM8K rows and MATH rows per (name, config, split); records each call."""
    seen = []

    def load_dataset(path, name=None, split=None):
        seen.append((path, name, split))
        if path == "openai/gsm8k":
            return [{"question": f"{split} q{i}?", "answer": f"so\n#### {i},000"} for i in range(3)]
        subject_type = {"algebra": "Algebra", "geometry": "Geometry"}
        if path == "EleutherAI/hendrycks_math":
            typ = subject_type.get(name, name.title())
            return [{"problem": f"{name} {split} {i}", "level": f"Level {i + 1}", "type": typ, "solution": f"\\boxed{{{i}}}"} for i in range(2)]
        rows = [("Algebra", "Level 2"), ("Counting & Probability", "Level ?"), ("Geometry", "Level 5")]
        return [{"problem": f"p{i}", "level": lv, "type": t, "solution": f"$\\boxed{{{i}}}$"} for i, (t, lv) in enumerate(rows)]

    _fake_datasets(monkeypatch, load_dataset)
    return seen


def test_hub_id_detection():
    assert looks_like_hub_id("openai/gsm8k") and looks_like_hub_id("DigitalLearningGmbH/MATH-lighteval")
    assert not any(map(looks_like_hub_id, ["/abs/GSM8K", "../data/GSM8K", "GSM8K", "a/b/c", "./x"]))


def test_gsm8k_hub_uses_config_main_and_its_own_splits(calls):
    train = load_problems(cfg("gsm8k:openai/gsm8k"), "train")
    test = load_problems(cfg("gsm8k:openai/gsm8k"), "test")
    assert calls == [("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test")]
    assert [(p.id, p.question, p.answer) for p in train] == [
        ("gsm8k/train/1", "train q0?", "0000"), ("gsm8k/train/2", "train q1?", "1000"), ("gsm8k/train/3", "train q2?", "2000"),
    ]  # fmt: skip
    assert test[0].id == "gsm8k/test/1" and test[0].solution == "so\n#### 0,000"


def test_math_mirror_with_subject_configs_loads_each_subject(calls):
    train = load_problems(cfg("math:EleutherAI/hendrycks_math"), "train")
    assert [c[1] for c in calls][:2] == ["algebra", "counting_and_probability"] and len(calls) == 7
    assert len(train) == 14
    first = train[0]
    assert (first.id, first.question, first.answer) == ("algebra/train/0", "algebra train 0", "0")
    assert first.meta == {"source": "math", "subject": "algebra", "type": "Algebra", "level": 1}


def test_math_mirror_with_one_config_takes_subjects_from_type_and_filters(calls):
    c = cfg("math:DigitalLearningGmbH/MATH-lighteval", subjects=["geometry", "counting_and_probability"])
    test = load_problems(c, "test")
    assert calls == [("DigitalLearningGmbH/MATH-lighteval", None, "test")]
    assert [(p.id, p.meta["level"]) for p in test] == [("counting_and_probability/test/1", None), ("geometry/test/2", 5)]
    only_level_2 = load_problems(cfg("math:DigitalLearningGmbH/MATH-lighteval", levels=[2]), "train")
    assert [p.id for p in only_level_2] == ["algebra/train/0"]


def test_unreachable_hub_says_so_and_suggests_the_local_layout(monkeypatch):
    def offline(path, name=None, split=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(UserError) as e:
        load_problems(cfg("gsm8k:openai/gsm8k"), "train")
    msg = str(e.value)
    assert "the Hugging Face hub could not be reached" in msg and "ConnectionError: Couldn't reach 'openai/gsm8k'" in msg
    assert "Use a local folder in the seed layout instead, gsm8k:<folder> with a folder holding train.jsonl" in msg
    with pytest.raises(UserError, match=r"math:<folder> with a folder holding train/<subject>/<id>\.json"):
        load_problems(cfg("math:EleutherAI/hendrycks_math"), "test")


def test_missing_datasets_package_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(UserError, match=r"need the `datasets` package"):
        load_problems(cfg("gsm8k:openai/gsm8k"), "train")


def test_an_existing_local_folder_wins_over_the_hub(monkeypatch, calls):
    monkeypatch.chdir(GSM8K.parents[1])  # so that "fixtures/GSM8K" is a local relative path
    train = load_problems(cfg("gsm8k:fixtures/GSM8K"), "train")
    assert len(train) == 12 and calls == []
