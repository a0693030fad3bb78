"""Any JSON Lines file: configurable keys, numeric answers as text, messages naming file:line:key.

Run: .venv/bin/python -m pytest tests/data/test_jsonl.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.data import load_problems, normalise_question, open_source
from tinyr1.errors import UserError

from .conftest import JSONL, cfg


def _all(path=JSONL, **kw):
    return open_source(cfg(f"jsonl:{path}", question_field="prompt", answer_field="target", **kw)).read("train")


def test_configured_fields_are_read_and_numbers_become_text():
    ps = _all()
    assert [(p.id, p.question, p.answer) for p in ps[:5]] == [
        ("problems/1", "What is 6 times 7?", "42"),
        ("problems/2", "What is half of 3?", "1.5"),
        ("problems/3", "Name the smallest prime.", "2"),
        ("problems/5", "What is 10 minus 12?", "-2"),  # line 4 is blank; ids keep line numbers
        ("problems/6", "Simplify 2/4.", r"\frac{1}{2}"),
    ]
    assert ps[0].solution is None and ps[0].meta == {"source": "jsonl"}


def test_a_held_out_split_never_overlaps_train_even_with_a_duplicate_question():
    for seed in range(20):
        c = cfg(f"jsonl:{JSONL}", question_field="prompt", answer_field="target", test_size=2, seed=seed)
        train, test = load_problems(c, "train"), load_problems(c, "test")
        assert len(test) == 2
        assert not {normalise_question(p.question) for p in train} & {normalise_question(p.question) for p in test}


def test_missing_question_field_names_file_line_and_key():
    with pytest.raises(UserError, match=r"problems\.jsonl:1: key 'question' is missing .*data\.question_field"):
        load_problems(cfg(f"jsonl:{JSONL}", answer_field="target"), "train")


def test_missing_or_non_scalar_answer_names_file_line_and_key(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": [1]}\n')
    with pytest.raises(UserError, match=r"p\.jsonl:2: key 'answer' is missing or not a string or number"):
        load_problems(cfg(f"jsonl:{path}", test_size=0), "train")


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\nnot json\n')
    with pytest.raises(UserError, match=r"p\.jsonl:2: malformed JSON"):
        load_problems(cfg(f"jsonl:{path}", test_size=0), "train")


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(UserError, match=r"nope\.jsonl does not exist; expected a JSON Lines file"):
        load_problems(cfg(f"jsonl:{tmp_path / 'nope.jsonl'}"), "train")
    with pytest.raises(UserError, match=r"is a folder; expected a JSON Lines file"):
        load_problems(cfg(f"jsonl:{tmp_path}"), "train")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match=r"empty\.jsonl: the file holds no problems"):
        load_problems(cfg(f"jsonl:{path}"), "train")
