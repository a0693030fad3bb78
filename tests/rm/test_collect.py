"""`rm collect`: chunk by chunk the same samples as one pass, an interrupted run resumes to the same file, bad resumes refused."""

import json

import pytest
import torch

from tinyr1.config import RMCollectJob, load_config
from tinyr1.data import load_problems
from tinyr1.data.prompts import render_prompt
from tinyr1.errors import UserError
from tinyr1.rm import collect as rm_collect
from tinyr1.rollout.collect import generate, sampling_params
from tinyr1.rollout.policy_copy import load_sampler


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"question": f"Calculate {a} + 2.", "answer": a + 2}) + "\n" for a in range(9)))
    return path


def _job(tiny_model_dir, problems_file, out, **collect):
    # 2 samples a problem in sampler batches of 4 responses: chunks of 2 problems, 7 problems -> 4 chunks
    return load_config(RMCollectJob, None, {
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "data": {"source": f"jsonl:{problems_file}", "test_size": 2},
        "sampling": {"max_new_tokens": 5, "batch_size": 4, "temperature": 1.0},
        "collect": {"limit": None, "samples": 2, "out": str(out), "progress": False, **collect}})


def test_chunked_collection_draws_what_one_pass_of_the_sampler_draws(tiny_model_dir, problems_file, tmp_path):
    job = _job(tiny_model_dir, problems_file, tmp_path / "c.jsonl")
    summary = rm_collect.collect(job)
    rows = [json.loads(l) for l in (tmp_path / "c.jsonl").read_text().splitlines()]
    problems = load_problems(job.data, "train")
    model, tokenizer = load_sampler(job.model, job.sampling)
    torch.manual_seed(0)
    whole = generate(model, tokenizer, problems, [render_prompt(p, job.prompt, tokenizer, []) for p in problems],
                     sampling_params(job.sampling, 2))
    assert [r["completion"] for r in rows] == whole.texts  # the collection before it was resumable: one seeded pass
    assert len(set(whole.texts)) > 2  # (sampled, not all alike, so the comparison means something)
    assert [r["id"] for r in rows[:4]] == [f"{problems[0].id}#0", f"{problems[0].id}#1", f"{problems[1].id}#0", f"{problems[1].id}#1"]
    assert summary["problems"] == 7 and summary["responses"] == 14
    assert not rm_collect.resume_path(tmp_path / "c.jsonl").exists()


def test_an_interrupted_collection_resumes_to_the_same_file(tiny_model_dir, problems_file, tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    rm_collect.collect(_job(tiny_model_dir, problems_file, whole))

    real, calls = rm_collect.generate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third chunk samples
        return real(*args, **kwargs)

    monkeypatch.setattr(rm_collect, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rm_collect.collect(_job(tiny_model_dir, problems_file, cut))
    assert cut.read_text() == "".join(whole.read_text().splitlines(keepends=True)[:8])  # two chunks kept
    state = json.loads(rm_collect.resume_path(cut).read_text())
    assert state["chunks"] == 2 and state["rows"] == 8
    with cut.open("a") as f:  # a crash after the third chunk's lines were written but before its state was,
        f.write(whole.read_text().splitlines(keepends=True)[8] + '{"id": "half a li')  # mid-way through a line
    monkeypatch.setattr(rm_collect, "generate", real)
    summary = rm_collect.collect(_job(tiny_model_dir, problems_file, cut))
    assert cut.read_text() == whole.read_text()  # the same random numbers as the uninterrupted run, no duplicates
    assert summary["responses"] == 14 and not rm_collect.resume_path(cut).exists()

    monkeypatch.setattr(rm_collect, "generate", lambda *a, **k: pytest.fail("a finished collection sampled again"))
    assert rm_collect.collect(_job(tiny_model_dir, problems_file, cut)) == summary


def test_a_resume_with_other_settings_or_over_another_file_is_refused(tiny_model_dir, problems_file, tmp_path, monkeypatch):
    out = tmp_path / "c.jsonl"
    real, calls = rm_collect.generate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rm_collect, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rm_collect.collect(_job(tiny_model_dir, problems_file, out))
    before = out.read_bytes()
    with pytest.raises(UserError, match=r"c\.jsonl\.resume\.json: an unfinished collection .* other settings"):
        rm_collect.collect(_job(tiny_model_dir, problems_file, out, samples=3))
    assert out.read_bytes() == before  # nothing written lost

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "x#0", "problem_id": "x", "prompt": "q", "completion": "a", "label": True}) + "\n")
    with pytest.raises(UserError, match=r"other\.jsonl: already holds 1 responses that are not 2 to each of these 7 problems"):
        rm_collect.collect(_job(tiny_model_dir, problems_file, other))
    assert json.loads(other.read_text())["id"] == "x#0"


def test_no_problems_to_sample_is_one_clear_error(tiny_model_dir, problems_file, tmp_path):
    with pytest.raises(UserError, match=r"no problems in the test split to sample"):
        rm_collect.collect(_job(tiny_model_dir, problems_file, tmp_path / "c.jsonl", split="test", limit=0))
    assert not (tmp_path / "c.jsonl").exists()
