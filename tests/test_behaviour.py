"""Self-check phrases: the documented list, case-insensitive, whole words only, a share of responses.

Run: .venv/bin/python -m pytest tests/test_behaviour.py -q
"""

from __future__ import annotations

import pytest

from tinyr1.behaviour import has_self_check, self_check_rate


@pytest.mark.parametrize("text", [
    "Wait, that is wrong.", "WAIT. 3 * 4 = 12", "hold on: 48 / 2 = 24", "Let me check: 24 + 48 = 72",
    "Let's check the sum.", "Let’s check it", "let us recheck that", "Check again: 5 + 3 = 8", "I double-check it",
    "double checking the total", "I will recheck.", "re-check: 7", "To verify, 12 / 3 = 4", "Verification: ok",
    "verified", "Let me recalculate.",
])
def test_self_check_phrases_are_found(text):
    assert has_self_check(text)


@pytest.mark.parametrize("text", [
    "The waiting room holds 12.", "a verifiable claim", "48 / 2 = 24\n#### 24", "the checkout line", "", "awaits",
])
def test_other_words_are_not_self_checks(text):
    assert not has_self_check(text)


def test_the_rate_is_a_share_of_responses_not_a_count_of_phrases():
    # 2 of 4 responses hold a phrase; the first holds it three times and still counts once
    assert self_check_rate(["Wait wait wait", "24", "Let me verify: 24", "#### 24"]) == 0.5
    assert self_check_rate([]) == 0.0
