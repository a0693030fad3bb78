"""PPO with a learned value function and GAE, in one loop: rollout -> reward -> advantages -> update -> log.

    tinyr1 train configs/ppo_quickstart.yaml

Each step samples one response for each of `ppo.batch_size` prompts, scores it, and turns the
outcome into per-token rewards: the (weighted) outcome reward on the last response token and,
with `kl_coef > 0`, a per-token penalty -kl_coef * (log pi - log pi_ref) on every token
(Ziegler et al. 2019; Ouyang et al. 2022), and with `reward.process` (a rule or a PRM) each
step's reward x `ppo.process_coef` on the step's last token (process supervision in PPO, as
Math-Shepherd's step-by-step PPO). GAE (gamma, lambda) over the value function's
estimates gives per-token advantages and returns; then `epochs` passes of mini-batches optimise
the clipped policy surrogate plus `vf_coef` x the clipped value loss.

How it departs from the usual RLHF-PPO, on purpose:
- The critic is a value head (one linear layer) on the policy's own last hidden state, so under
  LoRA the adapters are shared by actor and critic and no second model is held
  (`critic: separate` gives the critic its own copy of the backbone instead).
- With LoRA the reference policy is the same model with adapters disabled.
- Losses divide by the rollout's global token count (as in GRPO), so mini-batch splitting does
  not re-weight tokens.
- Early stop: an epoch loop ends once the approx KL to the rollout policy exceeds `early_stop_kl`.
- Under W processes (`tinyr1.distributed`) each process rolls out `batch_size / W` prompts and
  trains on `mini_batch_size / W` rows per mini-batch; advantage whitening, the adaptive KL,
  early stopping and the logged statistics use the whole batch (sums over every process).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from tinyr1 import distributed as D
from tinyr1.algorithms.advantages import gae, whiten
from tinyr1.algorithms.losses import masked_mean, policy_loss, value_loss
from tinyr1.behaviour import has_self_check
from tinyr1.config import TrainJob
from tinyr1.data.prompts import render_prompt
from tinyr1.rewards.build import build_process_reward, build_reward_fns, outcome_weight
from tinyr1.rollout.collect import generate, sampling_params, score, step_rewards_per_token
from tinyr1.rollout.policy_copy import SamplingCopy
from tinyr1.training.batching import micro_batches
from tinyr1.training.forward import policy_and_values, reference_logprobs
from tinyr1.training.optim import NonFiniteGuard, build_optimizer
from tinyr1.training.policy import build_policy, frozen_copy, trainable_parameters
from tinyr1.training.precision import resolve_bf16
from tinyr1.training.problems import load_data, take_share
from tinyr1.training.run import State, log_samples, policy_run
from tinyr1.types import Experience, Rollout


class Critic(torch.nn.Module):
    """V(s_t) from the hidden state that predicts token t; `backbone` None = the policy's own."""

    def __init__(self, hidden_size: int, backbone=None):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # start from V = 0: no bias before any return is seen
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Values (n, W) from the policy's last hidden states (n, W, H), or from its own backbone.

        A module call (not `critic.head(...)` from outside) so that a DDP-wrapped critic
        all-reduces its gradients under several processes.
        """
        if self.backbone is not None:
            hidden = self.backbone(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True).hidden_states[-1]
        return self.head(hidden.float()).squeeze(-1)


def build_critic(model, job: TrainJob) -> Critic:
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    backbone = None
    if job.ppo.critic == "separate":
        backbone = frozen_copy(base)
        backbone.requires_grad_(True)  # trained fully: its own copy of the backbone
        backbone.train()
    return Critic(base.config.hidden_size, backbone).to(next(model.parameters()).device)


def response_index(rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (N, L) of each row's response positions in (N, T), right-padded, and their mask."""
    starts = rollout.response_mask.argmax(-1)
    lengths = rollout.response_mask.sum(-1).long()
    width = max(1, int(lengths.max()))
    idx = (starts[:, None] + torch.arange(width)[None]).clamp(max=rollout.input_ids.shape[1] - 1)
    return idx, (torch.arange(width)[None] < lengths[:, None]).float()


