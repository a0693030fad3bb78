"""`tinyr1 train`: fine-tune a model with SFT, GRPO or PPO, or continue a run.

    tinyr1 train [CONFIG.yaml] [--section.key=value ...]      (no config: configs/quickstart.yaml)
    tinyr1 train --resume runs/<name> [--run.steps=N]
    tinyr1 train CONFIG.yaml --dry-run     (validate it and run one tiny step on CPU, offline)

The recipe of `algorithm` runs in the run folder (`training.checkpoint`); the job is validated
first (`config.validate`), with every batch checked to split over the launcher's processes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from tinyr1 import distributed as D
from tinyr1.cli.args import load_job, split_resume, wants_help
from tinyr1.config import ModelConfig, TrainJob, help_text, parse_overrides, validate
from tinyr1.config.load import CONFIGS_DIR
from tinyr1.errors import UserError
from tinyr1.models.load import load_tokenizer
from tinyr1.models.tiny import build_tiny_llama
from tinyr1.recipes import get_recipe
from tinyr1.training.checkpoint import load_run_config, new_run_dir

USAGE = __doc__.split("\n\n")[1]
QUICKSTART = CONFIGS_DIR / "quickstart.yaml"


def dry_run_job(job: TrainJob, tmp: Path) -> TrainJob:
    """The same job shrunk to one step on CPU with a tiny random model standing in for the real one.

    The tokenizer is the embedded SmolLM2's (the family of the SmolLM2 configs), so prompts,
    chat template and stopping run as configured; data, rewards and every option are the job's.
    """
    tokenizer = load_tokenizer(ModelConfig(name="smollm2-135m-instruct"))
    model_dir = build_tiny_llama(tokenizer, tmp / "tiny-model")
    g, w = job.grpo.group_size, D.world_size()  # w: the shrunk batches still split over the processes
    return dataclasses.replace(
        job,
        model=dataclasses.replace(job.model, name=str(model_dir), device="cpu"),
        sampling=dataclasses.replace(job.sampling, max_new_tokens=min(16, job.sampling.max_new_tokens)),
        run=dataclasses.replace(job.run, name="dry-run", output_dir=str(tmp), steps=1, eval_size=min(4, job.run.eval_size),
                                save_every=0, progress=False),
        grpo=dataclasses.replace(job.grpo, batch_size=2 * g * w),
        ppo=dataclasses.replace(job.ppo, batch_size=2 * w, mini_batch_size=2 * w),
        sft=dataclasses.replace(job.sft, batch_size=min(4, job.sft.batch_size) * w),
    )


def main(args: list[str]) -> int:
    if wants_help(args):
        print(USAGE + "\n\nAll keys:\n" + help_text(TrainJob))
        return 0
    dry_run = "--dry-run" in args
    resume, args = split_resume([a for a in args if a != "--dry-run"])
    if resume is not None:
        job, run_dir = load_run_config(resume, parse_overrides(args)), resume
    else:
        if not args or args[0].startswith("-"):
            if not QUICKSTART.is_file():
                raise UserError(f"no config given and {QUICKSTART} is missing; pass a config file")
            args = [str(QUICKSTART), *args]
        job, run_dir = load_job(TrainJob, args, {}), None
    D.init(cpu=job.model.device == "cpu")  # under accelerate launch / torchrun: join the process group
    validate(job, D.world_size())
    if dry_run:  # rank 0 builds the tiny stand-in model; every process gets its job
        job = D.broadcast_object(dry_run_job(job, Path(tempfile.mkdtemp(prefix="tinyr1-dry-run-"))) if D.is_main() else None)
        run_dir, resume = None, None
    recipe = get_recipe(job.algorithm)
    if run_dir is None:  # rank 0 picks the run folder (its default name holds the time) and tells the others
        run_dir = D.broadcast_object(new_run_dir(job) if D.is_main() else None)
    say = print if D.is_main() else (lambda *args, **kwargs: None)
    say(f"tinyr1: {job.algorithm} run in {run_dir}" + (f" on {D.world_size()} processes" if D.world_size() > 1 else ""), flush=True)
    summary = recipe(job, run_dir, resume=resume is not None)
    D.shutdown()
    if dry_run:
        say(f"dry run ok: config valid, data and rewards load, one {job.algorithm} step ran on a tiny stand-in model")
        return 0
    say(result_line(summary, run_dir))
    return 0


def result_line(summary: dict, run_dir) -> str:
    """The line a finished run ends with: held-out accuracy before -> after, wall time."""
    b, a = summary.get("eval_before"), summary["eval_after"]  # no eval_before: run.eval_before was false

    def accuracy(r: dict) -> str:
        return f"{r['accuracy']:.1%} [{r['accuracy_ci95'][0]:.1%}, {r['accuracy_ci95'][1]:.1%}]"

    before = f"{accuracy(b)} -> " if b else "(not evaluated before training: run.eval_before=false) "
    return (f"held-out accuracy {before}{accuracy(a)} (n={a['n']}), {summary['wall_time_s'] / 60:.1f} min; "
            f"wrote {run_dir}/summary.json")
