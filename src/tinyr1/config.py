"""Typed configuration: one dataclass per concern, loaded from YAML, overridden with dotted keys.

Each field carries its documentation as a string literal right under it (cleanrl style); the
same text is the `--help` output. Allowed values are spelled as `Literal[...]` annotations, so
validation can name them. A job config (`EvalJob`, later `TrainJob`) nests the sections:

    model:    {name: smollm2-135m-instruct, dtype: float32}
    data:     {source: "gsm8k:../shared/data/GSM8K"}

Overrides from the command line use the same dotted keys: `--model.dtype=bfloat16`.
Unknown keys, wrong types and values outside a Literal raise `UserError` naming the key.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tinyr1.errors import UserError


# ----------------------------------------------------------------------------- sections


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    """Hub id (online), local folder, local .gguf file, run folder (runs/<name>), or the embedded
    alias `smollm2-135m-instruct`."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights dtype. Never float16 on CPU (it is ~100x slower there)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run: `auto` picks cuda when available, else cpu."""
    trust_remote_code: bool = False
    """Allow custom modelling code from the model's repository. Off unless you ask."""


@dataclass
class DataConfig:
    source: str = "synthetic:basic_arithmetic"
    """Where problems come from: `gsm8k:<folder or hub id>`, `math:<folder or hub id>`,
    `synthetic:<reasoning-gym task>`, or `jsonl:<file>`."""
    subjects: list[str] = field(default_factory=list)
    """MATH only: keep these subjects (folder names such as `algebra`, or `type` names). Empty = all."""
    levels: list[int] = field(default_factory=list)
    """MATH only: keep these levels (1-5). Empty = all."""
    size: int = 2000
    """Synthetic only: number of problems generated for training."""
    test_size: int = 200
    """Held-out problems split off (seeded) when the source has no test split."""
    seed: int = 0
    """Seed for generators and held-out splits."""
    question_field: str = "question"
    """JSONL only: the key holding the question."""
    answer_field: str = "answer"
    """JSONL only: the key holding the reference answer."""
    task_options: dict = field(default_factory=dict)
    """Synthetic only: options passed to the reasoning-gym task (e.g. `{min_terms: 2, max_terms: 3}`)."""


@dataclass
class PromptConfig:
    style: Literal["boxed", "gsm8k", "r1"] = "boxed"
    """Answer style asked for and graded: `boxed` (\\boxed{}), `gsm8k` (#### answer), `r1`
    (<think>...</think><answer>...</answer>)."""
    system_prompt: str | None = None
    """Extra system prompt placed before the style's instruction. None = none."""
    few_shot: int = 0
    """Number of worked examples from the train split shown before the question."""
    chat_template: Literal["auto", "none"] = "auto"
    """`auto` uses the tokenizer's chat template when it has one; `none` forces plain text."""


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    """Longest response in tokens; longer ones are cut (and counted as truncated)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0 = off)."""
    batch_size: int = 64
    """Sequences generated together."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Training only: weights of the sampling copy used for rollouts and held-out evals (LoRA merged
    in). `auto` = bfloat16 where the hardware has bf16 matrix units, else float32."""


@dataclass
class GradingConfig:
    fallback: bool = True
    """When the answer style's marker is missing, take the last number in the response."""
    timeout: float = 5.0
    """Seconds allowed to check one answer; slower checks count as wrong."""


@dataclass
class EvalConfig:
    split: Literal["train", "test"] = "test"
    """Which split to evaluate on."""
    limit: int | None = None
    """Evaluate only the first N problems of the split (None = all)."""
    samples: int = 1
    """K > 1 also draws K samples per problem at `temperature` for pass@k and maj@k."""
    temperature: float = 1.0
    """Temperature of the K samples (the accuracy itself is always greedy)."""
    out: str | None = None
    """Folder for summary.json and samples.jsonl (default: runs/eval-<timestamp>)."""


