"""Steps of a response: split the text into reasoning steps and find each step's tokens.

Process supervision scores a response step by step instead of once: Math-Shepherd (Wang et al.
2024) labels each step and reads its PRM's score at a tag token written after the step, and
DeepSeekMath (Shao et al. 2024, section 4.1.3) gives each step's reward to the step's last token,
so that a token's advantage is the sum of the (normalised) rewards of the steps ending at or after
it (`tinyr1.algorithms.advantages.process_advantages`). Both need the same two things, built here;
unlike Math-Shepherd no tag is inserted: the score goes on the step's own last token, so the
sampled response is scored as it is.

1. `split_steps(text, mode)`: the steps, as character spans of the response text.
   `lines` (each non-blank line), `paragraphs` (blocks separated by blank lines), `markers`
   (`Step k:` after any whitespace, `Step k.` at the start of a line, either case, markdown
   such as `**Step 1:**` kept with its step; text before the first marker is a step of its own). Each step is stripped of surrounding whitespace, so
   `text[s.start:s.end] == s.text`, every step starts and ends on a non-space character, and the
   steps cover every non-space character of the text exactly once. Math-Shepherd and PRM800K
   write one step per line, hence the default.
2. `step_token_spans(steps, offsets)`: the token range of each step, from a fast tokenizer's
   character offsets. A token belongs to the step holding its first non-space character (with
   stripped steps that is the first step its character range overlaps); whitespace-only tokens
   (the newline between two lines) belong to no step. `step_ends(text, tokenizer, mode)` returns
   each step's last token index: where a per-step reward or a PRM label goes.

    >>> [s.text for s in split_steps("48 / 2 = 24\\n\\n48 + 24 = 72", "lines")]
    ['48 / 2 = 24', '48 + 24 = 72']
    >>> step_token_spans(split_steps("ab\\ncd"), [(0, 1), (1, 2), (2, 3), (3, 5)])
    [(0, 2), (3, 4)]

Sampled token ids versus the text. In RL the response tokens are the ids the policy sampled;
re-tokenising their decoded text can give other ids (the policy may spell `12` as `1`,`2`, the
decoder may clean up spaces), so offsets of the re-tokenised text do not always index the sampled
ids. `step_ends(..., token_ids=sampled)` therefore aligns the two id sequences with difflib
(`align_indices`): an index inside a stretch where both agree maps exactly, an index inside a
stretch where they differ maps proportionally within that stretch (its last token to the
stretch's last sampled token), and a re-tokenised token missing from the sampled ids maps to the
sampled token just before it. When the ids agree (the usual case) this is the identity; the error
is bounded by the length of the disagreeing stretch, never by the whole response.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = ["MODES", "Step", "align_indices", "split_steps", "step_ends", "step_token_spans"]


@dataclass(frozen=True)
class Step:
    """One reasoning step: `text == response[start:end]` (character offsets, end exclusive)."""

    text: str
    start: int
    end: int


def _stripped(text: str, start: int, end: int) -> Step | None:
    """The step `text[start:end]` without surrounding whitespace, or None if nothing is left."""
    piece = text[start:end]
    core = piece.strip()
    if not core:
        return None
    start += len(piece) - len(piece.lstrip())
    return Step(core, start, start + len(core))


# A line's content (lines end at \r\n, \r or \n), or one line break.
_LINE = re.compile(r"[^\r\n]+")
_LINE_OR_BREAK = re.compile(r"[^\r\n]+|\r\n|\r|\n")
# `Step k.` / `Step k:` at a line start (after indentation and markdown such as `**`, `#`, `-`),
# or `Step k:` after any whitespace; `Step 2.5` is a number, not a marker. A mid-sentence
# "as in step 2." is not split, since a full stop there usually ends the sentence.
_MARKER = re.compile(
    r"(?:^|(?<=[\r\n]))[^\S\r\n]*(?:[#*>_-]+[^\S\r\n]*)?step[^\S\r\n]*\d+[^\S\r\n]*[.:](?!\d)"
    r"|(?<!\S)[#*_]*step[^\S\r\n]*\d+[^\S\r\n]*:",
    re.IGNORECASE,
)


def _split_lines(text: str) -> list[Step]:
    steps = (_stripped(text, m.start(), m.end()) for m in _LINE.finditer(text))
    return [s for s in steps if s is not None]


def _split_paragraphs(text: str) -> list[Step]:
    """Runs of non-blank lines; two line breaks with only whitespace between end a paragraph."""
    paragraphs: list[list[int]] = []
    breaks = 0  # line breaks since the last non-blank line
    for m in _LINE_OR_BREAK.finditer(text):
        if m.group() in ("\r\n", "\r", "\n"):
            breaks += 1
            continue
        line = _stripped(text, m.start(), m.end())
        if line is None:
            continue  # a whitespace-only line: only the breaks around it count
        if paragraphs and breaks < 2:
            paragraphs[-1][1] = line.end
        else:
            paragraphs.append([line.start, line.end])
        breaks = 0
    return [Step(text[s:e], s, e) for s, e in paragraphs]


def _split_markers(text: str) -> list[Step]:
    cuts = [0] + [m.start() for m in _MARKER.finditer(text)] + [len(text)]
    steps = (_stripped(text, a, b) for a, b in zip(cuts, cuts[1:]))
    return [s for s in steps if s is not None]


# The one place a step mode is chosen.
MODES: dict[str, Callable[[str], list[Step]]] = {
    "lines": _split_lines,
    "paragraphs": _split_paragraphs,
    "markers": _split_markers,
}


def split_steps(text: str, mode: str = "lines") -> list[Step]:
    """Split a response into steps (see the module docstring for the three modes).

    Returns S steps in order; S = 0 for empty or whitespace-only text. Unknown `mode`: ValueError.
    """
    try:
        split = MODES[mode]
    except KeyError:
        raise ValueError(f"unknown step mode {mode!r}; allowed: {', '.join(MODES)}") from None
    return split(text)


def step_token_spans(steps: Sequence[Step], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token range `(first, stop)` of each step, `stop` exclusive: the step's tokens are
    `first .. stop-1` and its reward goes on token `stop - 1`.

    steps: S steps from `split_steps` (stripped, in order); offsets: L character ranges, one per
    response token, as a fast tokenizer's `offset_mapping` gives them. A token is owned by the
    first step its range overlaps (= the step of its first non-space character); empty ranges
    (special tokens) and whitespace-only tokens between steps are owned by none. A step that owns
    no token (its text lies inside a token that began in the previous step, possible only when a
    tokenizer merges across a line break) gets the empty span `(k, k)`, k = the previous step's
    stop, so its last token is the previous step's last token: the one that holds its text.
    """
    ends = [s.end for s in steps]
    owned: list[list[int]] = [[] for _ in steps]
    for index, (a, b) in enumerate(offsets):
        if b <= a:
            continue
        k = bisect.bisect_right(ends, a)  # first step ending after the token starts
        if k < len(steps) and steps[k].start < b:
            owned[k].append(index)
    spans, stop = [], 0
    for tokens in owned:
        if tokens:
            spans.append((tokens[0], tokens[-1] + 1))
            stop = tokens[-1] + 1
        else:
            spans.append((stop, stop))
    return spans


