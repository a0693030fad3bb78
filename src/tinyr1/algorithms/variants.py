"""The one place a variant name (aggregation mode, advantage scale, KL estimator) becomes a function."""

from __future__ import annotations

from collections.abc import Callable


def pick(table: dict[str, Callable], name: str, what: str) -> Callable:
    """`table[name]`; an unknown name raises ValueError listing the allowed ones."""
    try:
        return table[name]
    except KeyError:
        allowed = ", ".join(repr(k) for k in table)
        raise ValueError(f"unknown {what} {name!r}; allowed: {allowed}") from None
