"""`tinyr1 prm label`: Math-Shepherd step labels for sampled solutions, a process reward model's data.

    tinyr1 prm label --input runs/rm_data/responses.jsonl --label.completions=4 --out runs/rm_data/steps.jsonl

Math-Shepherd (Wang et al. 2024, "completion" estimation): each response is split into steps
(`reward.step_mode`); from the prefix ending at each step the completer (`model.name`) samples K
continuations at `sampling.temperature`, each graded as prefix + continuation. A step's soft label
is the fraction that reached the right answer, its hard label whether any did. The last step's
prefix is the whole response, so its label is the response's own grade (no sampling). One line
per response in TRL's stepwise format, `{id, problem_id, prompt, completions, labels,
soft_labels, answer}`. Resumable: lines are appended chunk by chunk; a rerun keeps them and labels
only the ids not yet there, and since chunk i always samples with seed + i (the same solutions in
the same batch), the labels of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinyr1.config import PRMLabelJob
from tinyr1.data.prompts import render_prompt
from tinyr1.errors import UserError
from tinyr1.io import append_jsonl_synced, cut_partial_last_line, read_jsonl
from tinyr1.rewards.answers import grade_many
from tinyr1.rewards.steps import split_steps
from tinyr1.rollout.collect import sampling_params
from tinyr1.rollout.policy_copy import load_sampler
from tinyr1.rollout.sampler import sample
from tinyr1.types import Problem

# ----------------------------------------------------------------------------- prm label


def read_solutions(path) -> list[dict]:
    """Responses to label: lines with string `id` (unique), `prompt`, `completion`, `answer`."""
    rows, seen = [], {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        if isinstance(row.get("answer"), (int, float)) and not isinstance(row.get("answer"), bool):
            row["answer"] = str(row["answer"])
        for key in ("id", "prompt", "completion", "answer"):
            if not isinstance(row.get(key), str):
                raise UserError(f'{where}: key "{key}" must be a string; each line needs "id", "prompt", "completion", "answer" '
                                "(what `tinyr1 rm collect` writes)")
        if row["id"] in seen:
            raise UserError(f'{where}: id {row["id"]!r} already used on line {seen[row["id"]]}; ids must be unique')
        seen[row["id"]] = lineno
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no lines to label")
    return rows


def done_ids(path: Path) -> set[str]:
    """Ids already labelled in `path`; a partial last line (a crash mid-write) is cut off first."""
    if not path.is_file():
        return set()
    cut_partial_last_line(path)
    return {row["id"] for _, row in read_jsonl(path) if "id" in row}


def label_chunk(model, tokenizer, solutions: list[dict], job: PRMLabelJob) -> list[dict]:
    """Math-Shepherd labels for a few solutions: all their step prefixes sampled in one batch."""
    lb, style, g = job.label, job.prompt.style, job.grading
    steps = [split_steps(s["completion"], job.reward.step_mode) for s in solutions]
    # every step but the last: its prefix (the response up to the step's end) continued K times
    queries = [(i, j) for i, st in enumerate(steps) for j in range(len(st) - 1)]
    heads = [render_prompt(Problem(s["id"], s["prompt"], s["answer"]), job.prompt, tokenizer) for s in solutions]
    prefixes = [solutions[i]["completion"][: steps[i][j].end] for i, j in queries]
    k = lb.completions
    texts = []
    if queries:
        out = sample(model, tokenizer, [heads[i] + pre for (i, _), pre in zip(queries, prefixes)], sampling_params(job.sampling, k))
        texts = [prefixes[q // k] + out.texts[q] for q in range(len(out.texts))]
    refs = [solutions[queries[q // k][0]]["answer"] for q in range(len(texts))]
    own = [s["completion"] for s in solutions]  # the last step: the response's own grade
    grades = grade_many(texts + own, refs + [s["answer"] for s in solutions], style=style, fallback=g.fallback, timeout=g.timeout)
    soft = [[0.0] * len(st) for st in steps]
    for q, (i, j) in enumerate(queries):
        soft[i][j] = sum(gr.correct for gr in grades[q * k : (q + 1) * k]) / k
    lines = []
    for i, s in enumerate(solutions):
        if not steps[i]:
            continue  # an empty response has no step to label
        soft[i][-1] = float(grades[len(texts) + i].correct)
        lines.append({"id": s["id"], "problem_id": s.get("problem_id", s["id"]), "prompt": s["prompt"],
                      "completions": [st.text for st in steps[i]], "labels": [y > 0 for y in soft[i]], "soft_labels": soft[i],
                      "answer": s["answer"], "step_mode": job.reward.step_mode})
    return lines


def label(job: PRMLabelJob) -> dict:
    """Label `label.input` into `label.out`, resuming after the ids already there; returns a summary."""
    lb = job.label
    solutions = read_solutions(lb.input)[: lb.limit]
    empty = {s["id"] for s in solutions if not split_steps(s["completion"], job.reward.step_mode)}
    solutions = [s for s in solutions if s["id"] not in empty]  # an empty response has no step to label
    out = Path(lb.out)
    done = done_ids(out)
    chunks = [solutions[i : i + lb.chunk] for i in range(0, len(solutions), lb.chunk)]
    todo = [(c, chunk) for c, chunk in enumerate(chunks) if any(s["id"] not in done for s in chunk)]
    n_done = sum(s["id"] in done for s in solutions)
    written = 0
    if todo:
        model, tokenizer = load_sampler(job.model, job.sampling)
        out.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(solutions), initial=n_done, desc="prm label", unit="solution", disable=not lb.progress)
        for c, chunk in todo:
            torch.manual_seed(lb.seed + c)  # chunk c always samples alike: a resumed run gives the same labels
            lines = [line for line in label_chunk(model, tokenizer, chunk, job) if line["id"] not in done]
            append_jsonl_synced(out, lines)
            written += len(lines)
            bar.update(sum(s["id"] not in done for s in chunk))
        bar.close()
    rows = [row for _, row in read_jsonl(out)] if out.is_file() else []
    steps = [y for r in rows for y in r["labels"]]
    return {"solutions": len(rows), "new": written, "skipped_done": n_done, "skipped_empty": len(empty), "steps": len(steps),
            "steps_labelled_correct": sum(steps) / len(steps) if steps else 0.0, "out": str(out)}
