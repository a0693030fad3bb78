"""GRPO (Shao et al. 2024) with today's variants, in one loop: rollout -> reward -> advantages -> update -> log.

    tinyr1 train configs/quickstart.yaml --grpo.scale_rewards=none --grpo.loss_aggregation=dr_grpo

Each step samples G responses for each of B prompts (N = B*G = `grpo.batch_size`), scores them
with a weighted sum of reward functions, turns rewards into group-relative advantages and takes
one optimizer step (or `num_iterations` of them) on the clipped surrogate.

How it departs from the GRPO paper, and which paper each option follows:
- No KL term by default (`beta: 0`, as DAPO and Dr.GRPO); with `beta > 0` the KL is the k1 or
  k3 estimator against the reference policy, which under LoRA is the same model with its
  adapters disabled (no second copy).
- Loss aggregation: per token over the batch by default (DAPO); `sequence` is the paper's mean of
  per-sequence means, `dr_grpo` divides by a constant (Dr.GRPO). Micro-batches divide by the
  step's global token / sequence counts, so accumulation gives exactly the full-batch loss.
- Advantages are scaled by the group std (paper), the batch std, or not at all (Dr.GRPO).
- Clip-higher (DAPO): separate lower and upper clip ranges.
- Optional DAPO dynamic sampling (drop all-equal groups, refill) and overlong masking.
- With `num_iterations: 1` the rollout's log-probs equal the update's, so the ratio is exactly 1
  and no extra forward pass is made for them (the clip never triggers; the gradient is the
  plain policy gradient).
- Under W processes (`accelerate launch`, `torchrun`; see `tinyr1.distributed`) each process
  samples B / W whole groups; advantages are computed on the gathered rewards of the whole step
  and the loss divides by the global token count, so a step equals the 1-process step on the
  same batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tinyr1 import distributed as D
from tinyr1.algorithms.advantages import (
    equal_reward_group_share,
    group_advantages,
    process_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from tinyr1.algorithms.losses import aggregate, kl_penalty, masked_mean, policy_loss
from tinyr1.behaviour import has_self_check
from tinyr1.config import TrainJob
from tinyr1.data.prompts import render_prompt
from tinyr1.rewards.build import build_process_reward, build_reward_fns, outcome_weight
from tinyr1.rollout.collect import concat, empty_rollout, generate, sampling_params, score, select, step_reward_pairs
from tinyr1.rollout.policy_copy import SamplingCopy
from tinyr1.training.batching import group_micro_batches, micro_batches
from tinyr1.training.forward import (
    packed_sequence_logprobs,
    reference_logprobs,
    response_start,
    sequence_logprobs,
    shared_prompt_logprobs,
    shares_prompts,
)
from tinyr1.training.optim import NonFiniteGuard, build_optimizer
from tinyr1.training.policy import build_policy, frozen_copy, trainable_parameters
from tinyr1.training.precision import resolve_bf16
from tinyr1.training.problems import load_data, take_share
from tinyr1.training.run import State, log_samples, policy_run
from tinyr1.types import Rollout

# ----------------------------------------------------------------------------- 3. advantages


def process_token_advantages(rollout: Rollout, job: TrainJob, step_fn, tokenizer) -> torch.Tensor:
    """Per-token advantages (N, T) from step rewards (DeepSeekMath process supervision).

    Each response's steps (`reward.step_mode`) get the `reward.process` rule's rewards at their
    last token; the outcome reward (N,) is one more step ending at the last token. All step
    rewards of a group are normalised together; a token's advantage sums the normalised rewards
    of the steps ending at or after it.
    """
    if not rollout.texts:  # a process left without groups (dynamic sampling): nothing to normalise
        return torch.zeros(rollout.input_ids.shape)
    lengths = rollout.response_mask.sum(-1).long().tolist()
    outcome = rollout.rewards.total
    steps = [pairs + [(max(0, lengths[i] - 1), float(outcome[i]))]  # the outcome closes the response
             for i, pairs in enumerate(step_reward_pairs(rollout, step_fn, job.reward.step_mode, tokenizer))]
    n, s, width = len(steps), max(len(x) for x in steps), max(1, max(lengths))
    step_rewards, step_mask, step_end = torch.zeros(n, s), torch.zeros(n, s), torch.zeros(n, s, dtype=torch.long)
    for i, pairs in enumerate(steps):
        for j, (end, r) in enumerate(pairs):
            step_end[i, j], step_rewards[i, j], step_mask[i, j] = end, r, 1.0
    response_mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).float()
    adv = process_advantages(step_rewards, step_mask, step_end, response_mask, rollout.group_size)
    out = torch.zeros(rollout.input_ids.shape)  # back from response positions (N, L) to rows (N, T)
    starts = rollout.response_mask.argmax(-1)
    for i, length in enumerate(lengths):
        out[i, starts[i] : starts[i] + length] = adv[i, :length]
    return out


def outcome(estimator):
    """An outcome estimator `(rewards (N,), group_size, job) -> (N,)`, run on the whole step's batch
    whatever the number of processes, its advantage shared by every token of a response: (N, T).

    Every process's rewards are gathered in rank order, the estimator runs once on all N of them,
    and this process's rows come back. Whole groups live on one process, so the advantages,
    batch-wide statistics included (`scale_rewards: batch`, REINFORCE++ whitening), are exactly
    those of a 1-process run over the same batch.
    """
    def per_token(rollout: Rollout, job: TrainJob, step_fn, tokenizer) -> torch.Tensor:
        parts = D.gather_objects(rollout.rewards.total)
        start = sum(len(p) for p in parts[: D.rank()])
        advantages = estimator(torch.cat(parts), rollout.group_size, job)[start : start + rollout.num_sequences]
        return advantages[:, None] * rollout.response_mask

    return per_token


# The advantage estimator, chosen in this one place: a rollout with rewards -> advantages (N, T).
ADVANTAGES = {
    "grpo": outcome(lambda rewards, g, job: group_advantages(rewards, g, job.grpo.scale_rewards)),
    "rloo": outcome(lambda rewards, g, job: rloo_advantages(rewards, g)),
    "reinforce_pp": outcome(lambda rewards, g, job: reinforce_pp_advantages(rewards, g)),
    "process": process_token_advantages,  # normalised within each group: every process does its own rows
}


# ----------------------------------------------------------------------------- 1-2. rollout and reward


@dataclass
class Collected:
    """Steps 1-2 of a GRPO step: this process's groups, scored, and how collecting them went."""

    rollout: Rollout  # this process's share of the step's B groups (G rows each), with rewards
    equal_share: float  # share of the first round's groups (every process's) whose rewards were all equal
    refills: int  # extra sampling rounds taken by dynamic sampling


