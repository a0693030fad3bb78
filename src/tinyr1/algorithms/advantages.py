"""Advantage estimators: pure tensor functions from rewards (and values) to advantages.

Shapes: `B` prompts, `G` samples per prompt, `N = B*G` sequences grouped contiguously (rows
`[0, G)` are prompt 0's samples, and so on), `L` response length, `S` steps. Masks are float or
bool `(N, L)` (or `(N, S)`), 1 on real entries; everything returned is 0 outside the mask.

- `group_advantages`: GRPO (Shao et al. 2024, DeepSeekMath) outcome supervision, reward minus the
  group mean divided by the group std; `scale="batch"` divides by the batch std instead (as TRL's
  `scale_rewards="batch"`), `scale="none"` does not divide (Dr.GRPO, Liu et al. 2025).
- `rloo_advantages`: RLOO (Ahmadian et al. 2024), reward minus the mean of the other G-1 samples.
- `reinforce_pp_advantages`: REINFORCE++ (Hu 2025) global batch whitening, optionally after a
  group-mean baseline ("REINFORCE++-baseline").
- `gae_loop` / `gae`: PPO's generalised advantage estimation (Schulman et al. 2016), a readable
  reference loop and a vectorised twin (a test proves they agree).
- `whiten`: masked mean/variance normalisation.
- `process_advantages`: DeepSeekMath process supervision (per-step rewards to per-token advantages).

Departures from the papers, on purpose:
- Every std here is the population std (divide by the count, `unbiased=False`), where TRL, verl
  and OpenRLHF call `torch.std` (unbiased, divide by count-1). Reasons: a group of one sample
  then gets advantage 0 instead of NaN, and "normalised" means exactly unit variance over the
  entries normalised. For a fixed G the two differ by the constant factor sqrt((G-1)/G), which
  rescales all advantages alike (it does not move PPO's clip region, only the step size).
- REINFORCE++ folds the KL penalty into the per-token reward; here the KL term stays a separate
  loss (`losses.kl_penalty`), so `reinforce_pp_advantages` only whitens outcome rewards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tinyr1.algorithms.variants import pick

__all__ = [
    "equal_reward_group_share",
    "gae",
    "gae_loop",
    "group_advantages",
    "process_advantages",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "whiten",
]


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    """View rewards (N,) as (B, G), checking that N is a multiple of G."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape (N,), got {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"N={rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def _masked_mean_var(x: Tensor, mask: Tensor, dim=None, reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Masked mean and population variance; an empty mask gives 0 and 0, never NaN.

    `reduce` (default: none) maps each partial sum to its sum over processes before dividing.
    """
    mask = mask.to(x.dtype)
    total = reduce or (lambda t: t)
    count = total(mask.sum(dim, keepdim=dim is not None)).clamp(min=1)
    mean = total((x * mask).sum(dim, keepdim=dim is not None)) / count
    var = total(((x - mean) ** 2 * mask).sum(dim, keepdim=dim is not None)) / count
    return mean, var


# ----------------------------------------------------------------------------- outcome rewards

# Each scale maps the grouped rewards (B, G) and eps to the divisor of the centred rewards.
_SCALES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "group": lambda grouped, eps: grouped.std(dim=1, unbiased=False, keepdim=True) + eps,  # GRPO
    "batch": lambda grouped, eps: grouped.std(unbiased=False) + eps,  # one std for all N
    "none": lambda grouped, eps: grouped.new_ones(()),  # Dr.GRPO: exactly r - mean, no eps
}


def group_advantages(
    rewards: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> Tensor:
    """GRPO outcome advantages: `(r - mean_group(r)) / (std + eps)`.

    rewards (N,), N = B*G grouped contiguously -> advantages (N,).
    `scale`: "group" divides by each group's std (GRPO), "batch" by the std of all N rewards,
    "none" does not divide (Dr.GRPO). The std is the population std (see the module docstring).
    A group whose rewards are all equal gets advantage 0 (0 / (0 + eps)), never NaN.
    """
    divisor = pick(_SCALES, scale, "advantage scale")
    grouped = _groups(rewards, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return (centred / divisor(grouped, eps)).reshape(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO: each reward minus the mean of the other G-1 rewards of its group.

    rewards (N,) -> advantages (N,). Equal to `G/(G-1) * (r - mean_group(r))`; computed from the
    leave-one-out sum directly so the code reads like the definition. Needs G >= 2.
    """
    if group_size < 2:
        raise ValueError(f"RLOO needs at least 2 samples per prompt, got group_size={group_size}")
    grouped = _groups(rewards, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).reshape(-1)


def reinforce_pp_advantages(
    rewards: Tensor,
    group_size: int | None = None,
    mask: Tensor | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """REINFORCE++ advantages: an optional group-mean baseline, then global batch whitening.

    rewards (N,) -> advantages (N,), or (N, L) when `mask` (N, L) is given.
    REINFORCE++ (Hu 2025, arXiv 2501.03262) normalises the advantages over the whole batch,
    `A = (A - mean_batch) / std_batch`; its "baseline" variant first subtracts the group mean
    reward (`group_size` given). With an outcome reward and no discount every token of a response
    shares its sequence's advantage; the paper (and OpenRLHF) then take the batch statistics over
    all tokens, so longer responses weigh more. Pass the response `mask` to get exactly that
    (token-level statistics, (N, L) output); without it the statistics are over the N sequences.
    """
    if group_size is not None:
        grouped = _groups(rewards, group_size)
        rewards = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if mask is None:
        return whiten(rewards, torch.ones_like(rewards), eps=eps)
    return whiten(rewards[:, None].expand(mask.shape), mask, eps=eps)


def equal_reward_group_share(rewards: Tensor, group_size: int) -> float:
    """Share of groups whose G rewards are all equal (they carry no group-relative signal).

    rewards (N,) -> a float in [0, 1]; the number to log as `reward/equal_groups`.
    """
    grouped = _groups(rewards, group_size)
    return (grouped == grouped[:, :1]).all(dim=1).float().mean().item()


# ----------------------------------------------------------------------------- whitening


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8,
           reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Masked whitening: `(x - mean) / sqrt(var + eps)` with statistics over `mask` only.

    x, mask: same shape (e.g. (N, L)) -> same shape, 0 where `mask` is 0 (padding never carries
    a value). Mean and population variance are taken over the masked entries, so masked
    positions do not affect them. `shift_mean=False` adds the mean back: only the spread is
    normalised (the TRL / verl `masked_whiten` semantics). An all-zero mask returns zeros.
    `reduce` sums the statistics' partial sums over processes (e.g. `distributed.all_reduce_sum`)
    when the batch is split across them, so the statistics are the whole batch's.
    """
    mean, var = _masked_mean_var(x, mask, reduce=reduce)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


# ----------------------------------------------------------------------------- GAE


def gae_loop(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Reference GAE, one scalar at a time; `gae` is the fast twin a test holds to this one.

    rewards, values, mask (N, L) -> advantages (N, L), returns (N, L), both 0 outside the mask.
    Walking each row backwards over its real tokens:
        delta_t = r_t + gamma * V_next - V_t           (V_next = 0 after the last real token)
        A_t     = delta_t + gamma * lam * A_next
        R_t     = A_t + V_t
    """
    advantages = torch.zeros_like(values)
    n_rows, length = values.shape
    for i in range(n_rows):
        next_value, next_adv = 0.0, 0.0  # the episode ends after the last real token
        for t in reversed(range(length)):
            if not mask[i, t]:
                continue
            delta = rewards[i, t] + gamma * next_value - values[i, t]
            next_adv = delta + gamma * lam * next_adv
            advantages[i, t] = next_adv
            next_value = values[i, t]
    returns = (advantages + values) * mask.to(values.dtype)
    return advantages, returns


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Vectorised GAE for right-padded responses; same result as `gae_loop`.

    rewards, values, mask (N, L) -> advantages (N, L), returns (N, L), both 0 outside the mask.
    The mask must be right-padded (each row: ones, then zeros), as rollouts produce it; a hole in
    the middle of a row raises ValueError. The backward recursion `A_t = delta_t + c * A_{t+1}`,
    c = gamma*lam, is a reversed discounted cumulative sum of the deltas; it is computed by
    log2(L) doubling steps (Hillis-Steele scan): after the step with shift k, A_t holds
    sum_{j in [t, t+2k)} c^(j-t) delta_j. O(N L log L) work, no Python loop over tokens.
    """
    m = mask.to(values.dtype)
    if bool((m[:, 1:] > m[:, :-1]).any()):
        raise ValueError("gae expects right-padded masks (a row's ones must come first)")
    # V_{t+1}, 0 after the last real token: the episode ends there.
    next_values = torch.nn.functional.pad((values * m)[:, 1:], (0, 1))
    advantages = (rewards + gamma * next_values - values) * m  # deltas, 0 on padding
    c, shift, length = gamma * lam, 1, values.shape[1]
    while shift < length:
        ahead = torch.nn.functional.pad(advantages[:, shift:], (0, shift))
        advantages = advantages + (c**shift) * ahead
        shift *= 2
    return advantages, (advantages + values) * m


# ----------------------------------------------------------------------------- process rewards


def process_advantages(
    step_rewards: Tensor,
    step_mask: Tensor,
    step_end: Tensor,
    response_mask: Tensor,
    group_size: int,
    eps: float = 1e-4,
) -> Tensor:
    """DeepSeekMath process supervision: per-step rewards -> per-token advantages.

    step_rewards (N, S), step_mask (N, S) 1 on real steps, step_end (N, S) int index in [0, L)
    of each step's last token, response_mask (N, L), group_size G -> advantages (N, L).
    1. Normalise all real step rewards of a group together: mean and std over every step of
       every sample in the group (Shao et al. 2024, section 4.1.3).
    2. A token's advantage is the sum of the normalised rewards of the steps ending at or after
       it; tokens after the last step end get 0 (no step covers them).
    """
    n_rows, n_steps = step_rewards.shape
    if n_rows % group_size:
        raise ValueError(f"N={n_rows} rows do not split into groups of {group_size}")
    smask = step_mask.to(step_rewards.dtype)
    # Padded steps may hold anything (even NaN from a reward model): zero them before any sum.
    step_rewards = torch.where(smask.bool(), step_rewards, torch.zeros_like(step_rewards))
    ends = step_end.long()
    length = response_mask.shape[1]
    if bool(((ends < 0) | (ends >= length))[smask.bool()].any()):
        raise ValueError(f"step_end of a real step lies outside [0, {length})")
    # Step 1: statistics over the (G * S) step slots of each group, real steps only.
    grouped = step_rewards.reshape(-1, group_size * n_steps)
    gmask = smask.reshape(grouped.shape)
    mean, var = _masked_mean_var(grouped, gmask, dim=1)
    normed = ((grouped - mean) / (var.sqrt() + eps) * gmask).reshape(n_rows, n_steps)
    # Step 2: drop each step's reward on its last token, then sum from the right (reverse
    # cumsum), so token t collects every step ending at or after t. Padded steps add 0.
    at_end = torch.zeros_like(response_mask, dtype=step_rewards.dtype)
    at_end.scatter_add_(1, ends.clamp(0, length - 1), normed)
    suffix_sums = at_end.flip(1).cumsum(1).flip(1)
    return suffix_sums * response_mask.to(step_rewards.dtype)
