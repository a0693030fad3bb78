"""Record types that cross module boundaries.

One shape alphabet everywhere: `B` prompts, `G` samples per prompt, `N = B*G` sequences,
`P` prompt length, `L` response length, `T = P + L`, `S` steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
class Rollout:
    """N = B*G responses to B prompts (G per prompt, grouped contiguously), ready for the update.

    Each row is prompt then response, right-padded to T = max over rows of P_i + L_i. Log-probs
    are aligned with `input_ids`: position t holds log p(input_ids[t] | input_ids[:t]), so
    `response_mask` selects exactly the response tokens' log-probs.
    """

    input_ids: Any  # (N, T) long: prompt tokens then response tokens, right-padded
    attention_mask: Any  # (N, T) long: 1 on real tokens
    response_mask: Any  # (N, T) float: 1 on response tokens
    truncated: Any  # (N,) bool: response cut at max_new_tokens (no end-of-turn token)
    problems: list[Problem]  # N: the problem each response answers
    texts: list[str]  # N: decoded responses
    group_size: int  # G
    sampler_logprobs: Any = None  # (N, T) float or None: log p(token) as the sampling engine computed it

    @property
    def num_sequences(self) -> int:
        return self.input_ids.shape[0]