def take(x: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, T) -> (n, L): the response positions of each row, zero past its end."""
    return x.gather(1, idx) * mask


# ----------------------------------------------------------------------------- 3. advantages


def make_experience(model, critic, ref_model, rollout: Rollout, outcome: torch.Tensor, job: TrainJob, kl_coef: float,
                    step_rewards: torch.Tensor | None = None) -> Experience:
    """Step 3: old log-probs and values, per-token rewards, GAE advantages and returns, all (N, L).

    `step_rewards` (N, L): process rewards already on each step's last token
    (`collect.step_rewards_per_token`), added to the per-token rewards with weight `ppo.process_coef`.
    """
    p, o = job.ppo, job.optim
    old_logp = torch.zeros(rollout.input_ids.shape)
    old_values = torch.zeros(rollout.input_ids.shape)
    model.eval()
    with torch.no_grad():
        for mb in micro_batches(rollout.num_sequences, o.micro_batch_size, rollout.attention_mask.sum(-1)):
            old_logp[mb], old_values[mb], _ = policy_and_values(model, critic, rollout.input_ids[mb], rollout.attention_mask[mb], o.bf16)
    idx, mask = response_index(rollout)
    kl = torch.zeros_like(mask)
    if kl_coef > 0:  # k1 per token: log pi - log pi_ref on the sampled tokens
        kl = take(old_logp - reference_logprobs(model, ref_model, rollout, o.micro_batch_size, o.bf16), idx, mask)
    rewards = -kl_coef * kl
    if step_rewards is not None:  # process supervision: each step's reward on the step's last token
        rewards = rewards + p.process_coef * step_rewards * mask
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last)), last] += outcome  # the outcome reward lands on the last response token
    values = take(old_values, idx, mask)
    advantages, returns = gae(rewards, values, mask, p.gamma, p.lam)
    if p.whiten_advantages:  # over the whole batch: statistics summed over every process
        advantages = whiten(advantages, mask, reduce=D.all_reduce_sum)
    return Experience(index=idx, mask=mask, logprobs=take(old_logp, idx, mask), values=values, advantages=advantages,
                      returns=returns, kl=kl)


# ----------------------------------------------------------------------------- 4. update


def update(model, critic, optimizer, scheduler, rollout: Rollout, exp: Experience, job: TrainJob,
           guard: NonFiniteGuard | None = None, step: int = 0) -> dict[str, float]:
    """Step 4: `epochs` passes of shuffled mini-batches on the clipped policy and value losses.

    Under W processes each holds `ppo.batch_size / W` rows and takes mini-batches of
    `ppo.mini_batch_size / W` of them; together they make the global mini-batch. `guard`
    (`optim.on_nonfinite`) sees the rewards, each mini-batch's loss and its gradient norm before
    that mini-batch's optimizer step.
    """
    p, o = job.ppo, job.optim
    guard = guard or NonFiniteGuard(o.on_nonfinite)
    skipped = guard.skipped
    reward_sum = rollout.rewards.total.sum() if rollout.rewards is not None else None
    n = rollout.num_sequences
    params = [*trainable_parameters(model), *critic.parameters()]
    sums: dict[str, float] = {}
    seen, grad_norms, epochs_run = 0.0, [], 0
    model.train()
    for _ in range(p.epochs):
        epoch_kl, epoch_tokens = 0.0, 0.0
        for rows in torch.randperm(n).split(p.mini_batch_size // D.world_size()):
            # each mini-batch loss is a mean over the tokens of the GLOBAL mini-batch, and DDP averages
            # the W processes' gradients: each process divides by global / W (`distributed.loss_divisor`)
            tokens = D.loss_divisor(exp.mask[rows].sum())
            optimizer.zero_grad(set_to_none=True)
            mb_loss = 0.0
            for mb in D.sync_last([model, critic], rows.split(o.micro_batch_size)):  # one all-reduce, in the last backward
                idx, m = exp.index[mb], exp.mask[mb]
                logp, values, entropy = policy_and_values(model, critic, rollout.input_ids[mb], rollout.attention_mask[mb], o.bf16, True)
                logp, values = take(logp, idx, m), take(values, idx, m)
                pl, ps = policy_loss(logp, exp.logprobs[mb], exp.advantages[mb], m, p.clip, p.clip, "token", token_count=tokens)
                vl, vs = value_loss(values, exp.values[mb], exp.returns[mb], m, p.value_clip, "token", token_count=tokens)
                total = pl + p.vf_coef * vl
                D.backward(total)
                mb_loss += total.item()
                k = float(m.sum())
                ent = masked_mean(take(entropy.cpu(), idx, m), m).item()
                for name, v in {**ps, **vs, "entropy": ent}.items():
                    sums[name] = sums.get(name, 0.0) + float(v) * k
                sums["policy"] = sums.get("policy", 0.0) + pl.item() * float(tokens)
                sums["value"] = sums.get("value", 0.0) + vl.item() * float(tokens)
                seen += k
                epoch_kl, epoch_tokens = epoch_kl + ps["approx_kl"] * k, epoch_tokens + k
            grad_norms.append(float(D.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"))))
            if guard.allows(step, {"reward/total": reward_sum, "loss/ppo": mb_loss}, grad_norms[-1]):  # optim.on_nonfinite
                optimizer.step()
                guard.check_weights(step, params)
        epochs_run += 1
        kl = D.reduce_dict({"kl": epoch_kl, "tokens": epoch_tokens}, "sum")  # the whole batch's: every process stops together
        if p.early_stop_kl is not None and kl["kl"] / max(1.0, kl["tokens"]) > p.early_stop_kl:
            break  # the policy moved too far from the rollout policy: stop reusing this rollout
    scheduler.step()
    model.eval()
    sums = D.reduce_dict({**sums, "seen": seen}, "sum")  # token-weighted sums over every process
    seen = sums.pop("seen")
    out = {f"loss/{k}": v / max(1.0, seen) for k, v in sums.items()}
    return out | {"loss/grad_norm": sum(grad_norms) / len(grad_norms), "ppo/epochs_run": epochs_run,
                  "optim/lr": scheduler.get_last_lr()[0], "optim/skipped": guard.skipped - skipped}


def batch_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """`masked_mean` over the whole batch: sums over every process's rows (this process's alone in one)."""
    return (D.all_reduce_sum((x * mask).sum()) / D.all_reduce_sum(mask.sum()).clamp(min=1)).item()


def adapt_kl(coef: float, kl: float, target: float) -> float:
    """Proportional KL controller (Ziegler et al. 2019): move the coefficient towards `target`,
    by at most 2% per step (error clipped to +-0.2, gain 0.1)."""
    error = max(-0.2, min(0.2, kl / target - 1.0))
    return coef * (1.0 + 0.1 * error)


# ----------------------------------------------------------------------------- the loop


def train(job: TrainJob, run_dir: Path, resume: bool = False, rewards: dict | None = None) -> dict:
    """Run PPO for `job.run.steps` steps in `run_dir`; returns the summary written to summary.json.
    `rewards`: callables for `module:function` names of `reward.weights`, handed in from Python."""
    # setup: data and rewards first (fail fast on bad input), then the model and the critic
    reward_fns = build_reward_fns(job.reward.weights, job.prompt.style, job.grading.fallback, job.grading.timeout,
                                  device=job.model.device, dtype=job.sampling.dtype, given=rewards)  # orm:<folder> loads here
    step_fn = build_process_reward(job.reward.process, job.model.device, job.sampling.dtype,
                                   outcome=outcome_weight(job.reward.weights))  # a rule (capped), a PRM, or None
    data = load_data(job)
    job = resolve_bf16(job)  # optim.bf16=auto: bfloat16 autocast only where the hardware has it
    model, tokenizer = build_policy(job)
    critic = build_critic(model, job)
    ref_model = frozen_copy(model) if job.ppo.kl_coef > 0 and job.lora.rank == 0 else None
    sampler = SamplingCopy(model, job.model, job.sampling.dtype, job.sampling.engine, job.sampling.vllm_memory_gib)
    optimizer, scheduler = build_optimizer([*trainable_parameters(model), *critic.parameters()], job.optim, job.run.steps)
    model, critic, optimizer = D.prepare(model, critic, optimizer)  # DDP (or the accelerate config's engine) under several processes
    run = policy_run(job, run_dir, resume, State(model, tokenizer, optimizer, scheduler, data.stream), data, sampler)
    kl_coef = run.extra.get("kl_coef", job.ppo.kl_coef)
    if "critic" in run.extra:
        with D.loading_full(critic):  # under FSDP2 each process keeps its shard of the whole tensors
            D.unwrap(critic).load_state_dict(run.extra["critic"])
    guard = NonFiniteGuard(job.optim.on_nonfinite)  # NaN / inf rewards, losses, gradient norms (optim.on_nonfinite)
    for step in run.steps():
        t_step = time.perf_counter()
        # 1. rollout: one response per prompt, each process its ppo.batch_size / W prompts
        problems = take_share(data.stream, job.ppo.batch_size // D.world_size())
        prompts = [render_prompt(p, job.prompt, tokenizer, data.shots) for p in problems]
        rollout = generate(sampler.refresh(D.unwrap(model)), tokenizer, problems, prompts, sampling_params(job.sampling, 1))
        t_rollout = time.perf_counter() - t_step
        # 2. reward: the outcome of each response, and each step's reward with reward.process
        rollout.rewards = rewards = score(rollout, reward_fns)
        steps = step_rewards_per_token(rollout, step_fn, job.reward.step_mode, tokenizer) if step_fn else None  # (N, L)
        # 3. advantages: per-token rewards (outcome at the end, step rewards at step ends, KL per token) through GAE
        exp = make_experience(model, critic, ref_model, rollout, rewards.total, job, kl_coef, steps)
        if steps is not None:
            rewards.parts["process"] = steps.sum(-1)  # logged as reward/process: each response's summed step rewards
        # 4. update
        t_update = time.perf_counter()
        metrics = update(model, critic, optimizer, scheduler, rollout, exp, job, guard, step)
        lengths = D.gather(exp.mask.sum(-1))  # statistics from here on are the whole batch's, every process's rows
        mean_kl = batch_mean(exp.kl, exp.mask)
        if job.ppo.adaptive_kl and kl_coef > 0:
            kl_coef = adapt_kl(kl_coef, mean_kl * lengths.mean().item(), job.ppo.target_kl)
        # 5. log
        parts = {k: D.gather(v) for k, v in rewards.parts.items()}
        metrics |= {f"reward/{k}": v.mean().item() for k, v in parts.items()}
        metrics |= {
            "reward/total": D.gather(rewards.total).mean().item(), "loss/kl": mean_kl, "ppo/kl_coef": kl_coef,
            "value/mean": batch_mean(exp.values, exp.mask), "rollout/response_length": lengths.mean().item(),
            "rollout/truncated": D.gather(rollout.truncated).float().mean().item(), "rollout/tokens": int(lengths.sum()),
            "rollout/self_check": D.gather(torch.tensor([float(has_self_check(t)) for t in rollout.texts])).mean().item(),
        }
        metrics |= D.reduce_dict({"timing/rollout": t_rollout, "timing/reward": rewards.seconds,
                                  "timing/update": time.perf_counter() - t_update, "timing/step": time.perf_counter() - t_step},
                                 "max")  # the slowest process sets the pace
        if "correctness" in parts:
            metrics["reward/accuracy"] = parts["correctness"].mean().item()
        log_samples(run_dir, step, rollout, exp.advantages[:, 0], job.run.log_samples)
        run.end_step(step, metrics, extra=lambda: {"critic": D.full_state_dict(critic, main_only=True), "kl_coef": kl_coef})
    summary = run.finish()
    critic_weights = D.full_state_dict(critic, main_only=True)  # every process: sharded weights are gathered
    if D.is_main():
        torch.save(critic_weights, run_dir / "final" / "critic.pt")
    return summary