def sample_groups(model, tokenizer, problems, job: TrainJob, shots, reward_fns) -> Rollout:
    """G responses to each problem, scored: a Rollout of len(problems) * G rows with rewards."""
    prompts = [render_prompt(p, job.prompt, tokenizer, shots) for p in problems]
    rollout = generate(model, tokenizer, problems, prompts, sampling_params(job.sampling, job.grpo.group_size))
    rollout.rewards = score(rollout, reward_fns)
    return rollout


def collect(model, tokenizer, stream, job: TrainJob, reward_fns, shots) -> Collected:
    """Steps 1-2 (rollout, reward), with DAPO dynamic sampling refilling all-equal groups.

    Under W processes each samples its B / W prompts (`take_share`); refill rounds are taken
    together, while any process still misses groups, so every problem stream stays in step.
    """
    g, b = job.grpo.group_size, job.grpo.batch_size // job.grpo.group_size // D.world_size()
    rollout = sample_groups(model, tokenizer, take_share(stream, b), job, shots, reward_fns)
    equal_share = equal_reward_group_share(D.gather(rollout.rewards.total), g)
    refills = 0
    while job.grpo.dynamic_sampling:
        keep = rollout.rewards.total.view(-1, g).std(-1) > 0
        rollout = select(rollout, [i for i in range(rollout.num_sequences) if keep[i // g]])
        missing = max(0, b - rollout.num_sequences // g)
        if D.all_reduce_max(missing) == 0 or refills == job.grpo.max_refills:
            break
        problems = take_share(stream, missing)
        if problems:
            rollout = concat(rollout, sample_groups(model, tokenizer, problems, job, shots, reward_fns), tokenizer.pad_token_id)
        refills += 1
    if rollout.num_sequences > b * g:  # a refill can overshoot: train on exactly B groups
        rollout = select(rollout, list(range(b * g)))
    return Collected(rollout, equal_share, refills)


# ----------------------------------------------------------------------------- 4. update


def logprob_passes(model, rollout: Rollout, job: TrainJob):
    """The update's micro-batches of rows and the forward pass for one of them, `(batches, logprobs)`
    where `logprobs(rows, with_entropy) -> (log-probs (n, T), entropies (n, T) or None)`: each
    group's prompt runs once when its G rows share it (`optim.share_prompt`), or rows are packed
    (`optim.padding_free`), or each row runs whole."""
    o = job.optim
    lengths = rollout.attention_mask.sum(-1)
    one_prompt_pass = o.share_prompt and not o.padding_free and not o.gradient_checkpointing and shares_prompts(rollout)
    if one_prompt_pass:
        batches = group_micro_batches(rollout.num_sequences, rollout.group_size, o.micro_batch_size, lengths)
    else:
        batches = micro_batches(rollout.num_sequences, o.micro_batch_size, lengths)

    def logprobs(mb, with_entropy=False):
        ids, att, resp = rollout.input_ids[mb], rollout.attention_mask[mb], rollout.response_mask[mb]
        if one_prompt_pass:  # the prompt pass through the plain module: the DDP wrapper sees one forward per backward
            return shared_prompt_logprobs(model, ids, att, resp, rollout.group_size, o.bf16, with_entropy, prompt_model=D.unwrap(model))
        if o.padding_free:
            return packed_sequence_logprobs(model, ids, att, o.bf16, with_entropy=with_entropy)
        return sequence_logprobs(model, ids, att, o.bf16, with_entropy=with_entropy, start=response_start(resp))

    return batches, logprobs


def groups_with_advantage(rollout: Rollout, advantages: torch.Tensor, mask: torch.Tensor):
    """`grpo.skip_zero_advantage`: the rollout, advantages (N, T) and loss mask (N, T) restricted
    to the groups where some token has a non-zero advantage; at least the first group is kept, so
    that the optimizer still sees gradients (zeros) and every process runs a backward pass."""
    g = rollout.group_size
    keep = [i for i in range(rollout.num_sequences) if advantages[(i // g) * g : (i // g + 1) * g].any()] or list(range(g))
    sub = select(rollout, keep)
    width = sub.input_ids.shape[1]
    return sub, advantages[keep][:, :width], mask[keep][:, :width]


def update(model, ref_model, optimizer, scheduler, rollout: Rollout, advantages: torch.Tensor, job: TrainJob,
           guard: NonFiniteGuard | None = None, step: int = 0) -> dict[str, float]:
    """Step 4: `num_iterations` optimizer steps on the clipped surrogate (+ beta * KL); advantages (N, T).

    `guard` (`optim.on_nonfinite`) sees the rewards, the loss and the gradient norm before each
    optimizer step of training step `step`."""
    g, o = job.grpo, job.optim
    guard = guard or NonFiniteGuard(o.on_nonfinite)
    skipped = guard.skipped
    reward_sum = rollout.rewards.total.sum() if rollout.rewards is not None else None
    mask = rollout.response_mask.clone()
    if g.mask_truncated:
        mask[rollout.truncated] = 0.0
    # Divisors of the whole step, not of one micro-batch or one process: the GLOBAL token and
    # sequence counts, divided by W because DDP averages the W processes' gradients
    # (`distributed.loss_divisor`); then every micro-batch of every process sums to the full-batch loss.
    counts = dict(max_len=job.sampling.max_new_tokens, token_count=D.loss_divisor(mask.sum()),
                  seq_count=D.loss_divisor(int((mask.sum(-1) > 0).sum())))
    stat_tokens = counts["token_count"]  # the tokens that per-token statistics (entropy, clipping) average over
    if g.skip_zero_advantage:  # rows without advantage add nothing (beta 0, ratio 1): skip their passes, same divisors
        rollout, advantages, mask = groups_with_advantage(rollout, advantages, mask)
        stat_tokens = D.loss_divisor(mask.sum())
    batches, logprobs = logprob_passes(model, rollout, job)
    ref = reference_logprobs(model, ref_model, rollout, o.micro_batch_size, o.bf16) if g.beta > 0 else None
    old = None
    if g.num_iterations > 1:  # the policy moves between iterations: freeze the rollout policy's log-probs
        model.eval()
        with torch.no_grad():
            old = torch.zeros(rollout.input_ids.shape)
            for mb in batches:
                old[mb] = logprobs(mb)[0].cpu()
    params = trainable_parameters(model)
    stats: dict[str, float] = {}
    model.train()
    diff_sum, diff_count = 0.0, 0.0
    for it in range(g.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        it_loss = 0.0
        for mb in D.sync_last(model, batches):  # gradients all-reduced once, in the last micro-batch's backward
            logp, entropy = logprobs(mb, with_entropy=True)
            logp, m = logp.cpu(), mask[mb]
            old_mb = old[mb] if old is not None else logp.detach()
            loss, pstats = policy_loss(logp, old_mb, advantages[mb], m, g.clip_low, g.clip_high, g.loss_aggregation, **counts)
            kl_tok = kl_penalty(logp, ref[mb], g.kl_estimator) if ref is not None else torch.zeros_like(logp)
            total = loss + g.beta * aggregate(kl_tok, m, g.loss_aggregation, **counts)
            D.backward(total)
            it_loss += total.item()
            if it == 0 and rollout.sampler_logprobs is not None:  # sampler vs trainer, before any step
                r = rollout.response_mask[mb]
                diff_sum += float(((logp.detach() - rollout.sampler_logprobs[mb]).abs() * r).sum())
                diff_count += float(r.sum())
            share = float(m.sum() / stat_tokens)  # weigh per-micro-batch stats by their tokens
            for k, v in {**pstats, "kl": masked_mean(kl_tok, m).item(), "entropy": masked_mean(entropy.cpu(), m).item()}.items():
                stats[k] = stats.get(k, 0.0) + share * float(v) / g.num_iterations
            stats["policy"] = stats.get("policy", 0.0) + loss.item() / g.num_iterations
        grad_norm = D.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"))
        if guard.allows(step, {"reward/total": reward_sum, "loss/policy": it_loss}, grad_norm):  # optim.on_nonfinite
            optimizer.step()
            guard.check_weights(step, params)
    scheduler.step()
    model.eval()
    stats = D.reduce_dict(stats, "mean")  # each process's share (divided by global / W): their mean is the batch's
    out = {f"loss/{k}": v for k, v in stats.items()} | {"loss/grad_norm": float(grad_norm), "optim/lr": scheduler.get_last_lr()[0],
                                                         "optim/skipped": guard.skipped - skipped}
    diff = D.reduce_dict({"sum": diff_sum, "count": diff_count}, "sum")  # every process's tokens
    if diff["count"]:  # mean |log p_trainer - log p_sampler| over response tokens (bf16 copy vs float32 master)
        out["rollout/logprob_diff"] = diff["sum"] / diff["count"]
    return out


# ----------------------------------------------------------------------------- the loop


def train(job: TrainJob, run_dir: Path, resume: bool = False, rewards: dict | None = None) -> dict:
    """Run GRPO for `job.run.steps` steps in `run_dir`; returns the summary written to summary.json.
    `rewards`: callables for `module:function` names of `reward.weights`, handed in from Python."""
    # setup: data and rewards first (fail fast on bad input), then the model
    reward_fns = build_reward_fns(job.reward.weights, job.prompt.style, job.grading.fallback, job.grading.timeout,
                                  device=job.model.device, dtype=job.sampling.dtype, given=rewards)  # orm:<folder> loads here
    step_fn = build_process_reward(job.reward.process, job.model.device, job.sampling.dtype,
                                   outcome=outcome_weight(job.reward.weights))  # a rule (capped), a PRM, or None
    data = load_data(job)
    job = resolve_bf16(job)  # optim.bf16=auto: bfloat16 autocast only where the hardware has it
    model, tokenizer = build_policy(job)
    ref_model = frozen_copy(model) if job.grpo.beta > 0 and job.lora.rank == 0 else None
    sampler = SamplingCopy(model, job.model, job.sampling.dtype, job.sampling.engine, job.sampling.vllm_memory_gib)  # rollouts and evals run on a merged copy
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    model, optimizer = D.prepare(model, optimizer)  # DDP (or the accelerate config's engine) under several processes
    run = policy_run(job, run_dir, resume, State(model, tokenizer, optimizer, scheduler, data.stream), data, sampler)
    guard = NonFiniteGuard(job.optim.on_nonfinite)  # NaN / inf rewards, losses, gradient norms (optim.on_nonfinite)
    for step in run.steps():
        t_step = time.perf_counter()
        # 1. rollout and 2. reward (dynamic sampling interleaves them); each process its share of the prompts
        batch = collect(sampler.refresh(D.unwrap(model)), tokenizer, data.stream, job, reward_fns, data.shots)
        rollout, rewards = batch.rollout, batch.rollout.rewards
        t_rollout = time.perf_counter() - t_step - rewards.seconds
        everyone = D.gather(rewards.total)  # the step's rewards (N,) on every process, in rank order
        if not len(everyone):  # every group had equal rewards even after refills: nothing to learn from
            run.end_step(step, {"reward/total": 0.0, "reward/equal_groups": batch.equal_share})
            continue
        # 3. advantages (N, T): relative to the other samples of the prompt (every process takes part:
        #    the outcome estimators gather the whole batch's rewards)
        advantages = ADVANTAGES[job.grpo.advantage](rollout, job, step_fn, tokenizer)
        # a process may be left without groups (dynamic sampling) while others have some: it still
        # takes part in the update, with one empty row that carries no gradient
        empty = not rollout.texts
        if empty:
            rollout = empty_rollout(tokenizer.pad_token_id)
            advantages = torch.zeros(rollout.input_ids.shape)
        # 4. update
        t_update = time.perf_counter()
        metrics = update(model, ref_model, optimizer, scheduler, rollout, advantages, job, guard, step)
        # 5. log: statistics of the whole step, over every process's rows
        lengths = D.gather(torch.zeros(0) if empty else rollout.response_mask.sum(-1))
        truncated = D.gather(torch.zeros(0, dtype=torch.bool) if empty else rollout.truncated)
        self_check = D.gather(torch.tensor([has_self_check(t) for t in ([] if empty else rollout.texts)], dtype=torch.float32))
        parts = {k: D.gather(v) for k, v in rewards.parts.items()}
        metrics |= {f"reward/{k}": v.mean().item() for k, v in parts.items()}
        metrics |= {
            "reward/total": everyone.mean().item(), "reward/std": everyone.std().item() if len(everyone) > 1 else 0.0,
            "reward/equal_groups": batch.equal_share, "rollout/response_length": lengths.mean().item(),
            "rollout/truncated": truncated.float().mean().item(), "rollout/self_check": self_check.mean().item(),
            "rollout/refills": batch.refills,
            "rollout/tokens": int(lengths.sum()),
        }
        metrics |= D.reduce_dict({"timing/rollout": t_rollout, "timing/reward": rewards.seconds,
                                  "timing/update": time.perf_counter() - t_update, "timing/step": time.perf_counter() - t_step},
                                 "max")  # the slowest process sets the pace
        if "correctness" in parts:
            metrics["reward/accuracy"] = parts["correctness"].mean().item()
        if not empty:
            first = advantages.gather(1, rollout.response_mask.argmax(-1, keepdim=True))[:, 0]  # each response's first token
            log_samples(run_dir, step, rollout, first, job.run.log_samples)
        run.end_step(step, metrics)
    return run.finish()
