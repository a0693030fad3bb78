"""Tests for `grade_jsonl`: summary numbers, verdict lines, and bad input named by file:line and key.

Run: `.venv/bin/python -m pytest tests/rewards/test_grade_file.py -q`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyr1.errors import UserError
from tinyr1.rewards.grade_file import grade_jsonl

FIXTURE = Path(__file__).parents[1] / "fixtures" / "grading" / "small.jsonl"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_summary_on_the_fixture(tmp_path):
    summary = grade_jsonl(FIXTURE, tmp_path / "graded.jsonl")
    # 6 records: 4 correct (ids 1, 3, 5, 6), 5 with an answer (id 4 has none), 1 by fallback (id 5)
    assert summary == {
        "n": 6,
        "correct": 4,
        "accuracy": pytest.approx(4 / 6),
        "parsed": 5,
        "parsed_rate": pytest.approx(5 / 6),
        "fallback": 1,
        "out_path": str(tmp_path / "graded.jsonl"),
    }


def test_one_verdict_line_per_record_keeping_input_fields(tmp_path):
    out = tmp_path / "graded.jsonl"
    grade_jsonl(FIXTURE, out)
    rows = read_lines(out)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["extracted"], r["method"], r["correct"]) for r in rows] == [
        (r"\frac{1}{2}", "style", True),
        ("12", "style", False),
        ("1,024", "style", True),  # per-line "style": "gsm8k"
        (None, None, False),
        ("7", "fallback", True),
        (r"\{2, 1\}", "style", True),  # per-line "style": "r1"
    ]
    assert rows[2]["style"] == "gsm8k" and rows[2]["answer"] == "1024"
    assert rows[0]["response"] == "Half of it: $\\boxed{\\frac{1}{2}}$."


def test_default_style_and_fallback_switch(tmp_path):
    out = tmp_path / "graded.jsonl"
    summary = grade_jsonl(FIXTURE, out, style="gsm8k", fallback=False)
    # lines without their own style now look for "####": only ids 3 (own style) and 6 (r1) find one
    assert (summary["parsed"], summary["correct"], summary["fallback"]) == (2, 2, 0)
    assert [r["method"] for r in read_lines(out)] == [None, None, "style", None, None, "style"]


def test_output_goes_to_a_new_folder_without_temp_files(tmp_path):
    out = tmp_path / "new" / "dir" / "graded.jsonl"
    grade_jsonl(FIXTURE, out)
    assert [p.name for p in out.parent.iterdir()] == ["graded.jsonl"]


BAD_INPUTS = [
    pytest.param(['{"response": "a", "answer": "1"}', '{"answer": "1"}'], 2, 'missing key "response"', id="no-response"),
    pytest.param(['{"response": "a"}'], 1, 'missing key "answer"', id="no-answer"),
    pytest.param(['{"response": "a", "answer": true}'], 1, 'key "answer" must be a string or a number, got bool', id="bool-answer"),
    pytest.param(['', '{"response": null, "answer": "7"}'], 2, 'key "response" must be a string, got NoneType', id="null-response"),
    pytest.param(['{"response": "a", "answer": "1", "style": "latex"}'], 1, "key \"style\" is 'latex'; allowed: boxed, gsm8k, r1", id="unknown-style"),
    pytest.param(['{"response": "a", "answer": "1", "style": 3}'], 1, 'key "style" is 3', id="non-string-style"),
    pytest.param(['{"response": "a", "answer": "1"}', '{"response": "a",'], 2, "malformed JSON", id="malformed-json"),
    pytest.param(['["response", "answer"]'], 1, "expected a JSON object", id="not-an-object"),
]


@pytest.mark.parametrize("lines, lineno, message", BAD_INPUTS)
def test_bad_lines_name_file_line_and_key(tmp_path, lines, lineno, message):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError) as err:
        grade_jsonl(path, out)
    assert str(err.value).startswith(f"{path}:{lineno}: ")
    assert message in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_file_without_records(tmp_path, text):
    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=r"in\.jsonl: no records"):
        grade_jsonl(path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        grade_jsonl(tmp_path / "nope.jsonl", tmp_path / "out.jsonl")


def test_unknown_default_style(tmp_path):
    with pytest.raises(UserError, match="unknown answer style 'latex'; allowed: boxed, gsm8k, r1"):
        grade_jsonl(FIXTURE, tmp_path / "out.jsonl", style="latex")
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_line_after_good_ones_leaves_existing_output_untouched(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"response": "#### 1", "answer": "1"}\n{"response": "x"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    with pytest.raises(UserError, match=r":2: missing key \"answer\""):
        grade_jsonl(path, out)
    assert out.read_text(encoding="utf-8") == "previous\n"


def test_numeric_answers_are_graded_as_text(tmp_path):
    src = tmp_path / "n.jsonl"
    src.write_text('{"response": "#### 72", "answer": 72, "style": "gsm8k"}\n{"response": "#### 0.5", "answer": 0.25, "style": "gsm8k"}\n')
    summary = grade_jsonl(src, tmp_path / "out.jsonl")
    assert (summary["n"], summary["correct"]) == (2, 1)
