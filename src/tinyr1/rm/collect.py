"""`tinyr1 rm collect`: graded samples from a policy, the outcome reward model's training (or held-out) data.

    tinyr1 rm collect --model runs/grpo --collect.samples=4 --out runs/rm_data/responses.jsonl

K responses per problem from any model (`model.name`: alias, folder, run folder), at
`sampling.temperature`, each graded against the reference; one JSON line per response:
`{id, problem_id, prompt, completion, answer, extracted, label, finished, tokens}` where `prompt`
is the question as plain text and `label` the grader's verdict (TRL's unpaired
`prompt/completion/label` layout, plus what best-of-n and majority vote need).

Resumable: problems go through the sampler in chunks of `sampling.batch_size // K` (the sampler's
own batches), and after each chunk its lines are appended to `collect.out` and the random
generator's state is saved beside it (`<out>.resume.json`, with the settings). A rerun of the same
command after an interruption continues after the last whole chunk, with the random numbers the
uninterrupted run would have drawn, so the file comes out the same; the state file is removed when
the collection completes. A rerun over a finished file with the same problems reports it and
samples nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinyr1.config import RMCollectJob
from tinyr1.data import load_problems
from tinyr1.data.prompts import render_prompt
from tinyr1.errors import UserError
from tinyr1.evaluation import pass_at_k
from tinyr1.io import append_jsonl_synced, cut_partial_last_line, read_jsonl, write_json_atomic
from tinyr1.rewards.answers import grade_many
from tinyr1.rollout.collect import generate, sampling_params
from tinyr1.rollout.policy_copy import load_sampler


def resume_path(out: str | os.PathLike) -> Path:
    """Where a collection into `out` keeps its resume state."""
    out = Path(out)
    return out.with_name(out.name + ".resume.json")


def _settings(job: RMCollectJob) -> dict:
    """What must not change between a run and its resumption (everything but where and how it reports)."""
    settings = dataclasses.asdict(job)
    settings["collect"] = {k: v for k, v in settings["collect"].items() if k not in ("out", "progress")}
    return settings


def _start(job: RMCollectJob, problems: list, k: int, per_chunk: int) -> int:
    """Chunks already in `collect.out` (0 for a fresh start); restores the random generator to
    where the last of them left it. `UserError` when the file holds another collection."""
    out, state_file = Path(job.collect.out), resume_path(job.collect.out)
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{state_file}: not the JSON resume state of a collection; delete it (and {out}) to start again") from None
        if state.get("settings") != _settings(job):
            raise UserError(f"{state_file}: an unfinished collection into {out} with other settings; rerun it with the "
                            "settings it started with, or delete both files to start again")
        rows = [row for _, row in read_jsonl(out)] if out.is_file() else []
        done = state["chunks"]
        if len(rows) < state["rows"]:
            raise UserError(f"{out}: holds {len(rows)} responses, but {state_file} says {state['rows']} were written; "
                            "delete both files to start again")
        if len(rows) > state["rows"]:  # a chunk written but its state not saved: it is drawn again
            lines = out.read_bytes().splitlines(keepends=True)
            out.write_bytes(b"".join(lines[: state["rows"]]))
        torch.set_rng_state(torch.tensor(list(base64.b64decode(state["rng"])), dtype=torch.uint8))
        return done
    if out.is_file():
        rows = [row for _, row in read_jsonl(out)]
        if [r.get("problem_id") for r in rows] != [p.id for p in problems for _ in range(k)]:
            raise UserError(f"{out}: already holds {len(rows)} responses that are not {k} to each of these {len(problems)} "
                            "problems (another collection); pick another --out or delete it")
        return -(-len(problems) // per_chunk)  # finished: every chunk is there
    torch.manual_seed(job.collect.seed)
    return 0


def _save_state(job: RMCollectJob, chunks: int, rows: int) -> None:
    rng = base64.b64encode(bytes(torch.get_rng_state().tolist())).decode("ascii")
    write_json_atomic(resume_path(job.collect.out), {"settings": _settings(job), "chunks": chunks, "rows": rows, "rng": rng})


def collect(job: RMCollectJob) -> dict:
    """Sample `collect.samples` responses per problem, grade them, append them to `collect.out`
    chunk by chunk (resuming an interrupted run); returns a summary of the whole file."""
    c, k = job.collect, job.collect.samples
    problems = load_problems(job.data, c.split)[: c.limit]
    if not problems:
        raise UserError(f"data {job.data.source!r}: no problems in the {c.split} split to sample")
    out = Path(c.out)
    cut_partial_last_line(out)  # a crash mid-write leaves half a line
    per_chunk = max(1, job.sampling.batch_size // k)
    chunks = [problems[i : i + per_chunk] for i in range(0, len(problems), per_chunk)]
    done = _start(job, problems, k, per_chunk)
    if done < len(chunks):
        shots = load_problems(job.data, "train")[: job.prompt.few_shot] if job.prompt.few_shot else []
        model, tokenizer = load_sampler(job.model, job.sampling)
        out.parent.mkdir(parents=True, exist_ok=True)
        written = done * per_chunk * k
        bar = tqdm(total=len(problems), initial=done * per_chunk, desc="rm collect", unit="problem",
                   disable=not c.progress)
        for chunk in chunks[done:]:
            prompts = [render_prompt(p, job.prompt, tokenizer, shots) for p in chunk]
            rollout = generate(model, tokenizer, chunk, prompts, sampling_params(job.sampling, k))
            grades = grade_many(rollout.texts, [p.answer for p in rollout.problems], style=job.prompt.style,
                                fallback=job.grading.fallback, timeout=job.grading.timeout)
            lengths = rollout.response_mask.sum(-1).long().tolist()
            rows = [{"id": f"{p.id}#{i % k}", "problem_id": p.id, "prompt": p.question, "completion": text, "answer": p.answer,
                     "extracted": g.extracted, "label": g.correct, "finished": not bool(rollout.truncated[i]), "tokens": lengths[i]}
                    for i, (p, text, g) in enumerate(zip(rollout.problems, rollout.texts, grades))]
            append_jsonl_synced(out, rows)  # on disk before the state says so
            written += len(rows)
            done += 1
            _save_state(job, done, written)
            bar.update(len(chunk))
        bar.close()
    resume_path(out).unlink(missing_ok=True)
    rows = [row for _, row in read_jsonl(out)]
    groups = [rows[i : i + k] for i in range(0, len(rows), k)]
    return {"problems": len(problems), "responses": len(rows), "correct": sum(r["label"] for r in rows),
            "pass@1": sum(r["label"] for r in rows) / len(rows),
            f"pass@{k}": sum(pass_at_k(k, sum(r["label"] for r in g), k) for g in groups) / len(groups),
            "out": str(out)}
