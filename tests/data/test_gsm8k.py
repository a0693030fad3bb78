"""GSM8K folders: answers, ids, real and held-out splits, and every bad-input message.

Run: .venv/bin/python -m pytest tests/data/test_gsm8k.py -q
"""

from __future__ import annotations

import json

import pytest

from tinyr1.data import load_problems
from tinyr1.data.gsm8k import final_answer
from tinyr1.errors import UserError

from .conftest import GSM8K, cfg


def test_train_split_reads_every_line_with_answers_after_the_last_marker():
    train = load_problems(cfg(f"gsm8k:{GSM8K}"), "train")
    assert len(train) == 12
    assert [p.answer for p in train] == ["7", "1200", "1234567", "-5", "0.5", "60", "54", "200", "60", "120", "6", "6"]
    first = train[0]
    assert first.id == "gsm8k/train/1"
    assert first.question == "Tom has 3 apples and buys 4 more. How many apples does he have?"
    assert first.solution == "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"
    assert first.meta == {"source": "gsm8k"}


def test_a_real_test_split_is_used_as_is():
    test = load_problems(cfg(f"gsm8k:{GSM8K}", test_size=1), "test")
    assert [(p.id, p.answer) for p in test] == [("gsm8k/test/1", "7"), ("gsm8k/test/2", "5000"), ("gsm8k/test/3", "21")]


def test_final_answer_removes_thousands_commas_only():
    assert final_answer("x\n#### 1,234,567") == "1234567"
    assert final_answer("#### 3 #### 4") == "4"
    assert final_answer("#### 1, 2") == "1, 2"
    assert final_answer("####   ") is None
    assert final_answer("7") is None


def test_without_test_file_a_held_out_split_never_overlaps_train(gsm8k_train_only):
    c = cfg(f"gsm8k:{gsm8k_train_only}", test_size=4, seed=3)
    train, test = load_problems(c, "train"), load_problems(c, "test")
    assert len(test) == 4
    assert not {p.id for p in train} & {p.id for p in test}
    assert not {p.question.lower() for p in train} & {p.question.lower() for p in test}
    assert all(p.id.startswith("gsm8k/train/") for p in test)  # held-out problems keep their ids
    assert load_problems(c, "test") == test  # same cfg, same split


def test_missing_folder_names_the_path_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"nowhere does not exist; expected a folder holding train\.jsonl"):
        load_problems(cfg(f"gsm8k:{tmp_path / 'nowhere'}"), "train")


def test_folder_without_train_file_says_so(tmp_path):
    with pytest.raises(UserError, match="has neither train.jsonl nor test.jsonl"):
        load_problems(cfg(f"gsm8k:{tmp_path}"), "train")


def test_a_folder_holding_only_test_jsonl_serves_the_test_split(tmp_path):
    (tmp_path / "test.jsonl").write_text((GSM8K / "test.jsonl").read_text())
    assert load_problems(cfg(f"gsm8k:{tmp_path}"), "test") == load_problems(cfg(f"gsm8k:{GSM8K}"), "test")
    with pytest.raises(UserError, match="has no train.jsonl"):
        load_problems(cfg(f"gsm8k:{tmp_path}"), "train")


def test_pointing_at_the_jsonl_file_suggests_its_folder_or_jsonl_scheme():
    with pytest.raises(UserError, match="point at its folder, or use jsonl:"):
        load_problems(cfg(f"gsm8k:{GSM8K / 'train.jsonl'}"), "train")


def _folder_with(tmp_path, *lines: str):
    (tmp_path / "train.jsonl").write_text("".join(line + "\n" for line in lines))
    return tmp_path


GOOD = json.dumps({"question": "q?", "answer": "a\n#### 1"})


def test_malformed_line_names_file_and_line(tmp_path):
    folder = _folder_with(tmp_path, GOOD, '{"question": "q", "answer": ')
    with pytest.raises(UserError, match=r"train\.jsonl:2: malformed JSON"):
        load_problems(cfg(f"gsm8k:{folder}", test_size=0), "train")


@pytest.mark.parametrize("record, key", [({"answer": "#### 1"}, "question"), ({"question": "q"}, "answer"), ({"question": "", "answer": "#### 1"}, "question")])
def test_missing_key_names_file_line_and_key(tmp_path, record, key):
    folder = _folder_with(tmp_path, GOOD, GOOD, json.dumps(record))
    with pytest.raises(UserError, match=rf"train\.jsonl:3: key '{key}' is"):
        load_problems(cfg(f"gsm8k:{folder}", test_size=0), "train")


def test_answer_without_marker_names_file_line_and_key(tmp_path):
    folder = _folder_with(tmp_path, json.dumps({"question": "q", "answer": "it is 5"}))
    with pytest.raises(UserError, match=r"train\.jsonl:1: key 'answer' has no final answer after '#### '"):
        load_problems(cfg(f"gsm8k:{folder}", test_size=0), "train")


def test_test_size_larger_than_the_data_is_refused(gsm8k_train_only):
    with pytest.raises(UserError, match=r"data\.test_size=12 but .* has only 12 problems"):
        load_problems(cfg(f"gsm8k:{gsm8k_train_only}", test_size=12), "train")
