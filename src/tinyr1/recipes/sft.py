"""Supervised fine-tuning on reference solutions, in one loop: examples -> layout -> update -> log.

    tinyr1 train configs/sft_quickstart.yaml
    tinyr1 train --model.name=runs/<sft-run>        # then GRPO on top of the SFT model

Each step takes `sft.batch_size` training problems and writes each as one example: the prompt
the RL recipes and the held-out eval use (`render_prompt`, chat template, few-shot turns), then
the reference solution rewritten in the configured answer style (`format_response`), then the
tokenizer's EOS (end of turn) so the model learns to stop. One optimizer step minimises the mean
negative log-likelihood of the response tokens; the prompt and the padding are not trained on.

Choices, and how they depart from common SFT trainers:
- The loss is a token-level mean over all response tokens of the step, divided by the step's
  global token count (`losses.aggregate`), so micro-batching gives exactly the full-batch loss;
  longer responses weigh more than short ones (as TRL's default, unlike a mean of per-example means).
- Problems without a reference solution (synthetic reasoning-gym tasks) train on the bare answer
  in the style (`$\\boxed{42}$`, `#### 42`, an empty <think>): the model learns the format and the
  answer, not a way of reasoning.
- Examples longer than `sft.max_length` tokens are cut from the end; a cut response loses its EOS.
- `sft.packing`: the step's examples are packed first-fit decreasing into rows of at most
  `sft.max_length` tokens; each micro-batch then takes packed rows holding at most
  `optim.micro_batch_size` examples (the key counts sequences in every recipe).
  Position ids restart at 0 at every example and no attention mask is passed: transformers then
  builds a block-diagonal causal mask (no attention across examples), the same mechanism as its
  `DataCollatorWithFlattening`. `check_packing` verifies that on the loaded model before training
  and refuses to pack when it does not hold. Packing removes the linear layers' work on padding;
  with SDPA on CPU the masked-out attention between examples of a row is still computed, so it
  pays off when lengths vary (32 GSM8K examples, 2-core CPU: padding 15% -> 1%, update 24 s ->
  17 s), not on short examples of similar length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tinyr1 import distributed as D
from tinyr1.algorithms.losses import aggregate
from tinyr1.config import TrainJob
from tinyr1.data.prompts import format_response, render_prompt
from tinyr1.errors import UserError
from tinyr1.rollout.policy_copy import SamplingCopy
from tinyr1.training.batching import example_micro_batches, first_fit_decreasing
from tinyr1.training.forward import check_packing, packed_logprobs, sequence_logprobs
from tinyr1.training.optim import NonFiniteGuard, build_optimizer
from tinyr1.training.policy import build_policy, trainable_parameters
from tinyr1.training.precision import resolve_bf16
from tinyr1.training.problems import load_data, take_share
from tinyr1.training.run import State, policy_run
from tinyr1.types import Problem


@dataclass
class MicroBatch:
    """Rows for one forward pass: one example per row (padded) or several (packed)."""

    input_ids: torch.Tensor  # (R, W) long: examples laid end to end, right-padded
    attention_mask: torch.Tensor  # (R, W) long: 1 on real tokens
    position_ids: torch.Tensor  # (R, W) long: 0, 1, ... restarting at every example (and at the padding)
    loss_mask: torch.Tensor  # (R, W) float: 1 on response tokens, EOS included
    packed: bool  # some row holds several examples: attention must be kept apart by position ids


@dataclass
class Examples:
    """Step 1's output: the step's E examples as token ids, prompt and response apart."""

    prompt_ids: list[list[int]]  # E: the prompt exactly as the sampler feeds it at evaluation
    response_ids: list[list[int]]  # E: the reference in the answer style, then EOS
    cut: int  # how many were cut to sft.max_length


def tokenize_examples(problems: list[Problem], job: TrainJob, tokenizer, shots) -> Examples:
    """Step 1: prompt ids and response ids (reference + EOS) per problem, cut to `sft.max_length`.

    Prompt and response are tokenized apart, so the prompt ids are exactly those the sampler
    feeds the model at evaluation.
    """
    if tokenizer.eos_token_id is None:
        raise UserError(f"model '{job.model.name}': its tokenizer has no EOS token, so SFT cannot teach it to stop")
    prompts = [render_prompt(p, job.prompt, tokenizer, shots) for p in problems]
    responses = [format_response(p, job.prompt.style) for p in problems]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = [ids + [tokenizer.eos_token_id] for ids in tokenizer(responses, add_special_tokens=False)["input_ids"]]
    cap, cut = job.sft.max_length, 0
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if len(p) + len(r) > cap:
            prompt_ids[i], response_ids[i], cut = p[:cap], r[: max(0, cap - len(p))], cut + 1
    return Examples(prompt_ids, response_ids, cut)


def layout(prompt_ids: list[list[int]], response_ids: list[list[int]], rows: list[list[int]], size: int, pad_id: int) -> list[MicroBatch]:
    """Lay examples out in `rows` (lists of example indices) and group the rows into micro-batches of
    at most `size` examples."""
    row_lengths = torch.tensor([sum(len(prompt_ids[i]) + len(response_ids[i]) for i in row) for row in rows])
    batches = []
    # at most `size` examples per micro-batch, rows of similar lengths together: little padding
    for mb in example_micro_batches([len(row) for row in rows], size, row_lengths):
        width = int(row_lengths[mb].max())
        ids = torch.full((len(mb), width), pad_id, dtype=torch.long)
        attention, positions = torch.zeros_like(ids), torch.zeros_like(ids)
        loss_mask = torch.zeros((len(mb), width), dtype=torch.float32)
        for k, r in enumerate(mb.tolist()):
            col = 0
            for i in rows[r]:
                p, resp = prompt_ids[i], response_ids[i]
                n = len(p) + len(resp)
                ids[k, col : col + n] = torch.tensor(p + resp, dtype=torch.long)
                attention[k, col : col + n] = 1
                positions[k, col : col + n] = torch.arange(n)
                loss_mask[k, col + len(p) : col + n] = 1.0  # a prompt is never empty: no row starts on a loss token
                col += n
            positions[k, col:] = torch.arange(width - col)  # the padding is a segment of its own
        batches.append(MicroBatch(ids, attention, positions, loss_mask, packed=any(len(rows[r]) > 1 for r in mb.tolist())))
    return batches


def micro_batches(examples: Examples, job: TrainJob, pad_id: int) -> list[MicroBatch]:
    """Step 2: the step's examples as micro-batches, padded (one per row) or packed (`sft.packing`)."""
    lengths = [len(p) + len(r) for p, r in zip(examples.prompt_ids, examples.response_ids)]
    rows = first_fit_decreasing(lengths, job.sft.max_length) if job.sft.packing else [[i] for i in range(len(lengths))]
    return layout(examples.prompt_ids, examples.response_ids, rows, job.optim.micro_batch_size, pad_id)


