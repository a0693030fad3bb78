"""The Python API: `tinyr1.train` and `tinyr1.evaluate`, for notebooks and scripts.

    import tinyr1
    from datasets import load_dataset

    def brevity(completions, **kwargs):                 # TRL's reward_funcs signature works as is
        return [1.0 if len(c) < 400 else 0.0 for c in completions]

    summary = tinyr1.train("configs/quickstart.yaml", dataset=load_dataset("openai/gsm8k", "main", split="train"),
                           reward_funcs=[brevity], overrides={"run.steps": 50, "prompt.style": "gsm8k"})
    result = tinyr1.evaluate({"model": {"name": "runs/my-run"}}, dataset=my_test_rows)

`config` is a `TrainJob` / `EvalJob`, a dict of sections, a YAML path, or None (the quickstart for
training, the defaults for evaluation); `overrides` are dotted keys as on the command line.
Objects handed in stand in for config entries, and are written into the run folder so that
config.yaml tells the truth and `--resume` works:

- `dataset` (a `datasets.Dataset`, `DatasetDict` with train/test, or a list of dicts) and
  `eval_dataset`: saved under `<run>/data` and read back as `hf:<run>/data`, the question and
  answer in `question_field` / `answer_field` (answers as written; `... #### 72` gives 72);
- `model` (+ `tokenizer`): a transformers causal LM, saved under `<run>/given-model` and trained from there;
- `reward_funcs`: a callable, a list of them, or `{name: callable or (callable, weight)}`, each
  added to `reward.weights` as `module:function` (weight 1 unless given) and passed to the recipe.
  Plain `fn(problems, responses)` and TRL's `fn(completions, **kwargs)` both work (`rewards.callables`).

One process only (launchers: use the CLI). Bad input raises `tinyr1.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinyr1.cli.train import QUICKSTART
from tinyr1.config import EvalJob, TrainJob, load_config, parse_overrides, validate
from tinyr1.config.load import apply
from tinyr1.data import load_problems
from tinyr1.data.rows import rows_to_problems
from tinyr1.errors import UserError
from tinyr1.evaluation import EvalResult
from tinyr1.evaluation import evaluate as run_evaluation
from tinyr1.recipes import get_recipe
from tinyr1.rollout.policy_copy import load_sampler
from tinyr1.training.checkpoint import load_run_config, new_run_dir


def _job(cls: type, config, overrides: dict[str, Any] | None):
    """A `cls` from an object, dict, YAML path or None, then dotted-key overrides."""
    if isinstance(config, cls):
        job = dataclasses.replace(config)
    elif isinstance(config, dict):
        job = load_config(cls, None, config)
    elif isinstance(config, (str, Path)):
        job = load_config(cls, config)
    elif config is None:
        job = load_config(cls, QUICKSTART if cls is TrainJob else None)
    else:
        raise UserError(f"config: expected a {cls.__name__}, a dict of sections or a YAML path, got {type(config).__name__}")
    if overrides:
        apply(job, parse_overrides([f"--{k}={v}" for k, v in overrides.items()]), merge_dicts=True)
    return job


def _reward_table(reward_funcs) -> dict[str, tuple[Callable, float]]:
    """`{name: (callable, weight)}` from one callable, a list of them, or a dict."""
    if reward_funcs is None:
        return {}
    if callable(reward_funcs):
        reward_funcs = [reward_funcs]
    if not isinstance(reward_funcs, dict):
        reward_funcs = {_name(f): f for f in reward_funcs}
    table = {}
    for name, value in reward_funcs.items():
        fn, weight = value if isinstance(value, tuple) else (value, 1.0)
        if not callable(fn):
            raise UserError(f"reward_funcs[{name!r}]: expected a callable, got {type(fn).__name__}")
        table[name if ":" in name else f"{getattr(fn, '__module__', None) or 'python'}:{name}"] = (fn, float(weight))
    return table


def _name(fn: Callable) -> str:
    """`module:function` for a callable (its plain name when it is nested, as in a test or a notebook cell)."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "reward")
    if "<" in qualname:  # <locals>, <lambda>
        qualname = getattr(fn, "__name__", "reward").strip("<>") or "reward"
    return f"{getattr(fn, '__module__', None) or 'python'}:{qualname}"


