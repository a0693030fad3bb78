"""Equations in free text: find every `a op b = c` a step writes and check it with exact arithmetic.

    >>> [(e.text, e.correct) for e in find_equations("48 / 2 = 24, then 48 + 24 = 73")]
    [('48 / 2 = 24', True), ('48 + 24 = 73', False)]

What counts as an equation. Numbers are integers or decimals (`1,234.5`, `.5`, `$12`), operators
`+ - * / × ÷ x · \\times \\cdot \\div`, with unary minus and parentheses, usual precedence; a
fraction written tight inside spaced division is one number (`25 / 1/3 = 75`). Every `=` compares
the expressions on its two sides (`a + b + c = d`, `<<a*b=c>>`, `12 = 3 * 4`); both sides must be
non-empty and one must hold an operation. In a chain `5 + 3 = 8 + 2 = 10` every `=` is checked,
and a link also holds when the right side's first number is the left's value (running totals). A
result c holds when |value - c| <= 1e-6 * max(1, |c|) or, when c is written with d >= 1 decimals,
when value rounds to it: |value - c| <= 0.5 * 10^-d (`10/3 = 3.33` holds, `7/2 = 3` does not).

Whatever cannot be read with certainty is skipped, never scored: powers (`2**3`), division by
zero, numbers over 30 digits, sides over 64 tokens or 16 nested parentheses, and equations that
touch text they may belong to (`x^2 + 3 = 7`, `2x + 3`, `f(2) + 1`, `1:30 + 2`, `= 7cm`, `10% of
150 = ...`, mixed numbers `1 and 1/3`, a label `Week 2 = 35 + 35`), since reading only the digits
would call a correct step wrong. List bullets (`- 3 + 4 = 7`), markdown emphasis, `$` signs and
an enclosing `( )` are read through. Nothing is evaluated as code: a small recursive-descent
parser over exact `Fraction`s does the arithmetic. On GSM8K's 7,473 training solutions this
checks 24,186 equations and fails 26: 22 are slips in the reference itself or unit switches
(`192*100=$1920`, `2*8 = 24`, `$2.50 - $2.24 = 26 cents`); the other four are clock times
(`0900-0130 = 0730`), a range (`Weeks 1-2 = 96 - 70`), a floor (`13 / 6 = 2 full cycles`) and
`14 / 1 / 4` meant as 14 / (1/4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

__all__ = ["Equation", "agrees", "find_equations", "stated_values", "written_numbers"]

MAX_DIGITS = 30  # per number: real arithmetic never needs more
MAX_TOKENS = 64  # per side of an `=`
MAX_DEPTH = 16  # nested parentheses
REL_TOL = Fraction(1, 10**6)

# One token of the step text, tried in order. `x` is multiplication only between operands
# (`3 x 4`, `3x4`, `0.2 x $5`), never in `2x - 3`; `**` is scanned so that a power makes its
# expression unreadable instead of reading as two products.
_TOKEN = re.compile(
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"|(?P<op>\*\*|[-+*/×÷·⋅∙−–]|\\times|\\cdot|\\div"
    r"|(?:(?<=[\d)])|(?<=[\d)][ \t]))[xX](?=[ \t]?(?:[\d($]|\.\d)))"
    r"|(?P<open>\()|(?P<close>\))|(?P<eq>=)"
    r"|(?P<gap>[^\S\r\n]+|\\?\$)"
    r"|(?P<other>[^\W\d]+|.)",
    re.DOTALL,
)
_SYMBOLS = {"−": "-", "–": "-", "×": "*", "x": "*", "X": "*", "·": "*", "⋅": "*", "∙": "*",
            "\\times": "*", "\\cdot": "*", "÷": "/", "\\div": "/"}  # fmt: skip
# Characters that may stand right before / after an equation; anything else (a letter, `^`, `%`,
# `:` of a time, `_`) means the digits are part of something we do not read.
_OPENERS = '<>["“‘$'
_CLOSERS = '<>]"”’,;?$'
# Text that binds to the number next to the equation, so the equation is not what is written:
# `^ _ \\ %` even across spaces (`x ^ 2 + 3 = 7`), `of` before (`10% of 150 = 75 + 15`), the
# other half of a mixed number after (`4 / 3 = 1 and 1/3`).
_BOUND_BEFORE = re.compile(r"(?:(?<![^\W\d_])of[ \t]+\\?\$?|[\^_\\%][ \t]*)\Z", re.IGNORECASE)
_BOUND_AFTER = re.compile(r"[ \t]+and[ \t]+\(?\$?\d+[ \t]*/[ \t]*\d|[ \t]*[\^_\\%]", re.IGNORECASE)
# A mixed number before (`12 x 1 and 1/4 = 15`); a lone number after a word is a label (`Week 2
# = 35 + 35`), not a result.
_MIXED_BEFORE = re.compile(r"\d[ \t]+and[ \t]+\(?\\?\$?\Z", re.IGNORECASE)
_LABEL = re.compile(r"[^\W\d_][ \t]+\Z")


class _Token(NamedTuple):
    kind: str  # num | op | open | close | eq
    symbol: str  # the operator normalised to + - * / **; else the text as written
    start: int
    end: int


@dataclass(frozen=True)
class Equation:
    """One checked `left = right` link: its text, both values, and the verdict."""

    text: str
    left: Fraction
    right: Fraction
    correct: bool


# ----------------------------------------------------------------------------- 1. scanning


def _runs(text: str) -> list[list[_Token]]:
    """Maximal runs of arithmetic tokens holding an `=`; words and line breaks end a run."""
    runs, current = [], []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "other":
            runs.append(current)
            current = []
        elif kind != "gap":
            current.append(_Token(kind, _SYMBOLS.get(m.group(), m.group()), m.start(), m.end()))
    runs.append(current)
    return [run for run in runs if any(t.kind == "eq" for t in run)]


def _at_line_start(text: str, i: int) -> bool:
    while i > 0 and text[i - 1] in " \t":
        i -= 1
    return i == 0 or text[i - 1] in "\r\n"


def _clean_before(text: str, i: int) -> bool:
    if i > 0 and not (text[i - 1].isspace() or text[i - 1] in _OPENERS):
        return False
    return not _BOUND_BEFORE.search(text, max(0, i - 24), i)


def _clean_after(text: str, i: int) -> bool:
    c = text[i : i + 1]
    if c and not (c.isspace() or c in _CLOSERS or (c in ".:" and not text[i + 1 : i + 2].isdigit())):
        return False
    return not _BOUND_AFTER.match(text, i)


def _trim_left(text: str, seg: list[_Token]) -> list[_Token] | None:
    """The first side of a run without list bullets, emphasis and an unmatched `(`; None when
    its left edge touches text that may belong to it."""
    if not seg:
        return seg
    begin = seg[0].start
    if seg[0].kind == "op":
        glued = text[seg[0].end : seg[0].end + 1] in tuple("0123456789.(")  # touches its operand
        if not glued and text[begin] in "-+*–" and _at_line_start(text, begin):
            seg = seg[1:]  # a list bullet: `- 3 + 4 = 7`
        elif glued and text[begin] == "*":
            seg = seg[1:]  # markdown emphasis: `**3 + 4 = 7**`
        elif not (glued and seg[0].symbol == "-"):  # only a sign may open an expression
            return None
    while seg and seg[0].kind == "open" and _depth(seg) > 0:
        seg = seg[1:]  # `(3 + 4 = 7)`: an aside, not a group
    if len(seg) == 1 and seg[0].kind == "num" and _LABEL.search(text, max(0, begin - 8), begin):
        return None
    if len(seg) > 2 and seg[1].symbol == "/" and _MIXED_BEFORE.search(text, max(0, begin - 24), begin):
        return None
    return seg if _clean_before(text, begin) else None


def _trim_right(text: str, seg: list[_Token]) -> list[_Token] | None:
    """The last side of a run without emphasis and an unmatched `)`; None on an unclean edge."""
    if not seg:
        return seg
    end = seg[-1].end
    if seg[-1].kind == "op":
        if text[seg[-1].start] == "*" and text[seg[-1].start - 1] in "0123456789)":
            seg = seg[:-1]  # markdown emphasis closing `= 7**`
        else:
            return None  # `= 5 +` goes on in words
    while seg and seg[-1].kind == "close" and _depth(seg) < 0:
        seg = seg[:-1]
    return seg if _clean_after(text, end) else None


def _depth(seg: list[_Token]) -> int:
    return sum(t.kind == "open" for t in seg) - sum(t.kind == "close" for t in seg)


def _sides(text: str, run: list[_Token]) -> list[list[_Token] | None]:
    """The run cut at each `=`; None marks a side that touches unreadable text."""
    sides: list[list[_Token] | None] = [[]]
    for tok in run:
        if tok.kind == "eq":
            sides.append([])
        else:
            sides[-1].append(tok)
    # A side too long to evaluate is dropped before trimming, which is quadratic in its length.
    sides = [side if len(side) <= MAX_TOKENS + 4 else None for side in sides]
    sides[0] = sides[0] and _trim_left(text, sides[0])
    sides[-1] = sides[-1] and _trim_right(text, sides[-1])
    return sides


# ----------------------------------------------------------------------------- 2. evaluating


class _Malformed(Exception):
    pass


class _Parser:
    """Recursive descent over one side: expr := term (+|- term)*, term := unary (*|/ unary)*,
    unary := - unary | number | ( expr ). Exact Fractions; anything else is malformed."""

    def __init__(self, text: str, tokens: list[_Token]):
        self.text, self.tokens, self.pos = text, tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos].symbol if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        if self.pos >= len(self.tokens):
            raise _Malformed
        self.pos += 1
        return self.tokens[self.pos - 1]

    def number(self, tok: _Token) -> Fraction:
        return _number(self.text[tok.start : tok.end])[0]

    def fraction_follows(self, i: int) -> bool:
        """Whether tokens i..i+2 are `a/b` written tight, outside a tight chain `a/b/c`: such a
        pair is one number, so `25 / 1/3 = 75` reads as 25 / (1/3), as its writer meant."""
        t = self.tokens

        def tight(j: int) -> bool:  # token j is a `/` touching both neighbours
            inside = 0 < j < len(t) - 1
            return inside and t[j].symbol == "/" and t[j - 1].end == t[j].start == t[j].end - 1 == t[j + 1].start - 1

        return tight(i + 1) and t[i + 2].kind == "num" and not tight(i - 1) and not tight(i + 3)

    def expression(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take().symbol == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self.peek() in ("*", "/"):
            value = value * self.unary(depth) if self.take().symbol == "*" else value / self.unary(depth)
        return value

    def unary(self, depth: int) -> Fraction:
        tok = self.take()
        if tok.symbol == "-":
            return -self.unary(depth)
        if tok.kind == "num":
            value = self.number(tok)
            if self.fraction_follows(self.pos - 1):
                self.pos += 2
                value = value / self.number(self.tokens[self.pos - 1])
            return value
        if tok.kind == "open" and depth < MAX_DEPTH:
            value = self.expression(depth + 1)
            if self.take().kind != "close":
                raise _Malformed
            return value
        raise _Malformed


def _number(written: str) -> tuple[Fraction, int]:
    """Value and number of decimals of a number as written (`1,234.50` -> 1234.5, 2)."""
    plain = written.replace(",", "")
    if len(plain) > MAX_DIGITS + 1:
        raise _Malformed
    return Fraction(plain), len(plain) - plain.index(".") - 1 if "." in plain else 0


def _evaluate(text: str, seg: list[_Token] | None) -> Fraction | None:
    if not seg or len(seg) > MAX_TOKENS:
        return None
    parser = _Parser(text, seg)
    try:
        value = parser.expression(0)
    except (_Malformed, ZeroDivisionError):
        return None
    return value if parser.pos == len(seg) else None


def _bare(text: str, seg: list[_Token]) -> tuple[Fraction, int] | None:
    """(value, decimals) when the side is just a number, possibly negative, else None."""
    sign = 1 if seg[:1] and seg[0].symbol == "-" else 0
    if len(seg) != sign + 1 or seg[sign].kind != "num":
        return None
    value, decimals = _number(text[seg[sign].start : seg[sign].end])
    return (-value if sign else value), decimals


def agrees(value: Fraction, written: Fraction, decimals: int) -> bool:
    """Whether `value` matches the number written as `written` with `decimals` decimals."""
    tolerance = REL_TOL * max(1, abs(written))
    if decimals:
        tolerance = max(tolerance, Fraction(1, 2 * 10**decimals))
    return abs(value - written) <= tolerance


# ----------------------------------------------------------------------------- 3. equations


def _check(text: str, left: list[_Token], right: list[_Token], lv: Fraction, rv: Fraction) -> bool | None:
    """Verdict on `left = right` (values lv, rv), or None when neither side computes anything."""
    left_bare, right_bare = _bare(text, left), _bare(text, right)
    if left_bare and right_bare:
        return None
    if right_bare:
        return agrees(lv, *right_bare)
    if left_bare:
        return agrees(rv, *left_bare)
    if agrees(lv, rv, 0):
        return True
    # Running total `5 + 3 = 8 + 2 = 10`: the right side's first number is the left's result.
    sign = 1 if right[0].symbol == "-" else 0
    head = _bare(text, right[: sign + 1]) if len(right) > sign + 1 and right[sign + 1].kind == "op" else None
    return bool(head) and agrees(lv, *head)


def find_equations(text: str) -> list[Equation]:
    """Every checkable `left = right` link in `text`, in order, with its verdict.

    >>> [(e.text, e.correct) for e in find_equations("so 3 x 4 = 12 and <<12/5=2.5>>, 2x = 4")]
    [('3 x 4 = 12', True), ('12/5=2.5', False)]
    """
    found = []
    for run in _runs(text):
        sides = _sides(text, run)
        values = [_evaluate(text, side) for side in sides]
        for i in range(len(sides) - 1):
            lv, rv = values[i], values[i + 1]
            if lv is None or rv is None:
                continue
            verdict = _check(text, sides[i], sides[i + 1], lv, rv)
            if verdict is not None:
                span = text[sides[i][0].start : sides[i + 1][-1].end]
                found.append(Equation(span, lv, rv, verdict))
    return found


def stated_values(text: str) -> list[tuple[Fraction, int]]:
    """What the text states as results: (value, written decimals) of every readable side right
    after an `=` (`48 / 2 = 24`, `y = 24`, `<<48/2=24>>`)."""
    stated = []
    for run in _runs(text):
        for side in _sides(text, run)[1:]:
            value = _evaluate(text, side)
            if value is not None:
                stated.append((value, (_bare(text, side) or (0, 0))[1]))
    return stated


def written_numbers(text: str) -> list[Fraction]:
    """Every number written in `text`, in order, read as `find_equations` reads them (`1,234.5`,
    `.5`, `$12`; a sign is not part of the number); numbers over 30 digits are skipped.

    >>> written_numbers("Natalia sold 48 clips, then 1,200.5 more for $3.")
    [Fraction(48, 1), Fraction(2401, 2), Fraction(3, 1)]
    """
    out = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "num":
            try:
                out.append(_number(m.group())[0])
            except _Malformed:
                continue
    return out
