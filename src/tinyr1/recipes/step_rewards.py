"""Per-step rewards placed on sampled tokens: where each step's reward lands in a response.

`reward.process` (a rule of `rewards.process`, or `prm:<folder>`, see `rewards.prm`) scores the
steps of each response (`reward.step_mode`); `rewards.steps.step_ends` finds each step's last
token among the ids the policy sampled. PPO adds these rewards to its per-token rewards, so GAE
credits each step where it ends (the outcome stays on the response's last token):

    steps = step_rewards_per_token(rows, job, tokenizer)       # (N, L)
    rewards = -kl_coef * kl + job.ppo.process_coef * steps      # + outcome at the last token
"""

from __future__ import annotations

import torch

from tinyr1.config import TrainJob


def step_reward_pairs(rows: dict[str, list], job: TrainJob, tokenizer) -> list[list[tuple[int, float]]]:
    """For each of the N responses, `(index of the step's last token in the response, reward)` per step."""
    from tinyr1.rewards.prm import process_reward_fn
    from tinyr1.rewards.steps import step_ends

    mode = job.reward.step_mode
    step_fn = process_reward_fn(job.reward.process, job.model.device, job.sampling.dtype)
    per_step = step_fn(rows["problems"], rows["texts"], mode=mode)
    pairs = []
    for text, ids, rewards in zip(rows["texts"], rows["response_ids"], per_step):
        ends = step_ends(text, tokenizer, mode, token_ids=ids) if ids else []
        pairs.append([(min(e, len(ids) - 1), float(r)) for e, r in zip(ends, rewards)])
    return pairs


def step_rewards_per_token(rows: dict[str, list], job: TrainJob, tokenizer) -> torch.Tensor:
    """(N, L) response-position rewards, L = the longest response (at least 1): each step's reward
    on its last token (two steps ending on one token add up), 0 elsewhere."""
    lengths = [len(ids) for ids in rows["response_ids"]]
    out = torch.zeros(len(lengths), max(1, max(lengths, default=1)))
    for i, pairs in enumerate(step_reward_pairs(rows, job, tokenizer)):
        for end, reward in pairs:
            out[i, end] += reward
    return out
