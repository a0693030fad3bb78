"""From problems to a scored `Rollout`: sample -> tensors -> rewards. Used by GRPO, PPO, evaluation
and `rm collect` alike.

    rollout = generate(model, tokenizer, problems, prompts, params)     # N = B * params.n rows, (N, T)
    rollout.rewards = score(rollout, reward_fns)                         # (N,) total and per function
    steps = step_rewards_per_token(rollout, step_fn, "lines", tokenizer) # (N, L) process rewards, PPO

`select` and `concat` keep or join rows (dynamic sampling refills a batch from fresh groups);
both keep the layout a fresh build would have: right padding, no all-padding column.
"""

from __future__ import annotations

import time

import torch

from tinyr1.config import SamplingConfig
from tinyr1.rewards.steps import step_ends
from tinyr1.rollout.sampler import SamplingParams, sample
from tinyr1.types import Problem, Rewards, Rollout


def sampling_params(sampling: SamplingConfig, n: int, temperature: float | None = None) -> SamplingParams:
    """The config's sampling section as the sampler's parameters: `n` per prompt, at the section's
    temperature unless one is given (0 = greedy)."""
    t = sampling.temperature if temperature is None else temperature
    return SamplingParams(sampling.max_new_tokens, t, sampling.top_p, n, sampling.batch_size, sampling.engine)


def generate(model, tokenizer, problems: list[Problem], prompts: list[str], params: SamplingParams,
             progress: bool = False) -> Rollout:
    """`params.n` responses to each of the B prompt texts (prompt i asks problem i): a Rollout of N = B * n rows."""
    n = params.n
    model.eval()
    out = sample(model, tokenizer, prompts, params, progress=progress, names=[p.id for p in problems])
    rows = range(len(out.texts))
    return build_rollout([out.prompt_ids[i // n] for i in rows], out.response_ids, out.finished,
                         [problems[i // n] for i in rows], out.texts, n, tokenizer.pad_token_id, out.logprobs)


def build_rollout(prompt_ids: list[list[int]], response_ids: list[list[int]], finished: list[bool], problems: list[Problem],
                  texts: list[str], group_size: int, pad_id: int, logprobs: list[list[float]] | None = None) -> Rollout:
    """Right-pad prompt+response rows into a `Rollout` (N, T). Every list has one entry per row;
    `logprobs` (the engine's, per response token) land on the response positions."""
    width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
    n = len(prompt_ids)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.float32)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attention[i, : len(p) + len(r)] = 1
        response_mask[i, len(p) : len(p) + len(r)] = 1.0
    truncated = torch.tensor([not f for f in finished], dtype=torch.bool)
    sampler_logprobs = None
    if logprobs is not None:
        sampler_logprobs = torch.zeros(input_ids.shape)
        for i, (p, lp) in enumerate(zip(prompt_ids, logprobs)):
            sampler_logprobs[i, len(p) : len(p) + len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return Rollout(input_ids, attention, response_mask, truncated, problems, texts, group_size, sampler_logprobs)


def empty_rollout(pad_id: int) -> Rollout:
    """One row of a single pad token and no response token (loss and gradient 0): what a process
    left without groups trains on, so that it still joins the step's gradient all-reduce."""
    return build_rollout([[pad_id]], [[]], [True], [], [""], 1, pad_id)


def score(rollout: Rollout, reward_fns) -> Rewards:
    """Each reward function's reward (N,) and their weighted sum; `reward_fns` is `{name: (fn, weight)}`."""
    t0 = time.perf_counter()
    parts = {name: torch.tensor(fn(rollout.problems, rollout.texts), dtype=torch.float32) for name, (fn, _) in reward_fns.items()}
    total = sum(w * parts[name] for name, (_, w) in reward_fns.items())
    return Rewards(total, parts, time.perf_counter() - t0)


def response_ids(rollout: Rollout) -> list[list[int]]:
    """Each row's response token ids (L_i of them), as the sampler produced them."""
    return [ids[mask > 0].tolist() for ids, mask in zip(rollout.input_ids, rollout.response_mask)]


def select(rollout: Rollout, rows: list[int]) -> Rollout:
    """The rollout restricted to `rows` (in that order), trimmed to its longest remaining row."""
    idx = torch.tensor(rows, dtype=torch.long)
    width = max(1, int(rollout.attention_mask[idx].sum(-1).max())) if rows else 1
    cut = lambda x: None if x is None else x[idx, :width]  # noqa: E731
    rewards = None
    if rollout.rewards is not None:
        r = rollout.rewards
        rewards = Rewards(r.total[idx], {k: v[idx] for k, v in r.parts.items()}, r.seconds)
    return Rollout(cut(rollout.input_ids), cut(rollout.attention_mask), cut(rollout.response_mask), rollout.truncated[idx],
                   [rollout.problems[i] for i in rows] if rollout.problems else [], [rollout.texts[i] for i in rows], rollout.group_size,
                   cut(rollout.sampler_logprobs), rewards)


def concat(a: Rollout, b: Rollout, pad_id: int) -> Rollout:
    """The rows of `a` then those of `b`, padded to the longer width; scoring times add up."""
    width = max(a.input_ids.shape[1], b.input_ids.shape[1])

    def cat(x, y, fill):
        if x is None or y is None:
            return None
        pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)  # noqa: E731
        return torch.cat([pad(x), pad(y)])

    rewards = None
    if a.rewards is not None and b.rewards is not None:
        ra, rb = a.rewards, b.rewards
        rewards = Rewards(torch.cat([ra.total, rb.total]), {k: torch.cat([ra.parts[k], rb.parts[k]]) for k in ra.parts},
                          ra.seconds + rb.seconds)
    return Rollout(cat(a.input_ids, b.input_ids, pad_id), cat(a.attention_mask, b.attention_mask, 0),
                   cat(a.response_mask, b.response_mask, 0.0), torch.cat([a.truncated, b.truncated]), a.problems + b.problems,
                   a.texts + b.texts, a.group_size, cat(a.sampler_logprobs, b.sampler_logprobs, 0.0), rewards)


def step_reward_pairs(rollout: Rollout, step_fn, mode: str, tokenizer) -> list[list[tuple[int, float]]]:
    """Per response, `(index of the step's last token in the response, reward)` for each step.

    `step_fn` (a rule of `rewards.process`, or a PRM) scores the steps of each response
    (`mode`: lines, paragraphs, markers); `rewards.steps.step_ends` finds where each step ends
    among the tokens the policy sampled.
    """
    per_step = step_fn(rollout.problems, rollout.texts, mode=mode)
    pairs = []
    for text, ids, rewards in zip(rollout.texts, response_ids(rollout), per_step):
        ends = step_ends(text, tokenizer, mode, token_ids=ids) if ids else []
        pairs.append([(min(e, len(ids) - 1), float(r)) for e, r in zip(ends, rewards)])
    return pairs


def step_rewards_per_token(rollout: Rollout, step_fn, mode: str, tokenizer) -> torch.Tensor:
    """(N, L) response-position rewards, L = the longest response (at least 1): each step's reward
    on its last token (two steps ending on one token add up), 0 elsewhere. PPO adds these to its
    per-token rewards, so GAE credits each step where it ends."""
    lengths = rollout.response_mask.sum(-1).long().tolist()
    out = torch.zeros(len(lengths), max(1, max(lengths, default=1)))
    for i, pairs in enumerate(step_reward_pairs(rollout, step_fn, mode, tokenizer)):
        for end, reward in pairs:
            out[i, end] += reward
    return out
