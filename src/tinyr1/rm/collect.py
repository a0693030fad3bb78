"""`tinyr1 rm collect`: graded samples from a policy, the outcome reward model's training (or held-out) data.

    tinyr1 rm collect --model runs/grpo --collect.samples=4 --out runs/rm_data/responses.jsonl

K responses per problem from any model (`model.name`: alias, folder, run folder), at
`sampling.temperature`, each graded against the reference; one JSON line per response:
`{id, problem_id, prompt, completion, answer, extracted, label, finished, tokens}` where `prompt`
is the question as plain text and `label` the grader's verdict (TRL's unpaired
`prompt/completion/label` layout, plus what best-of-n and majority vote need).
"""

from __future__ import annotations

import torch

from tinyr1.config import RMCollectJob
from tinyr1.data import load_problems
from tinyr1.data.prompts import render_prompt
from tinyr1.evaluation import pass_at_k
from tinyr1.io import write_jsonl
from tinyr1.rewards.answers import grade_many
from tinyr1.rollout.collect import generate, sampling_params
from tinyr1.rollout.policy_copy import load_sampler


def collect(job: RMCollectJob) -> dict:
    """Sample `collect.samples` responses per problem, grade them, write `collect.out`; returns a summary."""
    c, k = job.collect, job.collect.samples
    problems = load_problems(job.data, c.split)[: c.limit]
    shots = load_problems(job.data, "train")[: job.prompt.few_shot] if job.prompt.few_shot else []
    model, tokenizer = load_sampler(job.model, job.sampling)
    torch.manual_seed(c.seed)
    prompts = [render_prompt(p, job.prompt, tokenizer, shots) for p in problems]
    rollout = generate(model, tokenizer, problems, prompts, sampling_params(job.sampling, k), progress=True)
    grades = grade_many(rollout.texts, [p.answer for p in rollout.problems], style=job.prompt.style,
                        fallback=job.grading.fallback, timeout=job.grading.timeout)
    lengths = rollout.response_mask.sum(-1).long().tolist()
    rows = []
    for i, (p, text, g) in enumerate(zip(rollout.problems, rollout.texts, grades)):
        rows.append({"id": f"{p.id}#{i % k}", "problem_id": p.id, "prompt": p.question, "completion": text, "answer": p.answer,
                     "extracted": g.extracted, "label": g.correct, "finished": not bool(rollout.truncated[i]), "tokens": lengths[i]})
    write_jsonl(c.out, rows)
    groups = [rows[i : i + k] for i in range(0, len(rows), k)]
    return {"problems": len(problems), "responses": len(rows), "correct": sum(r["label"] for r in rows),
            "pass@1": sum(r["label"] for r in rows) / len(rows),
            f"pass@{k}": sum(pass_at_k(k, sum(r["label"] for r in g), k) for g in groups) / len(groups),
            "out": str(c.out)}
