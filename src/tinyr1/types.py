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
