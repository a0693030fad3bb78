"""Record types that cross module boundaries, one per stage of the data flow.

    Problem --prompt--> sampler: Samples --collect--> Rollout (+ Rewards) --PPO--> Experience

One shape alphabet everywhere: `B` prompts, `G` samples per prompt, `N = B*G` sequences,
`P` prompt length, `L` response length, `T = P + L` (the longest row), `S` steps. Tensors are
torch tensors on the CPU; this module itself imports no torch (annotations only), so loading
data or grading answers stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Problem:
    """One math problem with its reference answer.

    `answer` is the reference final answer as text (e.g. "72", "\\frac{1}{2}"); `solution` is the
    reference worked solution when the source has one (GSM8K reasoning, MATH solution).
    `meta` carries source-specific fields such as `level`, `subject`, `source`.
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Samples:
    """What a sampling engine returns: `n` responses to each of B prompts, N = B * n, grouped by prompt
    (rows `[i*n, (i+1)*n)` answer prompt i), each cut after its first end-of-turn token."""

    prompt_ids: list[list[int]]  # B token-id lists, no padding
    response_ids: list[list[int]]  # N token-id lists, no padding; end-of-turn token kept when generated
    texts: list[str]  # N decoded responses, special tokens removed
    finished: list[bool]  # N: True if the response ended with an end-of-turn token, False if cut at max_new_tokens
    n: int  # samples per prompt (G)
    logprobs: list[list[float]] | None = None  # N lists aligned with response_ids: log p(token) at temperature 1 (fast engine)

    @property
    def num_tokens(self) -> int:
        return sum(len(r) for r in self.response_ids)


@dataclass
class Rewards:
    """The scores of N responses: each reward function's, and their weighted sum."""

    total: Tensor  # (N,) float: sum over functions of weight x reward
    parts: dict[str, Tensor]  # function name -> (N,) float: its raw (unweighted) reward
    seconds: float = 0.0  # wall time spent scoring


@dataclass
class Rollout:
    """N = B*G responses to B prompts (G per prompt, grouped contiguously), ready for the update.

    Each row is prompt then response, right-padded to T = max over rows of P_i + L_i (no column
    of padding only). Log-probs are aligned with `input_ids`: position t holds
    log p(input_ids[t] | input_ids[:t]), so `response_mask` selects exactly the response tokens'.
    `rollout.collect` builds, scores, selects and concatenates rollouts.
    """

    input_ids: Tensor  # (N, T) long: prompt tokens then response tokens, right-padded
    attention_mask: Tensor  # (N, T) long: 1 on real tokens
    response_mask: Tensor  # (N, T) float: 1 on response tokens
    truncated: Tensor  # (N,) bool: response cut at max_new_tokens (no end-of-turn token)
    problems: list[Problem]  # N: the problem each response answers
    texts: list[str]  # N: decoded responses
    group_size: int  # G
    sampler_logprobs: Tensor | None = None  # (N, T) float or None: log p(token) as the sampling engine computed it
    rewards: Rewards | None = None  # set by `collect.score`

    @property
    def num_sequences(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class Experience:
    """PPO's rollout on response positions: column j of row i is response token j of sequence i.

    Everything the update needs, computed once per rollout before it (`recipes.ppo.make_experience`).
    """

    index: Tensor  # (N, L) long: the column of each response position in the rollout's (N, T) rows
    mask: Tensor  # (N, L) float: 1 on real response tokens
    logprobs: Tensor  # (N, L) float: log-probs under the rollout policy
    values: Tensor  # (N, L) float: the critic's values of the states before each token
    advantages: Tensor  # (N, L) float: GAE (whitened over the batch when asked)
    returns: Tensor  # (N, L) float: advantages + values, the critic's targets
    kl: Tensor  # (N, L) float: per-token k1 estimate of KL to the reference (0 without a KL penalty)
