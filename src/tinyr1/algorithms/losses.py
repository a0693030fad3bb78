"""Policy-gradient losses: pure tensor functions from logprobs, advantages and masks to a loss.

Shapes: `N` sequences, `L` response length; masks are float or bool (N, L), 1 on real response
tokens. Every loss returns a scalar and, where useful, a dict of detached float statistics.

- `aggregate`: how per-token losses become one number. "token" divides the masked sum by the
  token count (DAPO, Yu et al. 2025); "sequence" averages each sequence then the sequences
  (original GRPO, Shao et al. 2024); "dr_grpo" divides the masked sum by N * a constant
  generation budget (Dr.GRPO, Liu et al. 2025), so no length bias enters through the divisor.
- `policy_loss`: PPO's clipped surrogate (Schulman et al. 2017) with DAPO's decoupled clip range
  ("clip-higher": `clip_low` below 1, a larger `clip_high` above 1).
- `kl_penalty`: Schulman's k1 / k3 sample estimators of KL(pi || ref), per token.
- `value_loss`: PPO's clipped value loss.

Departures, on purpose:
- Divisors can be passed in (`token_count`, `seq_count`): with gradient accumulation or several
  data-parallel processes, dividing each micro-batch by the GLOBAL count makes the summed
  micro-batch losses (and gradients) exactly the full-batch ones. Peers that average per
  micro-batch weigh a token by the size of the micro-batch it landed in.
- GRPO's KL term is not folded into `policy_loss`: the caller adds
  `beta * aggregate(kl_penalty(...), mask)`, so each term is logged on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tinyr1.algorithms.variants import pick

__all__ = ["aggregate", "kl_penalty", "masked_mean", "policy_loss", "value_loss"]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over the entries where `mask` is 1; 0 (not NaN) when the mask is empty."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


# ----------------------------------------------------------------------------- aggregation


def _token_mean(x, mask, max_len, token_count, seq_count):
    count = mask.sum().clamp(min=1) if token_count is None else token_count
    return (x * mask).sum() / count


def _sequence_mean(x, mask, max_len, token_count, seq_count):
    per_sequence = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_sequence.sum() / (x.shape[0] if seq_count is None else seq_count)


def _dr_grpo_sum(x, mask, max_len, token_count, seq_count):
    if max_len is None:
        raise ValueError("aggregate mode 'dr_grpo' needs max_len (the generation budget)")
    return (x * mask).sum() / ((x.shape[0] if seq_count is None else seq_count) * max_len)


_AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "token": _token_mean,  # DAPO
    "sequence": _sequence_mean,  # original GRPO
    "dr_grpo": _dr_grpo_sum,  # Dr.GRPO
}


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: str = "token",
    *,
    max_len: int | None = None,
    token_count: float | None = None,
    seq_count: float | None = None,
) -> Tensor:
    """Reduce a per-token loss (N, L) under `mask` (N, L) to a scalar.

    mode "token":    sum(x * mask) / token_count            (default: mask.sum() of this call)
    mode "sequence": sum_i [sum_t x_it m_it / sum_t m_it] / seq_count   (default: N)
    mode "dr_grpo":  sum(x * mask) / (seq_count * max_len)  (max_len required, a constant)
    For micro-batches, pass the counts of the whole (global) batch: the micro-batch losses then
    add up to the full-batch loss. Empty masks give 0, never NaN.
    """
    reduce = pick(_AGGREGATIONS, mode, "aggregation mode")
    return reduce(per_token, mask.to(per_token.dtype), max_len, token_count, seq_count)


# ----------------------------------------------------------------------------- policy


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    mode: str = "token",
    *,
    max_len: int | None = None,
    token_count: float | None = None,
    seq_count: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with DAPO's decoupled clip range.

    logprobs, old_logprobs (N, L); advantages (N,) or (N, L); mask (N, L) -> (loss, stats).
        ratio = exp(logprobs - old_logprobs)
        loss_t = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
    aggregated by `mode` and the counts (see `aggregate`). The clipped branch is active (zero
    gradient) when ratio > 1 + clip_high with A > 0, or ratio < 1 - clip_low with A < 0.
    stats (floats over masked tokens): clip_frac_low, clip_frac_high, ratio_mean, approx_kl =
    mean of (r - 1) - log r with r = ratio = pi_new / pi_old: Schulman's k3 estimator of
    KL(pi_old || pi_new), unbiased because the tokens were sampled from pi_old (cleanrl's
    `approx_kl`).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]  # one advantage per sequence, shared by its tokens
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = -torch.minimum(ratio * advantages, clipped_ratio * advantages)
    loss = aggregate(
        per_token, mask, mode, max_len=max_len, token_count=token_count, seq_count=seq_count
    )
    with torch.no_grad():
        low = (ratio < 1.0 - clip_low) & (advantages < 0)
        high = (ratio > 1.0 + clip_high) & (advantages > 0)
        stats = {
            "clip_frac_low": masked_mean(low.float(), mask).item(),
            "clip_frac_high": masked_mean(high.float(), mask).item(),
            "ratio_mean": masked_mean(ratio, mask).item(),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask).item(),
        }
    return loss, stats


# ----------------------------------------------------------------------------- KL penalty


def _k1(log_ratio: Tensor) -> Tensor:
    return log_ratio


def _k3(log_ratio: Tensor) -> Tensor:
    # exp(logref - logp) - (logref - logp) - 1, written with d = logref - logp; >= 0 always.
    d = -log_ratio
    return torch.exp(d) - d - 1


_KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"k1": _k1, "k3": _k3}


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token estimate of KL(pi || ref) from tokens sampled from pi (Schulman 2020).

    logprobs, ref_logprobs (N, L) -> (N, L); aggregate it with `aggregate` and the response mask.
    k1 = logp - logref                            (unbiased, high variance, can be negative)
    k3 = exp(logref - logp) - (logref - logp) - 1 (unbiased, low variance, never negative; GRPO)
    """
    return pick(_KL_ESTIMATORS, estimator, "KL estimator")(logprobs - ref_logprobs)


# ----------------------------------------------------------------------------- value


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float = 0.2,
    mode: str = "token",
    *,
    max_len: int | None = None,
    token_count: float | None = None,
    seq_count: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped value loss.

    values, old_values, returns, mask (N, L) -> (loss, stats).
        loss_t = 0.5 * max((v - R)^2, (clip(v, v_old - clip, v_old + clip) - R)^2)
    aggregated by `mode` and the counts (see `aggregate`). stats: value_clip_frac, the share of
    masked tokens where the clipped branch is strictly larger (its gradient is then zero).
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped - returns) ** 2
    per_token = 0.5 * torch.maximum(unclipped_err, clipped_err)
    loss = aggregate(
        per_token, mask, mode, max_len=max_len, token_count=token_count, seq_count=seq_count
    )
    with torch.no_grad():
        clip_frac = masked_mean((clipped_err > unclipped_err).float(), mask).item()
    return loss, {"value_clip_frac": clip_frac}
