"""Answer extraction and equivalence checking: the rule-based reward.

Grading a response is two steps:
1. extract the final answer, by answer style: `boxed` (last `\\boxed{}` / `\\fbox{}`), `gsm8k`
   (the rest of the line after the last `####`) or `r1` (the last `<answer>...</answer>`, unboxed
   if it holds a `\\boxed{}`); with `fallback=True` a response without the style's marker is
   graded on its last number instead;
2. compare it with the reference: cheap in-process checks first (canonical string equality, plain
   numbers: "1,000" = "1000", "1/2" = "0.5", "50\\%" = "50"), then math-verify (LaTeX, sets,
   intervals, units, `x = 5`...) in a child process with a wall-clock deadline.

    >>> grade(r"... so the answer is $\\boxed{\\dfrac{1}{2}}$.", "0.5")
    Grade(correct=True, extracted='\\\\dfrac{1}{2}', method='style')
    >>> grade("#### 1,234", "1234", style="gsm8k").correct
    True
    >>> grade("I think it is 7", "7", fallback=False)
    Grade(correct=False, extracted=None, method=None)

Grading never raises on any response or reference and never hangs: responses over
`MAX_RESPONSE_CHARS`, answers over 1000 characters, brackets nested over 20 deep and numeric power
towers count as wrong without reaching sympy, and math-verify runs under a deadline that works
from any thread or process (see `tinyr1.rewards._verifier`). Only an unknown `style` raises
(ValueError), since that is a programming error, not an input.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from tinyr1.rewards import _fastpath

STYLES = ("boxed", "gsm8k", "r1")
# A response this long is runaway generation; it is graded wrong without reading it.
MAX_RESPONSE_CHARS = 200_000
# math-verify deadlines are capped so a huge or infinite `timeout` cannot block for ever.
MAX_TIMEOUT_S = 600.0

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# The last number: a LaTeX fraction, a/b, 1,234.5, -3, .5; a minus only where it is a sign.
_NUMBER = re.compile(
    r"-?\\[dt]?frac\{-?\d+\}\{-?\d+\}"
    r"|(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![\d.]))?"
    r"|(?<![\w.])-?\.\d+"
)
# Numbers are short, so the last one usually lies in the response's last few hundred characters.
_TAIL_CHARS = 512
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Grade:
    """The verdict on one response."""

    correct: bool
    extracted: str | None  # the final answer taken from the response; None when none was found
    method: str | None  # "style" (found via the style's marker), "fallback" (last number), or None

    @property
    def found(self) -> bool:
        return self.extracted is not None


def last_boxed(text: str) -> str | None:
    """Return the content of the last `\\boxed{...}` / `\\fbox{...}` in `text`, or None.

    Handles nested braces (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`) and the brace-less form
    `\\boxed 5` (content up to the next whitespace or `$`). An unclosed brace returns None.

    >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$ and \\boxed{3}")
    '3'
    >>> last_boxed(r"\\boxed 5$")
    '5'
    """
    start = -1
    cmd_len = 0
    for cmd in _BOX_COMMANDS:
        i = text.rfind(cmd)
        if i > start:
            start, cmd_len = i, len(cmd)
    if start < 0:
        return None
    i = start + cmd_len
    if i < len(text) and text[i] == " ":
        # `\boxed 5`: the argument is the next run of non-space characters.
        rest = text[i + 1 :]
        token = rest.split()[0] if rest.split() else ""
        token = token.split("$")[0]
        return token or None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


# ---------------------------------------------------------------------------------------------
# 1. extraction


def _extract_boxed(text: str) -> str | None:
    return last_boxed(text)


def _extract_gsm8k(text: str) -> str | None:
    i = text.rfind("####")
    if i < 0:
        return None
    return text[i + 4 :].split("\n", 1)[0]


def _extract_r1(text: str) -> str | None:
    start = text.rfind("<answer>")
    if start < 0:
        return None
    end = text.find("</answer>", start)
    if end < 0:
        return None
    content = text[start + len("<answer>") : end]
    boxed = last_boxed(content) if "\\boxed" in content or "\\fbox" in content else None
    return boxed if boxed is not None else content


_EXTRACTORS = {"boxed": _extract_boxed, "gsm8k": _extract_gsm8k, "r1": _extract_r1}


def last_number(text: str) -> str | None:
    """The last number written in `text` (as written: "1,234", "-0.5", "3/4"), or None.

    >>> last_number("3 apples and 1,250.5 pears cost -4 or \\\\frac{1}{2}")
    '\\\\frac{1}{2}'
    """
    # Search only the tail when it holds a number: scanning a whole long response for every grade
    # is wasted work. Numbers contain no whitespace, so starting at a whitespace sees the same
    # matches as a scan from the beginning.
    start = 0
    if len(text) > _TAIL_CHARS:
        space = _WHITESPACE.search(text, len(text) - _TAIL_CHARS)
        start = space.start() if space else 0
    last = None
    for last in _NUMBER.finditer(text, start):
        pass
    if last is None and start > 0:
        for last in _NUMBER.finditer(text, 0, start + 1):
            pass
    return last.group() if last is not None else None


def _check_style(style: str) -> None:
    if not isinstance(style, str) or style not in _EXTRACTORS:
        raise ValueError(f"unknown answer style {style!r}; allowed: {', '.join(STYLES)}")


def extract_answer(response: str, style: str, fallback: bool = True) -> tuple[str | None, str | None]:
    """Return `(answer, method)`: the final answer in `response` and how it was found.

    `method` is "style" (the style's marker), "fallback" (the last number, when the marker is
    missing or empty and `fallback` is on) or None (no answer: `(None, None)`).

    >>> extract_answer("<answer>\\\\boxed{42}</answer>", "r1")
    ('42', 'style')
    >>> extract_answer("so 6 * 7 = 42.", "boxed")
    ('42', 'fallback')
    """
    _check_style(style)
    if not isinstance(response, str) or len(response) > MAX_RESPONSE_CHARS:
        return None, None
    answer = _EXTRACTORS[style](response)
    if answer is not None and answer.strip():
        return answer.strip(), "style"
    if fallback:
        number = last_number(response)
        if number is not None:
            return number, "fallback"
    return None, None


# ---------------------------------------------------------------------------------------------
# 2. equivalence


class _VerdictCache:
    """Thread-safe LRU of math-verify verdicts: a GRPO group repeats the same answers."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._timeouts: OrderedDict[tuple[str, str], float] = OrderedDict()

    def get(self, key: tuple[str, str], timeout: float) -> bool | None:
        with self._lock:
            if key in self._verdicts:
                self._verdicts.move_to_end(key)
                return self._verdicts[key]
            # A pair that ran out of time once will again under the same or a shorter deadline;
            # answering at once avoids paying the deadline plus a worker restart each time.
            if self._timeouts.get(key, -1.0) >= timeout:
                return False
            return None

    def put(self, key: tuple[str, str], verdict: bool | None, timeout: float) -> None:
        table, value = (self._verdicts, verdict) if verdict is not None else (self._timeouts, timeout)
        with self._lock:
            table[key] = value
            table.move_to_end(key)
            if len(table) > self._size:
                table.popitem(last=False)


_CACHE = _VerdictCache()


def is_equivalent(pred: str, reference: str, timeout: float = 5.0) -> bool:
    """Whether the extracted answer `pred` equals `reference`; never raises, never hangs.

    `timeout` bounds the math-verify stage in seconds (<= 0: in-process checks only). Plain
    numbers never reach math-verify; anything it cannot settle in time counts as not equal.

    >>> is_equivalent("1,000", "1000"), is_equivalent("50\\\\%", "0.5"), is_equivalent("3", "4")
    (True, True, False)
    """
    if not isinstance(pred, str) or not isinstance(reference, str):
        return False
    limit = _fastpath.MAX_ANSWER_CHARS
    if len(pred) > limit or len(reference) > limit:
        return False
    try:
        return _is_equivalent(pred, reference, timeout)
    except Exception:  # a bug in a fast path must not crash a training run
        return False


def _is_equivalent(pred: str, reference: str, timeout: float) -> bool:
    canonical_pred = _fastpath.canonical(pred)
    if not canonical_pred:
        return False
    if canonical_pred == _fastpath.canonical(reference):
        return True
    pred_number, ref_number = _fastpath.as_number(pred), _fastpath.as_number(reference)
    if pred_number is not None and ref_number is not None:
        return _fastpath.numbers_equal(pred_number, ref_number)
    if _fastpath.too_risky(pred) or _fastpath.too_risky(reference):
        return False
    timeout = _clamp_timeout(timeout)
    if timeout <= 0:
        return False
    key = (pred, reference)
    cached = _CACHE.get(key, timeout)
    if cached is not None:
        return cached
    from tinyr1.rewards._verifier import VERIFIER  # starts nothing until the first call

    verdict = VERIFIER.check(pred, reference, timeout)
    _CACHE.put(key, verdict, timeout)
    return bool(verdict)


def _clamp_timeout(timeout: float) -> float:
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(timeout):
        return 0.0
    return min(timeout, MAX_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------
# 1 + 2


def grade(
    response: str, reference: str, style: str = "boxed", fallback: bool = True, timeout: float = 5.0
) -> Grade:
    """Extract the answer from `response` by `style` and check it against `reference`.

    Never raises on any response or reference; an unknown `style` raises ValueError.
    """
    answer, method = extract_answer(response, style, fallback)
    if answer is None:
        return Grade(correct=False, extracted=None, method=None)
    return Grade(correct=is_equivalent(answer, reference, timeout), extracted=answer, method=method)


def grade_many(
    responses: list[str],
    references: list[str],
    style: str = "boxed",
    fallback: bool = True,
    timeout: float = 5.0,
) -> list[Grade]:
    """`grade` each response against the reference at the same index; `timeout` is per pair.

    Shape: N responses and N references in, N grades out (lengths must match: ValueError).
    """
    if len(responses) != len(references):
        raise ValueError(f"grade_many got {len(responses)} responses but {len(references)} references")
    _check_style(style)
    return [grade(r, ref, style, fallback, timeout) for r, ref in zip(responses, references)]
