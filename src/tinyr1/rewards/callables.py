"""Your own reward functions, plain Python callables, adapted in this one place.

Two signatures are accepted (the function's parameter names tell which):

- tinyr1's own: `fn(problems, responses) -> list[float]`, a `Problem` and a response string per row
  (what `rewards.rules` does);
- TRL's `reward_funcs`: `fn(completions, **kwargs) -> list[float | None]`, called with
  `completions` (the responses), `prompts` (the questions), and one list per problem field:
  `answer`, `solution`, `id` and every `meta` key (TRL passes the dataset's columns the same way).
  None (TRL: "not applicable") counts as 0.

Named in a config as `module:function` (`reward.weights: {"my_rewards:brevity": 0.2}`), or handed
in from Python (`tinyr1.train(..., reward_funcs=[brevity])`).

    >>> from tinyr1.types import Problem
    >>> def brevity(completions, **kwargs):
    ...     return [1.0 if len(c) < 10 else None for c in completions]
    >>> as_reward_fn(brevity)([Problem("1", "1+1?", "2")] * 2, ["2", "it is 2, because one and one make two"])
    [1.0, 0.0]
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from tinyr1.errors import UserError
from tinyr1.types import Problem


def is_native(fn: Callable) -> bool:
    """True for `fn(problems, responses)`; False for TRL's `fn(completions, **kwargs)`."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: assume tinyr1's order
        return True
    return "completions" not in params


def as_reward_fn(fn: Callable) -> Callable[[list[Problem], list[str]], list[float]]:
    """`fn` as a tinyr1 reward function `(problems, responses) -> list[float]`."""
    name = getattr(fn, "__qualname__", repr(fn))
    native = is_native(fn)

    def reward(problems: list[Problem], responses: list[str], **_: object) -> list[float]:
        if native:
            out = fn(problems, responses)
        else:
            columns = {"answer": [p.answer for p in problems], "solution": [p.solution for p in problems],
                       "id": [p.id for p in problems]}
            for key in sorted({k for p in problems for k in p.meta}):
                columns.setdefault(key, [p.meta.get(key) for p in problems])
            out = fn(completions=list(responses), prompts=[p.question for p in problems], **columns)
        out = list(out)
        if len(out) != len(responses):
            raise ValueError(f"reward function {name} returned {len(out)} values for {len(responses)} responses")
        return [0.0 if v is None else float(v) for v in out]

    reward.__qualname__ = name
    return reward


def import_function(name: str) -> Callable:
    """The function `module:function` (dotted attributes allowed); `UserError` naming the key otherwise."""
    module, _, attr = name.partition(":")
    key = f"config key 'reward.weights.{name}'"
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{key}: cannot import module {module!r} ({e}); a function defined in a notebook can "
                        "only be passed from Python (tinyr1.train(..., reward_funcs=[fn]))") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"{key}: module {module!r} has no {attr!r}")
    if not callable(obj):
        raise UserError(f"{key}: {name} is not callable")
    return obj
