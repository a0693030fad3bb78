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
  `sft.max_length` tokens, and `optim.micro_batch_size` then counts rows (as TRL's packing).
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
from tinyr1.errors import UserError
from tinyr1.recipes import setup as S
from tinyr1.rollout.policy_copy import SamplingCopy
from tinyr1.types import Problem


@dataclass
class MicroBatch:
    """Rows for one forward pass: one example per row (padded) or several (packed)."""

    input_ids: torch.Tensor  # (R, W) long: examples laid end to end, right-padded
    attention_mask: torch.Tensor  # (R, W) long: 1 on real tokens
    position_ids: torch.Tensor  # (R, W) long: 0, 1, ... restarting at every example (and at the padding)
    loss_mask: torch.Tensor  # (R, W) float: 1 on response tokens, EOS included
    packed: bool  # some row holds several examples: attention must be kept apart by position ids


def tokenize_examples(problems: list[Problem], job: TrainJob, tokenizer, shots) -> tuple[list[list[int]], list[list[int]], int]:
    """Step 1: prompt ids and response ids (reference + EOS) per problem, cut to `sft.max_length`.

    Prompt and response are tokenized apart, so the prompt ids are exactly those the sampler
    feeds the model at evaluation. Returns (prompt_ids, response_ids, number of examples cut).
    """
    from tinyr1.data.prompts import format_response, render_prompt

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
    return prompt_ids, response_ids, cut


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices grouped into rows of at most `capacity` tokens, longest examples placed first."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        j = next((j for j, free in enumerate(room) if free >= lengths[i]), len(rows))
        if j == len(rows):
            rows.append([])
            room.append(capacity)
        rows[j].append(i)
        room[j] -= lengths[i]
    return rows


def layout(prompt_ids: list[list[int]], response_ids: list[list[int]], rows: list[list[int]], size: int, pad_id: int) -> list[MicroBatch]:
    """Lay examples out in `rows` (lists of example indices) and group rows into micro-batches of `size`."""
    row_lengths = torch.tensor([sum(len(prompt_ids[i]) + len(response_ids[i]) for i in row) for row in rows])
    batches = []
    for mb in S.micro_batches(len(rows), size, row_lengths):  # similar lengths together: little padding
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


def micro_batches(prompt_ids: list[list[int]], response_ids: list[list[int]], job: TrainJob, pad_id: int) -> list[MicroBatch]:
    """Step 2: the step's examples as micro-batches, padded (one per row) or packed (`sft.packing`)."""
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    rows = first_fit_decreasing(lengths, job.sft.max_length) if job.sft.packing else [[i] for i in range(len(lengths))]
    return layout(prompt_ids, response_ids, rows, job.optim.micro_batch_size, pad_id)


def packed_logprobs(model, input_ids: torch.Tensor, position_ids: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Per-token log-probs (R, W) of packed rows, aligned with `input_ids` (position 0 gets 0).

    The packed twin of `setup.sequence_logprobs`: no attention mask and no cache, so transformers
    infers the block-diagonal causal mask from `position_ids`. The log-prob of an example's first
    token is read from the previous example's last position; it is a prompt token, never trained on.
    """
    from tinyr1.algorithms.logprobs import token_logprobs

    device = next(model.parameters()).device
    ids = input_ids.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, position_ids=position_ids.to(device), use_cache=False).logits
    return torch.nn.functional.pad(token_logprobs(logits[:, :-1], ids[:, 1:]), (1, 0))


def check_packing(model) -> None:
    """Refuse `sft.packing` unless this model keeps packed examples apart (one tiny forward)."""
    device = next(model.parameters()).device
    first, second = torch.arange(10, 16)[None], torch.arange(20, 25)[None]
    with torch.no_grad():
        alone = model(input_ids=second.to(device), use_cache=False).logits
        ids, positions = torch.cat([first, second], 1), torch.cat([torch.arange(6), torch.arange(5)])[None]
        packed = model(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False).logits[:, 6:]
    if not torch.allclose(alone, packed, rtol=1e-3, atol=1e-3):
        raise UserError(f"sft.packing is unsupported for this model ({type(model).__name__}): packed examples would "
                        "attend to each other; set sft.packing=false")


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
            logp = S.sequence_logprobs(model, mb.input_ids, mb.attention_mask, bf16)[0]
        loss = aggregate(-logp.cpu(), mb.loss_mask, "token", token_count=token_count)
        D.backward(loss)
        total += loss.item()
    return total


def update(model, optimizer, scheduler, batches: list[MicroBatch], job: TrainJob) -> dict[str, float]:
    """Step 3: one optimizer step on the mean NLL of the step's response tokens."""
    o = job.optim
    optimizer.zero_grad(set_to_none=True)
    model.train()
    total = backward(model, batches, o.bf16)
    grad_norm = D.clip_grad_norm_(S.trainable_parameters(model), o.grad_clip if o.grad_clip > 0 else float("inf"))
    optimizer.step()
    scheduler.step()
    model.eval()
    return D.reduce_dict({"loss/sft": total}, "mean") | {"loss/grad_norm": float(grad_norm), "optim/lr": scheduler.get_last_lr()[0]}


def train(job: TrainJob, run_dir: Path, resume: bool = False) -> dict:
    """Run SFT for `job.run.steps` steps in `run_dir`; returns the summary written to summary.json."""
    # setup: data first (fail fast on bad input), then the model
    data = S.load_data(job)
    model, tokenizer = S.build_policy(job)
    if job.sft.packing:
        check_packing(model)
    sampler = SamplingCopy(model, job.model, job.sampling.dtype)  # evals run on a merged copy
    optimizer, scheduler = S.build_optimizer(model, job)
    model, optimizer = D.prepare(model, optimizer)  # DDP (or the accelerate config's engine) under several processes
    run = S.Run(job, run_dir, resume, model, tokenizer, optimizer, scheduler, data, sampler)
    for step in run.steps():
        t_step = time.perf_counter()
        # 1. examples: prompt + reference response + EOS, tokenized and cut to sft.max_length;
        #    under W processes each takes its sft.batch_size / W of the step's problems
        problems = S.take_share(data.stream, job.sft.batch_size // D.world_size())
        prompt_ids, response_ids, cut = tokenize_examples(problems, job, tokenizer, data.shots)
        # 2. layout: padded or packed rows, in micro-batches
        batches = micro_batches(prompt_ids, response_ids, job, tokenizer.pad_token_id)
        # 3. update
        metrics = update(model, optimizer, scheduler, batches, job)
        # 4. log: sums over every process's examples
        n = D.reduce_dict({"tokens": float(sum(mb.loss_mask.sum() for mb in batches)), "response": sum(map(len, response_ids)),
                           "examples": len(response_ids), "real": sum(int(mb.attention_mask.sum()) for mb in batches),
                           "computed": sum(mb.input_ids.numel() for mb in batches), "cut": cut}, "sum")
        metrics |= {
            "train/tokens": int(n["tokens"]), "train/response_length": n["response"] / n["examples"],
            "train/padding": 1 - n["real"] / n["computed"], "train/cut": n["cut"] / n["examples"],
            "timing/step": D.all_reduce_max(time.perf_counter() - t_step),
        }
        run.end_step(step, metrics)
    return run.finish()