@dataclass
class EvalJob:
    """`tinyr1 eval`: held-out accuracy (greedy), pass@k and maj@k of a model on a problem set."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class RunConfig:
    name: str | None = None
    """Run folder name under `output_dir` (default: `<algorithm>-<date>-<time>`)."""
    output_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 0
    """Seed for sampling, data order and initialisation."""
    steps: int = 50
    """Optimizer steps to train for."""
    eval_every: int = 10
    """Held-out evaluation every K steps, besides before and after training (0 = only those two)."""
    eval_size: int = 200
    """Held-out problems per evaluation (the first N of the test split, never used for training)."""
    save_every: int = 0
    """Checkpoint every K steps (0 = only at the end); a checkpoint is what `--resume` continues from."""
    log_samples: int = 4
    """Completions per step written to samples.jsonl with their rewards."""
    tensorboard: bool = False
    """Also log metrics to TensorBoard (needs the tensorboard package)."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class LoraConfig:
    rank: int = 32
    """LoRA rank; 0 = full fine-tuning (every weight trains)."""
    alpha: float = 64.0
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters: `all-linear` or names such as q_proj, v_proj."""


@dataclass
class OptimConfig:
    lr: float = 1e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = 0
    """Linear warm-up steps from 0 to `lr`."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    micro_batch_size: int = 16
    """Sequences per forward/backward; gradients accumulate over the whole step."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    bf16: bool = False
    """bfloat16 autocast in the update (weights and optimizer stay float32). Helps on GPUs and bf16 CPUs.
    With LoRA the frozen base weights are then stored in bfloat16 once (what autocast casts them to)."""
    padding_free: bool = False
    """GRPO update without padding: each micro-batch's sequences are packed into rows as long as
    its longest one, attention kept apart by position ids. Same loss; pays off when lengths vary
    a lot or attention kernels skip masked blocks (GPU); on CPU, sorted micro-batches leave little padding."""
    share_prompt: bool = True
    """GRPO update: run each group's prompt once and repeat its keys/values for the group's G
    responses (micro-batches of whole groups). Same loss and gradients; 1/G of the prompt compute.
    Not combined with padding_free or gradient_checkpointing (those run every row in full)."""


@dataclass
class GRPOConfig:
    batch_size: int = 64
    """Sequences per step (N = prompts per step x group_size); must be a multiple of group_size."""
    group_size: int = 8
    """Samples per prompt (G); advantages compare the samples of one prompt."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the group's reward std (GRPO), the batch's, or not at all (Dr.GRPO)."""
    loss_aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    """`token`: mean over all tokens of the batch (DAPO); `sequence`: mean of per-sequence means
    (original GRPO); `dr_grpo`: sum divided by N x max_new_tokens (Dr.GRPO)."""
    clip_low: float = 0.2
    """Lower clip range: the ratio is clipped at 1 - clip_low."""
    clip_high: float = 0.28
    """Upper clip range: the ratio is clipped at 1 + clip_high (DAPO clip-higher when > clip_low)."""
    num_iterations: int = 1
    """Updates per rollout (mu). With 1 the importance ratio is exactly 1 and its forward pass is skipped."""
    beta: float = 0.0
    """KL penalty coefficient to the reference policy (0 = no KL, as DAPO / Dr.GRPO)."""
    kl_estimator: Literal["k1", "k3"] = "k3"
    """Per-token KL estimator (Schulman): k1 = log ratio, k3 = unbiased, always positive."""
    mask_truncated: bool = False
    """Leave responses cut at max_new_tokens out of the loss (DAPO overlong filtering)."""
    dynamic_sampling: bool = False
    """Drop groups whose rewards are all equal and refill the batch from fresh prompts (DAPO)."""
    max_refills: int = 4
    """Dynamic sampling: extra rollout rounds allowed per step before training on what there is."""
    advantage: Literal["grpo", "rloo", "reinforce_pp", "process"] = "grpo"
    """Advantage estimator: `grpo` (group mean, scaled per `scale_rewards`), `rloo` (mean of the
    other samples of the group), `reinforce_pp` (REINFORCE++ baseline: group mean, then whitened
    over the batch), `process` (DeepSeekMath process supervision with the step rewards of
    `reward.process`; the outcome reward counts as a final step)."""


@dataclass
class SFTConfig:
    batch_size: int = 16
    """Examples per optimizer step."""
    max_length: int = 512
    """Longest prompt + response in tokens; longer examples are cut from the end."""
    packing: bool = False
    """Pack several examples into one row (no attention across them) to avoid computing on padding."""


@dataclass
class PPOConfig:
    batch_size: int = 32
    """Prompts per rollout (one response each)."""
    epochs: int = 2
    """Passes over each rollout."""
    mini_batch_size: int = 16
    """Sequences per optimizer step within an epoch."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """Policy ratio clip range."""
    value_clip: float = 0.2
    """Value clip range around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    kl_coef: float = 0.05
    """Per-token KL penalty to the reference policy, folded into the rewards (0 = off)."""
    adaptive_kl: bool = False
    """Adapt kl_coef towards `target_kl` (Ziegler et al. 2019)."""
    target_kl: float = 1.0
    """KL per response (summed over its tokens, nats) that the adaptive controller aims for."""
    early_stop_kl: float | None = None
    """Stop the epochs of a rollout once approx KL exceeds this (None = never)."""
    whiten_advantages: bool = True
    """Normalise advantages over the batch's response tokens."""
    critic: Literal["shared", "separate"] = "shared"
    """`shared`: a value head on the policy's backbone (no second model); `separate`: its own copy."""
    process_coef: float = 1.0
    """Weight of the per-step rewards of `reward.process` (rule or PRM), each placed on its step's
    last token beside the outcome on the response's last token (no effect with process: none)."""


