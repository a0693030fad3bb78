"""Evaluation: greedy accuracy with a 95% interval, pass@k and maj@k, every sample saved.

    tinyr1 eval --model smollm2-135m-instruct --data gsm8k:../shared/data/GSM8K --split train --limit 100

Accuracy is always greedy (temperature 0, one response per problem). With `--samples K` the
model also draws K responses per problem at `--temperature`, giving pass@k by the unbiased
estimator of Chen et al. 2021 (for k = 1, 2, 4, ... up to K) and maj@K (majority vote over the
extracted answers; ties go to the answer seen first). Intervals are Wilson score intervals.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from tinyr1 import distributed as D
from tinyr1.behaviour import has_self_check
from tinyr1.config import GradingConfig, PromptConfig, SamplingConfig
from tinyr1.data.prompts import render_prompt
from tinyr1.rewards.answers import grade_many
from tinyr1.rollout.collect import generate
from tinyr1.rollout.sampler import SamplingParams
from tinyr1.types import Problem


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 0) when n == 0."""
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(extracted: list[str | None], correct: list[bool]) -> bool:
    """Is the most common extracted answer a correct one? Unanswered samples do not vote.

    Answers are compared as stripped strings; samples with equal strings were graded alike.
    """
    votes = Counter(a.strip() for a in extracted if a is not None)
    if not votes:
        return False
    winner = max(votes, key=lambda a: (votes[a], -next(i for i, x in enumerate(extracted) if x is not None and x.strip() == a)))
    return any(ok for a, ok in zip(extracted, correct) if a is not None and a.strip() == winner)


@dataclass
class EvalResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]  # one per response: greedy rows first, then sampled ones


