"""R1-style behaviour of responses: how often a response checks its own work.

DeepSeek-R1 (2025) reports that RL on outcome rewards grew long responses in which the model
re-examines its steps ("Wait, wait. Wait. That's an aha moment I can flag here"). tinyr1 tracks
three signs of that on every run, so a run shows whether reasoning grew or shrank: the mean
response length and the truncation rate (already logged as `rollout/response_length`,
`rollout/truncated`, `eval/response_length`) and the self-check rate defined here, logged as
`rollout/self_check` (GRPO and PPO rollouts, per step) and `eval/self_check` (held-out evals).

The self-check rate is the share of responses holding at least one of these phrases, matched
case-insensitively as whole words (so "waiting" or "verifiable" do not count):

    wait, hold on, let me check, let's check, let us check (also re-check), check again,
    double-check / double check (checks, checked, checking), recheck / re-check,
    verify / verifies / verified / verifying / verification, recalculate (-s, -d, recalculating)

A share of responses rather than a count per response, so that one response repeating "wait"
fifty times does not dominate a step. It is a crude lexical proxy, unlike the paper's reading of
the transcripts: a "15-minute wait" in a word problem counts too, and a model that checks its
work silently does not.

    >>> has_self_check("12 * 4 = 48. Wait, let me double-check: 12 * 4 = 48.")
    True
    >>> has_self_check("The waiting time is 5 minutes; a verifiable claim.")
    False
    >>> self_check_rate(["Wait, no.", "48 / 2 = 24", "Let's check: 24 + 24 = 48", "#### 4"])
    0.5
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SELF_CHECK = re.compile(
    r"\b(?:wait|hold on|let(?:'s|’s| me| us) (?:re-?)?check|check again"
    r"|double[- ]?check(?:s|ed|ing)?|re-?check(?:s|ed|ing)?"
    r"|verif(?:y|ies|ied|ying|ication)|re-?calculat(?:e|es|ed|ing))\b",
    re.IGNORECASE,
)


def has_self_check(text: str) -> bool:
    """Whether `text` holds a self-check phrase (`SELF_CHECK`)."""
    return SELF_CHECK.search(text) is not None


def self_check_rate(texts: Iterable[str]) -> float:
    """Share of `texts` holding at least one self-check phrase (0.0 for none)."""
    flags = [has_self_check(t) for t in texts]
    return sum(flags) / len(flags) if flags else 0.0
