"""Configuration of the reward-model commands (`tinyr1 rm ...`, `tinyr1 prm ...`).

Same conventions as `config/schema.py`: one dataclass per concern, the documentation of each field
in the string under it (`tinyr1 rm train --help` prints it), dotted overrides
(`--train.objective=bradley_terry`). The shared sections (`model`, `data`, `prompt`, `sampling`,
`grading`, `lora`, `optim`) are the training config's, so a training config file can be passed
to these commands: each takes the sections it has and ignores the other known ones.

The data flow, with the file each command writes:

    rm collect   policy samples K responses per problem, the grader labels them
                 -> responses.jsonl  {id, problem_id, prompt, completion, answer, extracted, label}
    rm train     responses.jsonl -> ORM folder (token scorer + tinyr1_reward_model.json)
    rm eval      ORM + held-out responses.jsonl -> AUC, best-of-n vs majority vote vs pass@1
    prm label    responses.jsonl + completer model -> steps.jsonl {id, prompt, completions, labels, soft_labels}
    prm train    steps.jsonl (or PRM800K / Math-Shepherd in that format) -> PRM folder
    prm eval     PRM + held-out steps.jsonl / responses.jsonl -> step F1 and AUC, best-of-n by min / product / last
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tinyr1.config.schema import DataConfig, GradingConfig, LoraConfig, ModelConfig, OptimConfig, PromptConfig, SamplingConfig


@dataclass
class CollectConfig:
    split: Literal["train", "test"] = "train"
    """Problems to sample: `train` for reward-model training data, `test` for the held-out
    responses that `rm eval` / `prm eval` read."""
    limit: int | None = 64
    """Use the first N problems of the split (None = all)."""
    samples: int = 4
    """Responses sampled per problem (K), at `sampling.temperature` (0 = greedy)."""
    seed: int = 0
    """Seed of the sampling."""
    out: str = "runs/rm_data/responses.jsonl"
    """JSONL file written, one line per response, appended a batch of problems at a time; an
    interrupted run resumes when rerun with the same settings (state in `<out>.resume.json`)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RMCollectJob:
    """`tinyr1 rm collect`: sample a policy on problems and label each response with the grader."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)


@dataclass
class RMTrainConfig:
    data: str = "runs/rm_data/responses.jsonl"
    """Training file. `rm train`: lines {prompt, completion, label} (what `rm collect` writes);
    `prm train`: stepwise lines {prompt, completions, labels[, soft_labels]} (`prm label`,
    PRM800K or Math-Shepherd converted to TRL's format)."""
    out: str = "runs/rm"
    """Run folder written: config.yaml, metrics.jsonl (loss per step), checkpoints, summary.json, and
    the reward model in final/ (save_pretrained, tokenizer, tinyr1_reward_model.json); the folder
    itself names the model (`orm:runs/rm`, `--model runs/rm`)."""
    objective: Literal["bce", "bradley_terry"] = "bce"
    """ORM only. `bce`: pointwise, P(correct) at the response's last token; `bradley_terry`: on
    pairs (correct, incorrect) of the same problem, -log sigmoid(score_correct - score_incorrect)."""
    target: Literal["hard", "soft"] = "hard"
    """PRM only. `hard`: the true/false labels; `soft`: soft_labels (fraction of completions that
    reached the right answer), as Math-Shepherd's soft estimation."""
    max_pairs: int = 16
    """bradley_terry: at most this many (correct, incorrect) pairs per problem."""
    epochs: int = 1
    """Passes over the training file."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None = run the epochs)."""
    max_minutes: float | None = None
    """Stop (and save) after this many minutes of training (None = no limit)."""
    batch_size: int = 8
    """Examples (or pairs) per optimizer step."""
    max_length: int = 512
    """Longest example in tokens; longer ones keep their last tokens (the labels there)."""
    seed: int = 0
    """Seed for the data order and the score layer's initialisation."""
    save_every: int = 0
    """Checkpoint every K optimizer steps (0 = none); `tinyr1 rm train --resume <out>` continues from the last."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RMTrainJob:
    """`tinyr1 rm train` / `tinyr1 prm train`: a token-scoring head on a small LM (LoRA or full)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)


@dataclass
class RMEvalConfig:
    reward_model: str = "runs/rm"
    """The reward model folder (written by `rm train` / `prm train`)."""
    data: str | None = None
    """Held-out responses to score: `rm collect --collect.split=test` output, K per problem (AUC
    over all of them; best-of-n per problem). Required by `rm eval`."""
    steps: str | None = None
    """`prm eval` only: held-out stepwise file with labels (`prm label` on held-out responses)
    for step-level F1 and AUC."""
    threshold: float = 0.5
    """`prm eval`: a step is predicted correct when P(correct) >= threshold (for F1)."""
    out: str | None = None
    """Folder for summary.json and scores.jsonl (default: <reward_model>/eval)."""
    batch_size: int = 16
    """Sequences scored together."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run the reward model."""
    progress: bool = True
    """Show a progress bar while scoring."""


@dataclass
class StepsConfig:
    step_mode: Literal["lines", "paragraphs", "markers"] = "lines"
    """How a response splits into steps (the same key as in training: keep them equal)."""


@dataclass
class RMEvalJob:
    """`tinyr1 rm eval` / `tinyr1 prm eval`: how well a reward model ranks held-out responses."""

    eval: RMEvalConfig = field(default_factory=RMEvalConfig)
    reward: StepsConfig = field(default_factory=StepsConfig)


@dataclass
class LabelConfig:
    input: str = "runs/rm_data/responses.jsonl"
    """Sampled solutions to label: `rm collect` output (lines with id, prompt, completion, answer)."""
    out: str = "runs/rm_data/steps.jsonl"
    """Stepwise JSONL written, one line per solution, appended as it goes; a rerun skips the ids
    already there (resume)."""
    completions: int = 4
    """Continuations (K) sampled from each step prefix by the completer (`model.name`), at
    `sampling.temperature`."""
    limit: int | None = None
    """Label the first N solutions of the input (None = all)."""
    chunk: int = 4
    """Solutions whose prefixes are sampled together (one seeded batch; the unit of resume)."""
    seed: int = 0
    """Seed; chunk i samples with seed + i, so a resumed run gives the same labels."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class PRMLabelJob:
    """`tinyr1 prm label`: Math-Shepherd step labels from K continuations of each step prefix."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    reward: StepsConfig = field(default_factory=StepsConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