def _run(model, tokenizer, problems, prompts, params, grading: GradingConfig, style: str, mode: str, progress: bool):
    """Sample `params.n` responses per prompt and grade each: one row per response, and the tokens generated."""
    rollout = generate(model, tokenizer, problems, prompts, params, progress=progress)
    grades = grade_many(rollout.texts, [p.answer for p in rollout.problems], style=style, fallback=grading.fallback,
                        timeout=grading.timeout)
    lengths = rollout.response_mask.sum(-1).long().tolist()
    rows = []
    for i, (p, text, g) in enumerate(zip(rollout.problems, rollout.texts, grades)):
        rows.append(
            dict(
                id=p.id, mode=mode, sample=i % params.n, prompt=prompts[i // params.n], response=text,
                extracted=g.extracted, method=g.method, reference=p.answer, correct=g.correct,
                tokens=lengths[i], finished=not bool(rollout.truncated[i]), self_check=has_self_check(text),
            )
        )
    return rows, sum(lengths)


def greedy_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (Wilson 95% interval), answer-found rate, mean length, truncation and self-check
    rate (`tinyr1.behaviour`) of greedy rows.

    Also how a sharded evaluation (one slice per process) is summarised from the gathered rows.
    """
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    return dict(
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        accuracy_ci95=list(wilson_interval(correct, n)),
        parsed_rate=sum(r["extracted"] is not None for r in rows) / n if n else 0.0,
        mean_response_tokens=sum(r["tokens"] for r in rows) / n if n else 0.0,
        truncated_rate=sum(not r["finished"] for r in rows) / n if n else 0.0,
        self_check_rate=sum(bool(r.get("self_check")) for r in rows) / n if n else 0.0,
    )


def sampled_summary(sampled: list[dict[str, Any]], samples: int) -> dict[str, float]:
    """pass@k (k = 1, 2, 4, ... up to K) and maj@K of sampled rows, K = `samples` consecutive rows per problem.

    Also how a sharded evaluation summarises the gathered sampled rows (each problem's K stay together).
    """
    groups = [sampled[i : i + samples] for i in range(0, len(sampled), samples)]
    if not groups:
        return {}
    summary = {}
    for k in sorted({2**j for j in range(int(math.log2(samples)) + 1)} | {samples}):
        summary[f"pass@{k}"] = sum(pass_at_k(samples, sum(r["correct"] for r in g), k) for g in groups) / len(groups)
    summary[f"maj@{samples}"] = sum(
        majority_correct([r["extracted"] for r in g], [r["correct"] for r in g]) for g in groups
    ) / len(groups)
    return summary


def evaluate(
    model, tokenizer, problems: list[Problem], prompt_cfg: PromptConfig, sampling: SamplingConfig,
    grading: GradingConfig, samples: int = 1, temperature: float = 1.0, shots: list[Problem] = (), progress: bool = True,
    seed: int | None = None,
) -> EvalResult:
    """Greedy accuracy (and pass@k / maj@k when `samples` > 1) of `model` on `problems`; `seed`
    seeds the samples (None: torch's generator as it stands)."""
    prompts = [render_prompt(p, prompt_cfg, tokenizer, shots) for p in problems]
    t0 = time.perf_counter()
    greedy = SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=0.0, n=1, batch_size=sampling.batch_size,
                            engine=sampling.engine)
    rows, tokens = _run(model, tokenizer, problems, prompts, greedy, grading, prompt_cfg.style, "greedy", progress)
    summary = greedy_summary(rows)
    if samples > 1:
        params = SamplingParams(sampling.max_new_tokens, temperature, sampling.top_p, samples, sampling.batch_size, sampling.engine)
        if seed is not None:
            torch.manual_seed(seed)
        sampled, more = _run(model, tokenizer, problems, prompts, params, grading, prompt_cfg.style, "sample", progress)
        rows += sampled
        tokens += more
        summary |= sampled_summary(sampled, samples)
    seconds = time.perf_counter() - t0
    summary.update(seconds=round(seconds, 2), generated_tokens=tokens, tokens_per_second=tokens / seconds if seconds else 0.0)
    return EvalResult(summary=summary, rows=rows)


def evaluate_sharded(
    model, tokenizer, problems: list[Problem], prompt_cfg: PromptConfig, sampling: SamplingConfig,
    grading: GradingConfig, samples: int = 1, temperature: float = 1.0, shots: list[Problem] = (), progress: bool = True,
    seed: int | None = None,
) -> EvalResult:
    """`evaluate` spread over a launcher's processes (`tinyr1.distributed`); `evaluate` itself in one process.

    Each process evaluates its contiguous slice of `problems` (`distributed.shard`); the rows are
    gathered (greedy rows of every problem in order, then the sampled ones) and every process
    returns the summary of all the problems: the greedy metrics are those of one process (up to
    batching noise), pass@k and maj@k come from each process's own samples of its problems.
    `seconds` is the slowest process's time, `generated_tokens` the sum.
    """
    if D.world_size() == 1:
        return evaluate(model, tokenizer, problems, prompt_cfg, sampling, grading, samples, temperature, shots, progress, seed)
    share = list(D.shard(problems))
    part: tuple[list, float, int] = ([], 0.0, 0)  # a process with no problem (fewer problems than processes)
    if share:
        r = evaluate(model, tokenizer, share, prompt_cfg, sampling, grading, samples, temperature, shots, progress and D.is_main(),
                     None if seed is None else seed + D.rank())  # each process its own draws
        part = (r.rows, float(r.summary["seconds"]), int(r.summary["generated_tokens"]))
    parts = D.gather_objects(part)
    rows = [row for mode in ("greedy", "sample") for p in parts for row in p[0] if row["mode"] == mode]
    summary = greedy_summary([row for row in rows if row["mode"] == "greedy"])
    if samples > 1:
        summary |= sampled_summary([row for row in rows if row["mode"] == "sample"], samples)
    seconds, tokens = max(p[1] for p in parts), sum(p[2] for p in parts)
    summary.update(seconds=round(seconds, 2), generated_tokens=tokens, tokens_per_second=tokens / seconds if seconds else 0.0)
    return EvalResult(summary=summary, rows=rows)


def format_table(summary: dict[str, Any]) -> str:
    """A short human-readable table of the summary."""
    lo, hi = summary["accuracy_ci95"]
    lines = [
        f"{'problems':<22}{summary['n']}",
        f"{'accuracy (greedy)':<22}{summary['accuracy']:.1%}  (95% CI {lo:.1%} - {hi:.1%})",
        f"{'answer found':<22}{summary['parsed_rate']:.1%}",
        f"{'mean response tokens':<22}{summary['mean_response_tokens']:.1f}  (truncated {summary['truncated_rate']:.1%})",
        f"{'self-check phrases':<22}{summary.get('self_check_rate', 0.0):.1%} of responses",
    ]
    lines += [f"{k:<22}{v:.1%}" for k, v in summary.items() if k.startswith(("pass@", "maj@"))]
    lines.append(f"{'time':<22}{summary['seconds']:.1f} s, {summary['tokens_per_second']:.1f} generated tokens/s")
    return "\n".join(lines)