def _save_dataset(dataset, eval_dataset, folder: Path) -> None:
    # lazy: datasets is slow to import and only needed when a dataset is handed in
    import datasets

    def as_dataset(d):
        return d if isinstance(d, datasets.Dataset) else datasets.Dataset.from_list(list(d))

    if isinstance(dataset, datasets.DatasetDict):
        splits = dict(dataset)
    else:
        splits = {"train": as_dataset(dataset)}
    if eval_dataset is not None:
        splits["test"] = as_dataset(eval_dataset)
    datasets.DatasetDict(splits).save_to_disk(str(folder))


def train(config: TrainJob | dict | str | Path | None = None, *, dataset=None, eval_dataset=None,
          question_field: str | None = None, answer_field: str | None = None, reward_funcs=None,
          model=None, tokenizer=None, overrides: dict[str, Any] | None = None, resume: str | Path | None = None) -> dict:
    """Train as `config` says, with any of your objects standing in for its entries; returns the
    run's summary (summary.json: held-out accuracy before and after, wall time) with `run_dir`.

    `resume`: a run folder to continue (its config.yaml, with `overrides`); pass the same
    `reward_funcs` again if the run used some.
    """
    rewards = _reward_table(reward_funcs)
    if resume is not None:
        job, run_dir = load_run_config(Path(resume), parse_overrides([f"--{k}={v}" for k, v in (overrides or {}).items()])), Path(resume)
    else:
        job = _job(TrainJob, config, overrides)
        if rewards:
            job.reward.weights = {**job.reward.weights, **{name: w for name, (_, w) in rewards.items()}}
        if question_field:
            job.data.question_field = question_field
        if answer_field:
            job.data.answer_field = answer_field
        validate(job)
        run_dir = new_run_dir(job)
        if dataset is not None:
            _save_dataset(dataset, eval_dataset, run_dir / "data")
            job.data.source = f"hf:{run_dir / 'data'}"
        elif eval_dataset is not None:
            raise UserError("eval_dataset needs a dataset to train on (or put both in the config's data.source)")
        if model is not None:
            if tokenizer is None:
                raise UserError("model: hand in its tokenizer too (tokenizer=...)")
            model.save_pretrained(run_dir / "given-model")
            tokenizer.save_pretrained(run_dir / "given-model")
            job.model.name = str(run_dir / "given-model")
    validate(job)
    summary = get_recipe(job.algorithm)(job, run_dir, resume=resume is not None, rewards={k: f for k, (f, _) in rewards.items()})
    return summary | {"run_dir": str(run_dir)}


def evaluate(config: EvalJob | dict | str | Path | None = None, *, model=None, tokenizer=None, dataset=None,
             question_field: str = "question", answer_field: str = "answer",
             overrides: dict[str, Any] | None = None) -> EvalResult:
    """Greedy accuracy (95% interval), and pass@k / maj@k with `eval.samples` > 1, of a model on
    problems; returns the summary and every graded response (`EvalResult.summary`, `.rows`).

    `model` + `tokenizer`: a loaded model (else `model.name` is loaded); `dataset`: rows (a
    `datasets.Dataset` or a list of dicts) with `question_field` / `answer_field` (else `data.source`'s
    `eval.split`). Nothing is written to disk.
    """
    job = _job(EvalJob, config, overrides)
    validate(job)
    if dataset is not None:
        problems = rows_to_problems(((f"dataset row {i}", dict(r)) for i, r in enumerate(dataset)), question_field,
                                    answer_field, lambda i, where: f"dataset/{i}", "dataset")
        if not problems:
            raise UserError("dataset: it holds no rows")
        shots: list = []
    else:
        problems = load_problems(job.data, job.eval.split)
        shots = load_problems(job.data, "train")[: job.prompt.few_shot] if job.prompt.few_shot else []
    problems = problems[: job.eval.limit]
    if model is None:
        model, tokenizer = load_sampler(job.model, job.sampling)
    elif tokenizer is None:
        raise UserError("model: hand in its tokenizer too (tokenizer=...)")
    return run_evaluation(model, tokenizer, problems, job.prompt, job.sampling, job.grading, samples=job.eval.samples,
                          temperature=job.sampling.temperature, shots=shots, progress=False,
                          seed=job.eval.seed)
