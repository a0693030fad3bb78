"""Math-Shepherd step labels: by hand from canned continuations, across an interrupted run, bad input."""

import json

import pytest

from tinyr1.config import PRMLabelJob, load_config
from tinyr1.errors import UserError
from tinyr1.rm import label as rm_label


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path



def _label_job(tiny_model_dir, solutions, out, **label):
    return load_config(PRMLabelJob, None, {
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "sampling": {"max_new_tokens": 6, "batch_size": 64},
        "label": {"input": str(solutions), "out": str(out), "completions": 2, "chunk": 2, "progress": False, **label}})


def test_math_shepherd_labels_from_canned_continuations(tiny_model_dir, tmp_path, monkeypatch):
    from tinyr1.types import Samples

    solution = {"id": "s1", "prompt": "Calculate 3 + 4.", "answer": "7",
                "completion": "3 + 4 = 8\nCheck: 3 + 4 = 7\nThe answer is \\boxed{8}."}
    seen = {}

    def canned(model, tokenizer, prompts, params, **_):
        seen["prompts"] = prompts
        # prefix 1 ("3 + 4 = 8"): one of two continuations reaches 7; prefix 2 (".. = 7"): both do
        texts = [" so \\boxed{7}", " so \\boxed{8}", " so \\boxed{7}", " \\boxed{7}"]
        return Samples([[1]] * len(prompts), [[1]] * len(texts), texts, [True] * len(texts), params.n)

    monkeypatch.setattr(rm_label, "sample", canned)
    out = tmp_path / "steps.jsonl"
    summary = rm_label.label(_label_job(tiny_model_dir, _write(tmp_path / "s.jsonl", [solution]), out))
    (line,) = [json.loads(l) for l in out.read_text().splitlines()]
    assert line["completions"] == ["3 + 4 = 8", "Check: 3 + 4 = 7", "The answer is \\boxed{8}."]
    assert line["soft_labels"] == [0.5, 1.0, 0.0]  # the last step is the response's own grade (8: wrong)
    assert line["labels"] == [True, True, False]
    assert len(seen["prompts"]) == 2 and seen["prompts"][0].endswith("assistant\n3 + 4 = 8")
    assert seen["prompts"][1].endswith("assistant\n3 + 4 = 8\nCheck: 3 + 4 = 7")
    assert summary["steps"] == 3 and summary["new"] == 1


def test_an_interrupted_labeller_resumes_without_duplicates_and_gives_the_same_labels(tiny_model_dir, tmp_path, monkeypatch):
    solutions = [{"id": f"s{i}", "prompt": f"Calculate {i} + 1.", "answer": str(i + 1),
                  "completion": f"{i} + 1 = {i + 1}\nSo the answer is {i + 1}."} for i in range(5)]
    src = _write(tmp_path / "s.jsonl", solutions)
    whole = tmp_path / "whole.jsonl"
    rm_label.label(_label_job(tiny_model_dir, src, whole))

    cut = tmp_path / "cut.jsonl"
    real, calls = rm_label.label_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the second chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(rm_label, "label_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rm_label.label(_label_job(tiny_model_dir, src, cut))
    monkeypatch.setattr(rm_label, "label_chunk", real)
    assert [json.loads(l)["id"] for l in cut.read_text().splitlines()] == ["s0", "s1"]  # the first chunk survived
    with cut.open("a") as f:
        f.write('{"id": "s2", "prompt": "Calc')  # and a crash mid-line left half a line
    summary = rm_label.label(_label_job(tiny_model_dir, src, cut))
    assert summary["skipped_done"] == 2 and summary["new"] == 3
    ids = [json.loads(l)["id"] for l in cut.read_text().splitlines()]
    assert ids == ["s0", "s1", "s2", "s3", "s4"]  # no duplicates, the partial line gone
    assert cut.read_text() == whole.read_text()  # chunk i samples with seed + i: the same labels
    assert rm_label.label(_label_job(tiny_model_dir, src, cut))["new"] == 0  # a third run has nothing to do


def test_labeller_input_errors_name_the_line(tiny_model_dir, tmp_path):
    bad = _write(tmp_path / "s.jsonl", [{"id": "a", "prompt": "p", "completion": "c", "answer": "1"},
                                        {"id": "a", "prompt": "p", "completion": "c", "answer": "1"}])
    with pytest.raises(UserError, match=r"s\.jsonl:2: id 'a' already used on line 1"):
        rm_label.label(_label_job(tiny_model_dir, bad, tmp_path / "o.jsonl"))