@dataclass
class RewardConfig:
    weights: dict = field(default_factory=lambda: {"correctness": 1.0})
    """Reward functions and their weights, summed: `correctness` (the grader), `format` (the answer
    style's markers present), `orm:<folder>` (an outcome reward model from `tinyr1 rm train`:
    P(correct) in [0, 1], scored in batches without gradients on the policy's device), e.g.
    `{correctness: 1.0, "orm:runs/rm": 0.5}`."""
    process: str = "none"
    """Per-step rewards: `none`, `arithmetic` (+1 a step whose equations all check, -1 a wrong
    one, 0 none), `reference` (+1 a step stating a value of the reference solution's calculator
    notes, GSM8K), or `prm:<folder>` (a process reward model from `tinyr1 prm train`: 2 P(step
    ok) - 1 per step). Used by `grpo.advantage: process`, and by PPO, which adds
    `ppo.process_coef` x each step's reward on the step's last token (through GAE)."""
    step_mode: Literal["lines", "paragraphs", "markers"] = "lines"
    """How a response splits into steps: lines, blank-line paragraphs, or `Step k:` markers."""


@dataclass
class TrainJob:
    """`tinyr1 train`: fine-tune a model with the chosen algorithm, evaluating before, during and after."""

    algorithm: Literal["grpo", "sft", "ppo"] = "grpo"
    """Training algorithm."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    run: RunConfig = field(default_factory=RunConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)


# ----------------------------------------------------------------------------- loading


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the docstring written under it."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting where a YAML/CLI spelling allows."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"config key '{key}': {value!r} is not allowed; expected one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except UserError:
                continue
        raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # CLI spelling: --data.levels=1,2
            value = [yaml.safe_load(v) if item_tp is not str else v for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads `5e-4` (no dot in the mantissa) as a string
        raise UserError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _apply(obj: Any, values: dict[str, Any], prefix: str = "", merge_dicts: bool = False) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise UserError(f"unknown config key '{key}'; known keys here: {', '.join(sorted(names))}")
        tp = hints[k]
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise UserError(f"config key '{key}': expected a section (mapping), got {v!r}")
            _apply(current, v, prefix=f"{key}.", merge_dicts=merge_dicts)
        elif merge_dicts and isinstance(current, dict) and isinstance(v, dict):
            # `--reward.weights.format=0.1` adds to the mapping; a YAML file replaces it whole.
            setattr(obj, k, {**current, **_coerce(v, tp, key)})
        else:
            setattr(obj, k, _coerce(v, tp, key))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `['--a.b=1', '--c', 'x']` into a nested dict `{'a': {'b': 1}, 'c': 'x'}`.

    Values are read as YAML scalars (`1` -> int, `true` -> bool, `null` -> None).
    """
    nested: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise UserError(f"unexpected argument {arg!r}; overrides look like --section.key=value")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise UserError(f"override {arg} has no value; write {arg}=VALUE")
            key, raw = arg[2:], args[i + 1]
            i += 1
        i += 1
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
            value = raw  # "a: b" typed on the command line is a string, not a mapping
        node = nested
        head, colon, tail = key.partition(":")
        parts = head.replace("-", "_").split(".")
        parts[-1] += colon + tail  # `--reward.weights.orm:runs/rm-1.5=1`: a path after `:` is kept as written
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def load_config(cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None):
    """Build `cls()` and apply a YAML file, then overrides. Raises `UserError` on any bad key."""
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a mapping of sections at the top level")
        _apply(cfg, values)
    if overrides:
        _apply(cfg, overrides, merge_dicts=True)
    return cfg


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise UserError(f"config key '{key}': expected {expected}, got {value!r}")


def _validate_processes(job: "TrainJob", world_size: int) -> None:
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