def backward(model, batches: list[MicroBatch], bf16: bool = False) -> float:
    """Accumulate the gradient of the mean NLL over every response token of `batches`; returns that loss.

    Each micro-batch divides by the global token count, so the sum is exactly the full-batch loss.
    Under W processes that count is every process's tokens, divided by W because DDP averages the
    W gradients (`distributed.loss_divisor`); the returned loss is then this process's share x W.
    """
    token_count = D.loss_divisor(sum(mb.loss_mask.sum() for mb in batches))
    total = 0.0
    for mb in D.sync_last(model, batches):  # gradients all-reduced once, in the last micro-batch's backward
        if mb.packed:
            logp = packed_logprobs(model, mb.input_ids, mb.position_ids, bf16)
        else:
            logp = sequence_logprobs(model, mb.input_ids, mb.attention_mask, bf16)[0]
        loss = aggregate(-logp.cpu(), mb.loss_mask, "token", token_count=token_count)
        D.backward(loss)
        total += loss.item()
    return total


def update(model, optimizer, scheduler, batches: list[MicroBatch], job: TrainJob, guard: NonFiniteGuard | None = None,
           step: int = 0) -> dict[str, float]:
    """Step 3: one optimizer step on the mean NLL of the step's response tokens (unless `guard`,
    `optim.on_nonfinite`, finds the loss or the gradient norm non-finite)."""
    o = job.optim
    guard = guard or NonFiniteGuard(o.on_nonfinite)
    skipped = guard.skipped
    optimizer.zero_grad(set_to_none=True)
    model.train()
    total = backward(model, batches, o.bf16)
    params = trainable_parameters(model)
    grad_norm = D.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"))
    if guard.allows(step, {"loss/sft": total}, grad_norm):
        optimizer.step()
        guard.check_weights(step, params)
    scheduler.step()
    model.eval()
    return D.reduce_dict({"loss/sft": total}, "mean") | {"loss/grad_norm": float(grad_norm), "optim/lr": scheduler.get_last_lr()[0],
                                                         "optim/skipped": guard.skipped - skipped}


def train(job: TrainJob, run_dir: Path, resume: bool = False, rewards: dict | None = None) -> dict:
    """Run SFT for `job.run.steps` steps in `run_dir`; returns the summary written to summary.json
    (`rewards` is accepted for the recipes' common signature; SFT has no reward)."""
    # setup: data first (fail fast on bad input), then the model
    data = load_data(job)
    job = resolve_bf16(job)  # optim.bf16=auto: bfloat16 autocast only where the hardware has it
    model, tokenizer = build_policy(job)
    if job.sft.packing:
        check_packing(model)
    sampler = SamplingCopy(model, job.model, job.sampling.dtype, job.sampling.engine, job.sampling.vllm_memory_gib)  # evals run on a merged copy
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    model, optimizer = D.prepare(model, optimizer)  # DDP (or the accelerate config's engine) under several processes
    run = policy_run(job, run_dir, resume, State(model, tokenizer, optimizer, scheduler, data.stream), data, sampler)
    guard = NonFiniteGuard(job.optim.on_nonfinite)  # NaN / inf losses, gradient norms (optim.on_nonfinite)
    for step in run.steps():
        t_step = time.perf_counter()
        # 1. examples: prompt + reference response + EOS, tokenized and cut to sft.max_length;
        #    under W processes each takes its sft.batch_size / W of the step's problems
        problems = take_share(data.stream, job.sft.batch_size // D.world_size())
        examples = tokenize_examples(problems, job, tokenizer, data.shots)
        # 2. layout: padded or packed rows, in micro-batches
        batches = micro_batches(examples, job, tokenizer.pad_token_id)
        # 3. update
        metrics = update(model, optimizer, scheduler, batches, job, guard, step)
        # 4. log: sums over every process's examples
        n = D.reduce_dict({"tokens": float(sum(mb.loss_mask.sum() for mb in batches)),
                           "response": sum(map(len, examples.response_ids)), "examples": len(examples.response_ids),
                           "real": sum(int(mb.attention_mask.sum()) for mb in batches),
                           "computed": sum(mb.input_ids.numel() for mb in batches), "cut": examples.cut}, "sum")
        metrics |= {
            "train/tokens": int(n["tokens"]), "train/response_length": n["response"] / n["examples"],
            "train/padding": 1 - n["real"] / n["computed"], "train/cut": n["cut"] / n["examples"],
            "timing/step": D.all_reduce_max(time.perf_counter() - t_step),
        }
        run.end_step(step, metrics)
    return run.finish()
