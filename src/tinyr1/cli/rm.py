"""The reward-model commands: `tinyr1 rm collect | train | eval` and `tinyr1 prm label | train | eval`.

    tinyr1 rm collect [CONFIG.yaml] [--model M] [--data D] [--split train|test] [--limit N] [--samples K] [--out FILE]
    tinyr1 rm train   [--data FILE] [--model BASE] [--objective bce|bradley_terry] [--out DIR] [--max-minutes X]
    tinyr1 rm train   --resume DIR      (continue a reward-model run from its last checkpoint)
    tinyr1 rm eval    [--model RM_DIR] [--data HELDOUT.jsonl] [--out DIR]
    tinyr1 prm label  [CONFIG.yaml] [--input FILE] [--model COMPLETER] [--completions K] [--limit N] [--out FILE]
    tinyr1 prm train  [--data STEPS.jsonl] [--model BASE] [--target hard|soft] [--out DIR] [--max-minutes X]
    tinyr1 prm eval   [--model PRM_DIR] [--data HELDOUT.jsonl] [--steps STEPS.jsonl] [--out DIR]

Every option is a dotted config key (`tinyr1 rm train --help` lists them with their docs); the
short flags are aliases. A training config file (e.g. configs/quickstart.yaml) may be passed
first: each command takes the sections it has (model, data, prompt, sampling, grading, ...) and
ignores the training-only ones. Bad input prints one line naming the file, line or key, exit 2.

Under a launcher (`accelerate launch`, `torchrun`): `rm train` and `prm train` train data-parallel
on every process (`recipes/reward_model.py`); the other commands (collect, label, eval) run on
rank 0 alone, as one plain process, while the other launched processes exit at once (they join
no process group, so a long collect or labelling run cannot time one out).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tinyr1 import distributed as D
from tinyr1.cli.args import expand_aliases, split_config_path, split_resume, wants_help
from tinyr1.config import (
    EvalJob,
    PRMLabelJob,
    RMCollectJob,
    RMEvalJob,
    RMTrainJob,
    TrainJob,
    help_text,
    load_config,
    parse_overrides,
    read_yaml,
    validate,
)
from tinyr1.errors import UserError
from tinyr1.io import check_output_dir, check_output_file
from tinyr1.recipes.reward_model import train_reward_model
from tinyr1.rm import evaluate as rm_evaluate
from tinyr1.rm.collect import collect
from tinyr1.rm.label import label
from tinyr1.training.checkpoint import load_run_config

COLLECT = {"model": "model.name", "data": "data.source", "split": "collect.split", "limit": "collect.limit",
           "samples": "collect.samples", "temperature": "sampling.temperature", "out": "collect.out"}
TRAIN = {"model": "model.name", "data": "train.data", "out": "train.out", "objective": "train.objective", "target": "train.target",
         "max-minutes": "train.max_minutes", "max-steps": "train.max_steps", "epochs": "train.epochs", "lr": "optim.lr"}
EVAL = {"model": "eval.reward_model", "data": "eval.data", "steps": "eval.steps", "out": "eval.out", "device": "eval.device"}
LABEL = {"model": "model.name", "input": "label.input", "out": "label.out", "completions": "label.completions",
         "limit": "label.limit", "temperature": "sampling.temperature"}


ALL_JOBS = [TrainJob, EvalJob, RMCollectJob, RMTrainJob, RMEvalJob, PRMLabelJob]


def _names(cls: type) -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _section(cls: type, name: str) -> type | None:
    f = _names(cls).get(name)
    if f is None or f.default_factory is dataclasses.MISSING:
        return None
    value = f.default_factory()
    return type(value) if dataclasses.is_dataclass(value) else None


def keep_own_keys(values: dict, cls: type, others: list[type], prefix: str = "") -> dict:
    """The part of a config file's `values` that `cls` has; keys of the other commands' configs
    (`others`) are dropped, any other key raises `UserError` as unknown."""
    kept = {}
    for key, value in values.items():
        if key in _names(cls):
            section = _section(cls, key)
            if section is not None and isinstance(value, dict):
                value = keep_own_keys(value, section, [s for o in others if (s := _section(o, key))], f"{prefix}{key}.")
            kept[key] = value
        elif not any(key in _names(o) for o in others):
            raise UserError(f"unknown config key '{prefix}{key}'; known keys here: {', '.join(sorted(_names(cls)))}")
    return kept


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def _dashes(aliases: dict[str, str]) -> dict[str, str]:
    """The aliases, each also spelled with underscores (`--max-steps` and `--max_steps`)."""
    return {k.replace("-", "_"): v for k, v in aliases.items()} | aliases


def load_rm_job(cls: type, args: list[str], aliases: dict[str, str]):
    """`cls` from an optional config file (other commands' keys ignored) and dotted overrides."""
    path, rest = split_config_path(args)
    values: dict = {}
    if path is not None:
        try:
            values = keep_own_keys(read_yaml(path), cls, [o for o in ALL_JOBS if o is not cls])
        except UserError as e:
            raise UserError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    overrides = parse_overrides(expand_aliases(rest, _dashes(aliases)))
    return load_config(cls, None, _merge(values, overrides))


def _collect(job) -> str:
    check_output_file(job.collect.out, what="collect.out")
    s = collect(job)
    k = job.collect.samples
    return (f"{s['responses']} responses to {s['problems']} problems: pass@1 {s['pass@1']:.1%}, pass@{k} {s[f'pass@{k}']:.1%}; "
            f"wrote {s['out']}")


def _train(kind: str):
    def run(job, resume: bool = False) -> str:
        s = train_reward_model(job, kind, resume=resume)
        return (f"{kind} ({s['objective']}) on {s['examples']} examples: {s['steps']} steps in {s['train_seconds']:.0f} s, "
                f"loss {s['loss_first_step']:.3f} (first step) -> {s['loss_last_5_steps']:.3f} (last 5); wrote {job.train.out}")
    return run


def _eval(kind: str):
    def run(job) -> str:
        if job.eval.out:
            check_output_dir(job.eval.out, what="eval.out")
        s = rm_evaluate.eval_orm(job) if kind == "orm" else rm_evaluate.eval_prm(job)
        out = job.eval.out or str(Path(job.eval.reward_model) / "eval")
        return rm_evaluate.format_summary(s) + f"\nwrote {out}/summary.json"
    return run


def _label(job) -> str:
    check_output_file(job.label.out, (job.label.input,), what="label.out")
    s = label(job)
    return (f"{s['solutions']} solutions labelled ({s['new']} new, {s['skipped_done']} already done, {s['skipped_empty']} empty skipped), "
            f"{s['steps']} steps, {s['steps_labelled_correct']:.1%} labelled correct; wrote {s['out']}")


# The commands of each group, chosen in this one place: (job type, short flags, what runs).
COMMANDS: dict[str, dict[str, tuple[type, dict[str, str], Any]]] = {
    "rm": {"collect": (RMCollectJob, COLLECT, _collect), "train": (RMTrainJob, TRAIN, _train("orm")),
           "eval": (RMEvalJob, EVAL, _eval("orm"))},
    "prm": {"label": (PRMLabelJob, LABEL, _label), "train": (RMTrainJob, TRAIN, _train("prm")),
            "eval": (RMEvalJob, EVAL, _eval("prm"))},
}


def main(group: str, args: list[str]) -> int:
    """`tinyr1 rm ...` (group "rm") or `tinyr1 prm ...` (group "prm")."""
    commands = COMMANDS[group]
    usage = __doc__.split("\n\n")[1]
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0
    if args[0] not in commands:
        raise UserError(f"unknown command 'tinyr1 {group} {args[0]}'; expected one of {', '.join(commands)}")
    cls, aliases, run = commands[args[0]]
    rest = args[1:]
    if wants_help(rest):
        print(usage + "\n\n" + (cls.__doc__ or "") + "\n\nAll keys:\n" + help_text(cls))
        return 0
    resume, rest = split_resume(rest) if args[0] == "train" else (None, rest)
    if resume is not None:  # the saved job, with any overrides, continued in its own folder
        job = load_run_config(resume, parse_overrides(expand_aliases(rest, _dashes(aliases))), RMTrainJob)
        job = dataclasses.replace(job, train=dataclasses.replace(job.train, out=str(resume)))
    else:
        job = load_rm_job(cls, rest, aliases)
    validate(job, D.launch_world_size() if args[0] == "train" else 1)
    if args[0] != "train":  # collect, label, eval: rank 0 alone writes the files; the others idle
        if D.launched():
            if D.launch_rank() != 0:
                return 0
            print(f"tinyr1: {group} {args[0]} runs on one process (rank 0); the other {D.launch_world_size() - 1} "
                  "launched processes exit", flush=True)
        print(run(job))
        return 0
    D.init(cpu=job.model.device == "cpu")  # under accelerate launch / torchrun: join the process group
    message = run(job, resume=resume is not None)
    D.shutdown()
    if D.launch_rank() == 0:
        print(message)
    return 0