def _last_token(span: tuple[int, int]) -> int:
    return max(span[1] - 1, 0)


def align_indices(indices: Sequence[int], source_ids: Sequence[int], target_ids: Sequence[int]) -> list[int]:
    """Map token positions in `source_ids` to positions in `target_ids`, where both tokenise
    (nearly) the same text, e.g. a re-tokenised response and the ids the policy sampled.

    Stretches where the sequences agree map one to one; inside a stretch where they differ,
    source position i maps proportionally (the stretch's last source token to its last target
    token); a source stretch with no target counterpart maps to the target token before it.
    Monotone: sorted indices map to sorted positions in [0, len(target_ids)).

    >>> align_indices([0, 1, 2], [7, 12, 5], [7, 1, 2, 5])
    [0, 2, 3]
    """
    if not target_ids:
        raise ValueError("align_indices: target_ids is empty")
    if list(source_ids) == list(target_ids):
        return list(indices)
    # autojunk=False: frequent tokens (spaces, newlines) are exactly the anchors we want.
    opcodes = SequenceMatcher(None, list(source_ids), list(target_ids), autojunk=False).get_opcodes()
    starts = [op[1] for op in opcodes]
    mapped = []
    for i in indices:
        tag, i1, i2, j1, j2 = opcodes[bisect.bisect_right(starts, i) - 1]
        if tag == "equal":
            j = j1 + (i - i1)
        elif j2 > j1:  # replace: proportional within the stretch
            j = j1 + math.ceil((i - i1 + 1) * (j2 - j1) / (i2 - i1)) - 1
        else:  # delete: the source tokens have no counterpart
            j = j1 - 1
        mapped.append(min(max(j, 0), len(target_ids) - 1))
    return mapped


def step_ends(text: str, tokenizer, mode: str = "lines", token_ids: Sequence[int] | None = None) -> list[int]:
    """Index of each step's last token in the tokenized response: S ints in [0, L).

    `tokenizer` must be a fast (Rust) tokenizer, which gives character offsets. Without
    `token_ids` the indices refer to `tokenizer(text, add_special_tokens=False)`; with
    `token_ids` (the L ids the policy sampled, whose decoded text is `text`; special tokens such as
    a final end-of-turn may be included) they refer to `token_ids`, via `align_indices`.
    Empty text gives []; steps but no tokens raise ValueError.
    """
    steps = split_steps(text, mode)
    if not steps:
        return []
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("step_ends needs a fast tokenizer (one that returns offset_mapping)")
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    if not ids or (token_ids is not None and len(token_ids) == 0):
        raise ValueError("step_ends: the response has steps but no tokens")
    ends = [_last_token(span) for span in step_token_spans(steps, offsets)]
    if token_ids is None:
        return ends
    return align_indices(ends, ids, list(token_ids))
