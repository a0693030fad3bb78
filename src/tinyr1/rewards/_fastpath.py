"""Cheap, in-process answer checks that run before math-verify (see `answers.is_equivalent`).

Three things, all pure string work and microseconds per call:
- `canonical(s)`: a normal form for string equality (`$`, spacing, `\\left`, `\\dfrac` removed).
- `as_number(s)`: the value of a plain-number answer ("1,234", "-0.5", "1e3", "3/4", "\\frac{1}{2}",
  "50\\%", "x = 5", "12 \\text{ cm}", "$18"), or None; `numbers_equal` compares two of them.
- `too_risky(s)`: inputs never handed to sympy (too long, nested too deep, power towers).

    >>> numbers_equal(as_number("\\\\dfrac12"), as_number("0.5"))
    True
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

# Answers longer than this are not math answers; sympy would only waste time on them.
MAX_ANSWER_CHARS = 1000
# Deepest bracket nesting sent to sympy (real answers stay under ~6).
MAX_NESTING = 20
# math-verify compares numbers given as decimals after rounding to this many places.
FLOAT_ROUNDING = 6

_SPACING = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad|\\displaystyle|\\left|\\right")
_SPACE = re.compile(r"\s+")
# Trailing units: "\text{ cm}", "\mbox{dollars}^2", "^\circ", or a plain word ("18 dollars").
# Two letters at least, so constants stay: "3\mathrm{i}", "2 e"; and "2 pi" is not 2.
_UNIT = re.compile(
    r"(?:\s*\\(?:text|mbox|mathrm|textrm|textbf)\{\s*[A-Za-z]{2,}[A-Za-z .]*\}(?:\^\{?\d\}?)?"
    r"|\s*\^\{?\\circ\}?|\s+(?!(?:pi|inf|infty|infinity|sqrt)\b)[A-Za-z]{2,}(?:\^\{?\d\}?)?)$"
)
# A single variable being assigned: "x = 5", "y_1=5".
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=")
_INT = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
# A decimal, with an optional exponent of at most 3 digits ("1e3", "2.5E-4"; "1e999999" stays unparsed).
_DECIMAL = re.compile(rf"(-?)(?:({_INT})(?:\.(\d+))?|\.(\d+))(?:[eE]([+-]?\d{{1,3}}))?")
_FRACTION = re.compile(r"(-?)\\frac(?:\{(-?\d+)\}\{(-?\d+)\}|(\d)(\d))")
_SLASH = re.compile(r"(-?)(\d+)/(\d+)")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_HUGE_EXPONENT = re.compile(r"(?:\^|\*\*)\s*[{(]?\s*-?\d{7,}")


class Number(NamedTuple):
    value: Fraction
    approx: bool  # written as a decimal: compared after rounding, as math-verify does
    percent: bool  # written with a % sign: value is the number before the sign


def clean(s: str) -> str:
    """Strip markup that never changes an answer's value: `$`, LaTeX spacing, `\\left`."""
    s = s.strip().replace("\u2212", "-").replace("\\$", "").replace("$", "")
    s = _SPACING.sub(" ", s).replace("{,}", ",")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.strip().rstrip(".").strip()


def canonical(s: str) -> str:
    """A normal form for exact comparison: `clean` plus all whitespace removed."""
    return _SPACE.sub("", clean(s))


def as_number(s: str) -> Number | None:
    """The value of `s` if it is a plain number (after `clean`), else None."""
    s = clean(s)
    while True:  # "5 \text{ cm}^2" -> "5"
        stripped = _UNIT.sub("", s)
        if stripped == s or not stripped:
            break
        s = stripped
    s = _SPACE.sub("", s)
    percent = s.endswith("%")
    if percent:
        s = s[:-2] if s.endswith("\\%") else s[:-1]
    if s.count("=") == 1 and _ASSIGN.match(s):
        s = s[s.index("=") + 1 :]
    value = _parse_value(s)
    if value is None:
        return None
    return Number(value, approx="." in s, percent=percent)


def _parse_value(s: str) -> Fraction | None:
    m = _DECIMAL.fullmatch(s)
    if m:
        sign, whole, frac, only_frac, exponent = m.groups()
        digits = (whole or "0").replace(",", "") + "." + (frac or only_frac or "0")
        return Fraction(sign + digits) * Fraction(10) ** int(exponent or 0)
    m = _FRACTION.fullmatch(s) or _SLASH.fullmatch(s)
    if m:
        sign, *parts = m.groups()
        num, den = [int(p) for p in parts if p is not None]
        if den == 0:
            return None
        return -Fraction(num, den) if sign else Fraction(num, den)
    return None


def numbers_equal(a: Number | None, b: Number | None) -> bool:
    """Whether two parsed numbers are equal; a percentage matches its number or its value/100.

    `50%` equals `50` and `0.5`; decimals compare after rounding to 6 places (1/3 = 0.333333).
    """
    if a is None or b is None:
        return False
    approx = a.approx or b.approx
    if a.percent == b.percent:
        return _close(a.value, b.value, approx)
    pct, other = (a, b) if a.percent else (b, a)
    return _close(pct.value, other.value, approx) or _close(pct.value / 100, other.value, approx)


def _close(x: Fraction, y: Fraction, approx: bool) -> bool:
    return x == y or (approx and round(x, FLOAT_ROUNDING) == round(y, FLOAT_ROUNDING))


def too_risky(s: str) -> bool:
    """True for answers never sent to sympy: too long, nested too deep, or a power tower."""
    if len(s) > MAX_ANSWER_CHARS or _nesting(s) > MAX_NESTING:
        return True
    if _HUGE_EXPONENT.search(s):
        return True  # 2^{10000000}: an exact integer with millions of digits
    depth = _exponent_depth(s)
    # 9^{9^{9}} has 370 million digits; with a variable (e^{x^2}) sympy keeps it symbolic.
    has_variable = re.search("[A-Za-z]", _LATEX_COMMAND.sub("", s)) is not None
    return depth >= 3 or (depth >= 2 and not has_variable)


def _nesting(s: str) -> int:
    depth = deepest = 0
    for c in s:
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth -= 1
    return deepest


def _exponent_depth(s: str) -> int:
    """How deeply exponents nest: 1 for x^2, 2 for 2^{3^4} or 2**3**4, 3 for 10^{10^{10^{10}}}."""
    groups: list[bool] = []  # one entry per open bracket: does it hold an exponent?
    depth = deepest = chained = 0
    i, n = 0, len(s)
    while i < n:
        if s[i] == "^" or s.startswith("**", i):
            # Powers chain to the right: in 2**3**4 the second ** sits inside the first exponent.
            level = max(depth, chained) + 1
            deepest, chained = max(deepest, level), 0
            i += 1 if s[i] == "^" else 2
            while i < n and s[i] == " ":
                i += 1
            if i < n and s[i] in "{(":
                groups.append(True)
                depth += 1
                i += 1
                continue
            start = i  # a bare exponent ("x^2", "3**4"): skip its token
            while i < n and (s[i].isalnum() or s[i] == "." or (s[i] == "-" and i == start)):
                i += 1
            if s[i:].lstrip().startswith(("^", "**")):
                chained = level
            continue
        if s[i] in "{(":
            groups.append(False)
        elif s[i] in "})" and groups:
            depth -= groups.pop()
        i += 1
    return deepest
