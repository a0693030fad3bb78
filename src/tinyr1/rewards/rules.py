"""Rule-based reward functions: plain callables that know nothing about the trainer.

A reward function takes the problems and the responses (one problem per response) and returns
one float per response:

    >>> from tinyr1.types import Problem
    >>> format_reward([Problem("1", "1+1?", "2")] * 2, ["so \\\\boxed{2}", "it is 2"], style="boxed")
    [1.0, 0.0]

`correctness` is the grader of `tinyr1.rewards.answers` (1 if the extracted answer is
equivalent to the reference); `format` is 1 when the response uses the answer style's markers
(`\\boxed{}`, a `#### ` line, or `<think>...</think><answer>...</answer>`), regardless of whether
the answer is right. New functions go in `REWARDS`; the config names them with a weight
(`reward.weights`), and `rewards/build.py` binds them to the answer style and grading settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tinyr1.rewards.answers import grade_many, last_boxed
from tinyr1.types import Problem

RewardFn = Callable[[list[Problem], list[str]], list[float]]


def correctness(problems: list[Problem], responses: list[str], *, style: str, fallback: bool = True, timeout: float = 5.0) -> list[float]:
    """1.0 where the response's final answer is equivalent to the reference, else 0.0."""
    grades = grade_many(responses, [p.answer for p in problems], style=style, fallback=fallback, timeout=timeout)
    return [1.0 if g.correct else 0.0 for g in grades]


_R1_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.+?</answer>\s*$", re.DOTALL)
_GSM8K_FORMAT = re.compile(r"^####\s*\S+", re.MULTILINE)


def _has_format(response: str, style: str) -> bool:
    if style == "boxed":
        return bool(last_boxed(response))
    if style == "gsm8k":
        return bool(_GSM8K_FORMAT.search(response))
    return bool(_R1_FORMAT.match(response))


def format_reward(problems: list[Problem], responses: list[str], *, style: str, **_: object) -> list[float]:
    """1.0 where the response marks its final answer the way the style asks, else 0.0."""
    return [1.0 if _has_format(r, style) else 0.0 for r in responses]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "correctness": correctness,
    "format": format_reward,
}
