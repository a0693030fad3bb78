"""`tinyr1 eval`: greedy accuracy (95% interval), pass@k and maj@k of a model on a problem set.

    tinyr1 eval [CONFIG.yaml] [--model M] [--data D] [--split S] [--limit N] [--samples K]
                [--temperature T] [--seed S] [--style S] [--out DIR] [--section.key=value ...]
    tinyr1 eval --bench gsm8k|math500|aime24|aime25 [--data FILE_OR_FOLDER] [--model M] ...

Writes `summary.json` and `samples.jsonl` (every response, graded) to `--out`. Under a launcher
every process evaluates its slice of the problems and rank 0 writes (`evaluation.evaluate_sharded`).
`--bench` takes a benchmark's problems and its published prompt, strict grading and sampling
(`data/benchmarks.py`); any key given explicitly (in a config file or on the command line) wins.
"""

from __future__ import annotations

import time

from tinyr1 import distributed as D
from tinyr1.cli.args import load_job, wants_help
from tinyr1.config import DataConfig, EvalJob, help_text, validate
from tinyr1.data import load_problems
from tinyr1.data.benchmarks import load_benchmark, preset
from tinyr1.evaluation import evaluate_sharded, format_table
from tinyr1.io import check_output_dir, write_json_atomic, write_jsonl
from tinyr1.rollout.policy_copy import load_sampler

USAGE = __doc__.split("\n\n")[1]
ALIASES = {
    "model": "model.name",
    "data": "data.source",
    "split": "eval.split",
    "limit": "eval.limit",
    "samples": "eval.samples",
    "seed": "eval.seed",
    "temperature": "sampling.temperature",
    "style": "prompt.style",
    "out": "eval.out",
    "bench": "eval.bench",
}


def bench_defaults(name: str) -> dict:
    """A benchmark preset as config values (`data/benchmarks.preset`)."""
    p = preset(name)
    return {"prompt": {"style": p["style"], "instruction": p["instruction"], "system_prompt": p["system_prompt"],
                       "few_shot": p["few_shot"]},
            "grading": {"fallback": p["fallback"]}, "eval": {"samples": p["samples"]},
            "sampling": {"temperature": p["temperature"], "top_p": p["top_p"], "max_new_tokens": p["max_new_tokens"]}}


def main(args: list[str]) -> int:
    if wants_help(args):
        print(USAGE + "\n\nAll keys:\n" + help_text(EvalJob))
        return 0
    job = load_job(EvalJob, args, ALIASES)
    if job.eval.bench:  # the preset's settings under everything the user wrote
        job = load_job(EvalJob, args, ALIASES, defaults=bench_defaults(job.eval.bench))
    validate(job)
    if job.eval.bench:
        location = None if job.data.source == DataConfig().source else job.data.source
        problems, shots = load_benchmark(job.eval.bench, location)[: job.eval.limit], []
    else:
        problems = load_problems(job.data, job.eval.split)[: job.eval.limit]
        shots = load_problems(job.data, "train")[: job.prompt.few_shot] if job.prompt.few_shot else []
    out = check_output_dir(job.eval.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    D.init(cpu=job.model.device == "cpu")
    with D.main_first():  # rank 0 first: a model converted or downloaded once is cached before the others look
        model, tokenizer = load_sampler(job.model, job.sampling)  # the model, or a vLLM engine holding it
    result = evaluate_sharded(model, tokenizer, problems, job.prompt, job.sampling, job.grading,
                              samples=job.eval.samples, temperature=job.sampling.temperature, shots=shots, progress=D.is_main(),
                              seed=job.eval.seed)
    main_rank = D.is_main()
    if main_rank:
        summary = dict(model=job.model.name, data=job.data.source, split=job.eval.split, style=job.prompt.style,
                       **({"bench": job.eval.bench, "metric": preset(job.eval.bench)["metric"]} if job.eval.bench else {}),
                       **result.summary)
        write_jsonl(out / "samples.jsonl", result.rows)
        write_json_atomic(out / "summary.json", summary)
    D.shutdown()
    if main_rank:
        print(format_table(summary))
        print(f"wrote {out}/summary.json and {out}/samples.jsonl")
    return 0
