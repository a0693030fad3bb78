"""Held-out evaluation files: written without prompts, read back (greedy rows), pruned on resume,
and re-graded strictly or with the last-number fallback without running a model.

Run: .venv/bin/python -m pytest tests/test_eval_files.py -q
"""

from __future__ import annotations

import json

import pytest

from tinyr1 import eval_files
from tinyr1.errors import UserError
from tinyr1.rewards.answers import grade


def _row(pid, response, reference, fallback):
    """A row as `tinyr1.evaluate` writes it, graded by the real grader."""
    g = grade(response, reference, style="gsm8k", fallback=fallback)
    return {"id": pid, "mode": "greedy", "prompt": "Q: ...", "response": response, "extracted": g.extracted,
            "method": g.method, "reference": reference, "correct": g.correct, "tokens": 9, "finished": True}


def test_rows_are_written_without_the_prompt_and_read_back(tmp_path):
    rows = [_row("p1", "2 + 2 = 4\n#### 4", "4", fallback=False), _row("p2", "so 5", "5", fallback=False)]
    assert eval_files.write_rows(tmp_path, 10, rows) == "eval/step-10.jsonl"
    saved = [json.loads(line) for line in (tmp_path / "eval" / "step-10.jsonl").read_text().splitlines()]
    assert [r["id"] for r in saved] == ["p1", "p2"] and "prompt" not in saved[0]
    sampled = saved + [{**saved[0], "mode": "sample"}]  # `tinyr1 eval --samples`: only greedy rows are read
    (tmp_path / "eval" / "step-11.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sampled))
    assert [r["id"] for r in eval_files.read_rows(tmp_path / "eval" / "step-11.jsonl")] == ["p1", "p2"]


def test_malformed_rows_and_repeated_ids_are_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "p1", "correct": "yes"}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl:1: expected an evaluation row"):
        eval_files.read_rows(path)
    with pytest.raises(UserError, match="'p1' appears twice"):
        eval_files.by_id([{"id": "p1", "correct": True}] * 2, lambda r: r["correct"])


def test_prune_deletes_only_evaluations_after_the_checkpoint(tmp_path):
    for step in (0, 5, 10, 15):
        eval_files.write_rows(tmp_path, step, [])
    eval_files.prune(tmp_path, 10)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["step-0.jsonl", "step-10.jsonl", "step-5.jsonl"]
    eval_files.prune(tmp_path / "no-such-run", 0)  # nothing to prune: no error


@pytest.mark.parametrize("graded_with_fallback", [False, True])
def test_strict_and_fallback_verdicts_whichever_grading_the_run_used(graded_with_fallback):
    rows = [
        _row("marker right", "48 / 2 = 24\n#### 24", "24", graded_with_fallback),
        _row("marker wrong", "48 / 2 = 25\n#### 25", "24", graded_with_fallback),
        _row("no marker, last number right", "48 / 2 = 24, so 24 clips.", "24", graded_with_fallback),
        _row("no marker, last number wrong", "So 24 clips, 3 days.", "24", graded_with_fallback),
    ]
    assert [eval_files.strict_correct(r) for r in rows] == [True, False, False, False]
    assert [eval_files.fallback_correct(r, "gsm8k") for r in rows] == [True, False, True, False]
