"""Answer extraction and equivalence checking: the rule-based reward.

(Being extended: extraction per answer style, math-verify equivalence with a safe time limit.)
"""

from __future__ import annotations

_BOX_COMMANDS = ("\\boxed", "\\fbox")


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