def validate_train(job: "TrainJob", world_size: int = 1) -> None:
    """Cross-field and range checks for a training job; raises `UserError` naming the key.

    `world_size`: the number of processes the job runs on; every batch must split evenly over them.
    """
    g, r, o = job.grpo, job.run, job.optim
    _check(g.group_size >= 2, "grpo.group_size", "an integer >= 2 (advantages compare samples of one prompt)", g.group_size)
    _check(g.batch_size >= g.group_size and g.batch_size % g.group_size == 0, "grpo.batch_size",
           f"a positive multiple of grpo.group_size={g.group_size}", g.batch_size)
    _check(g.num_iterations >= 1, "grpo.num_iterations", "an integer >= 1", g.num_iterations)
    _check(g.advantage != "process" or job.reward.process != "none", "reward.process",
           "a step rule (arithmetic, reference or prm:<folder>) when grpo.advantage is process", job.reward.process)
    _check(g.temperature > 0, "grpo.temperature", "a number > 0", g.temperature)
    _check(0 <= g.clip_low < 1, "grpo.clip_low", "a number in [0, 1)", g.clip_low)
    _check(g.clip_high >= 0, "grpo.clip_high", "a number >= 0", g.clip_high)
    _check(g.beta >= 0, "grpo.beta", "a number >= 0", g.beta)
    _check(r.steps >= 1, "run.steps", "an integer >= 1", r.steps)
    _check(r.eval_every >= 0, "run.eval_every", "an integer >= 0", r.eval_every)
    _check(r.eval_size >= 1, "run.eval_size", "an integer >= 1", r.eval_size)
    _check(r.save_every >= 0, "run.save_every", "an integer >= 0", r.save_every)
    _check(o.lr > 0, "optim.lr", "a number > 0", o.lr)
    _check(o.micro_batch_size >= 1, "optim.micro_batch_size", "an integer >= 1", o.micro_batch_size)
    _check(o.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0", o.warmup_steps)
    _check(job.lora.rank >= 0, "lora.rank", "an integer >= 0 (0 = full fine-tuning)", job.lora.rank)
    _check(job.sampling.max_new_tokens >= 1, "sampling.max_new_tokens", "an integer >= 1", job.sampling.max_new_tokens)
    _check(0 < job.sampling.top_p <= 1, "sampling.top_p", "a number in (0, 1]", job.sampling.top_p)
    _check(bool(job.reward.weights), "reward.weights", "at least one reward function", job.reward.weights)
    if job.algorithm == "ppo":
        p = job.ppo
        _check(p.batch_size >= 1, "ppo.batch_size", "an integer >= 1", p.batch_size)
        _check(p.epochs >= 1, "ppo.epochs", "an integer >= 1", p.epochs)
        _check(p.mini_batch_size >= 1, "ppo.mini_batch_size", "an integer >= 1", p.mini_batch_size)
        _check(0 <= p.gamma <= 1, "ppo.gamma", "a number in [0, 1]", p.gamma)
        _check(0 <= p.lam <= 1, "ppo.lam", "a number in [0, 1]", p.lam)
        _check(p.clip > 0, "ppo.clip", "a number > 0", p.clip)
        _check(p.value_clip > 0, "ppo.value_clip", "a number > 0", p.value_clip)
        _check(p.kl_coef >= 0, "ppo.kl_coef", "a number >= 0", p.kl_coef)
        _check(p.target_kl > 0, "ppo.target_kl", "a number > 0", p.target_kl)
    if job.algorithm == "sft":
        _check(job.sft.batch_size >= 1, "sft.batch_size", "an integer >= 1", job.sft.batch_size)
        _check(job.sft.max_length >= 16, "sft.max_length", "an integer >= 16 (prompt + response tokens)", job.sft.max_length)
    for name, w in job.reward.weights.items():
        _check(isinstance(w, (int, float)) and not isinstance(w, bool), f"reward.weights.{name}", "a number", w)
    _validate_processes(job, world_size)
    _validate_reward_models(job.reward)


def _validate_reward_models(reward: "RewardConfig") -> None:
    """`orm:<folder>` weights and `prm:<folder>` process rewards name saved reward models of that kind."""
    from tinyr1.models.heads import read_meta

    for name in reward.weights:
        if name.startswith("orm:"):
            read_meta(name[len("orm:") :], "orm", key=f"reward.weights.{name}")
    p = reward.process
    if p.startswith("prm:"):
        read_meta(p[len("prm:") :], "prm", key="reward.process")
    else:
        _check(p in ("none", "arithmetic", "reference"), "reward.process", "one of 'none', 'arithmetic', 'reference' or 'prm:<folder>'", p)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def help_text(cls: type, prefix: str = "") -> str:
    """One line per key: `--section.key  TYPE  (default)  doc`."""
    lines = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines.append(help_text(type(default), prefix=f"{key}."))
            continue
        lines.append(f"  --{key}={default!r}  [{_type_name(hints[f.name])}]\n      {docs.get(f.name, '')}")
    return "\n".join(lines)
