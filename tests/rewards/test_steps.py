"""Steps of a response: splitting (three modes), character spans, token spans, and the mapping
from re-tokenised text to the token ids the policy actually sampled.

Token spans use the tiny byte-level BPE tokenizer of `tests/conftest.py` (a fast tokenizer, the
class the real model uses). Run: `.venv/bin/python -m pytest tests/rewards/test_steps.py -q`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tinyr1.rewards.steps import MODES, Step, align_indices, split_steps, step_ends, step_token_spans


def texts(text: str, mode: str) -> list[str]:
    return [s.text for s in split_steps(text, mode)]


def assert_spans_are_exact(text: str, steps: list[Step]) -> None:
    """Each step is its slice of the text, stripped, in order, and together they hold every
    non-space character of the text exactly once."""
    covered = []
    for step in steps:
        assert text[step.start : step.end] == step.text
        assert step.text and step.text == step.text.strip()
        covered.extend(range(step.start, step.end))
    assert covered == sorted(set(covered))
    assert {i for i, c in enumerate(text) if not c.isspace()} <= set(covered)


# ----------------------------------------------------------------------------- splitting

SPLIT_CASES = [
    # (text, mode, step texts)
    ("48 / 2 = 24\n48 + 24 = 72", "lines", ["48 / 2 = 24", "48 + 24 = 72"]),
    ("a\n\n\n  b  \n\t\nc\n", "lines", ["a", "b", "c"]),  # empty, indented, whitespace-only lines
    ("a\r\nb\r\n\r\nc", "lines", ["a", "b", "c"]),  # Windows line breaks: no stray \r
    ("a\rb", "lines", ["a", "b"]),  # old Mac line breaks
    ("no newline at the end", "lines", ["no newline at the end"]),
    ("", "lines", []),
    (" \n\t\r\n  ", "lines", []),
    ("café ☕ = 3\n😀👩‍👩‍👧 2+2\n日本語", "lines", ["café ☕ = 3", "😀👩‍👩‍👧 2+2", "日本語"]),  # multi-byte, ZWJ
    ("a\nb\n\nc", "paragraphs", ["a\nb", "c"]),
    ("a\r\nb\r\n\r\nc\r\n", "paragraphs", ["a\r\nb", "c"]),
    ("a\n   \nb", "paragraphs", ["a", "b"]),  # a whitespace-only line separates paragraphs
    ("\n\na\n\n\n\nb\n\n", "paragraphs", ["a", "b"]),
    ("one paragraph", "paragraphs", ["one paragraph"]),
    ("", "paragraphs", []),
    ("Step 1: 48 / 2 = 24\nStep 2: 48 + 24 = 72", "markers", ["Step 1: 48 / 2 = 24", "Step 2: 48 + 24 = 72"]),
    ("Let me think.\nStep 1: a Step 2: b", "markers", ["Let me think.", "Step 1: a", "Step 2: b"]),  # preamble
    ("\n  Step 1. a\nStep 2. b", "markers", ["Step 1. a", "Step 2. b"]),  # blank preamble: no step
    ("**Step 1:** a\n## Step 2: b", "markers", ["**Step 1:** a", "## Step 2: b"]),  # markdown
    ("step 1: a\nSTEP 2: b", "markers", ["step 1: a", "STEP 2: b"]),
    ("Step 1. a as in Step 2. b", "markers", ["Step 1. a as in Step 2. b"]),  # `Step k.` only at a line start
    ("Step 1: the Step 2.5 rule", "markers", ["Step 1: the Step 2.5 rule"]),  # a decimal is no marker
    ("no markers\nat all", "markers", ["no markers\nat all"]),
    ("", "markers", []),
]


@pytest.mark.parametrize("text, mode, expected", SPLIT_CASES)
def test_split_steps_gives_stripped_exact_spans(text, mode, expected):
    steps = split_steps(text, mode)
    assert [s.text for s in steps] == expected
    assert_spans_are_exact(text, steps)


def test_character_offsets_count_code_points_not_bytes():
    text = "😀 é\n日本 x"  # 4-byte, 2-byte and 3-byte characters: one index each
    assert split_steps(text) == [Step("😀 é", 0, 3), Step("日本 x", 4, 8)]


def test_lines_is_the_default_and_unknown_modes_fail_loudly():
    assert set(MODES) == {"lines", "paragraphs", "markers"}
    assert split_steps("a\nb") == split_steps("a\nb", "lines")
    with pytest.raises(ValueError, match="unknown step mode 'sentences'; allowed: lines, paragraphs, markers"):
        split_steps("a", "sentences")


def test_importing_steps_does_not_import_torch():
    code = "import sys, tinyr1.rewards.steps; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- token spans, hand-made offsets


def test_token_belongs_to_the_step_of_its_first_non_space_character():
    text = "ab cd\n ef"  # steps "ab cd" [0, 5) and "ef" [7, 9)
    offsets = [(0, 2), (2, 5), (5, 6), (6, 9)]  # "ab", " cd", "\n", " ef" (leading spaces kept)
    spans = step_token_spans(split_steps(text), offsets)
    assert spans == [(0, 2), (3, 4)]  # the newline token (2) belongs to no step


def test_trimmed_offsets_and_special_tokens():
    text = "ab\ncd"
    # A tokenizer that trims spaces from offsets, plus special tokens with empty offsets.
    offsets = [(0, 0), (0, 2), (2, 3), (3, 5), (0, 0)]
    assert step_token_spans(split_steps(text), offsets) == [(1, 2), (3, 4)]


def test_a_step_swallowed_by_the_previous_token_ends_where_that_token_ends():
    text = "ab\nc\nd"  # a tokenizer that merged "b\nc\n" into one token
    offsets = [(0, 1), (1, 5), (5, 6)]
    spans = step_token_spans(split_steps(text), offsets)
    assert spans == [(0, 2), (2, 2), (2, 3)]  # step "c" owns no token: empty span at 2
    # its last token is token 1, the one that holds it (as step_ends computes it)
    assert [max(stop - 1, 0) for _, stop in spans] == [1, 1, 2]


# ----------------------------------------------------------------------------- the real tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.is_fast
    return tok


TOKEN_TEXTS = [
    "Natalia sold 48/2 = 24 clips in May.\nShe sold 48 + 24 = 72 clips.\n#### 72",
    "a\r\n\r\n  b 3 * 4 = 12\r\nc",  # Windows breaks, blank line, indentation
    "café 😀 ok\n日本語 = 3\n👩‍👩‍👧",  # multi-byte characters split over several byte tokens
    "single line, no newline",
    "Step 1: 3 + 4 = 7 Step 2: 7 * 2 = 14",
]


@pytest.mark.parametrize("text", TOKEN_TEXTS)
@pytest.mark.parametrize("mode", list(MODES))
def test_token_spans_cover_each_step_exactly(tokenizer, text, mode):
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    offsets = enc["offset_mapping"]
    steps = split_steps(text, mode)
    spans = step_token_spans(steps, offsets)
    for step, (first, stop) in zip(steps, spans):
        assert first < stop
        # the span's characters are the step plus at most leading spaces of its first token
        assert text[offsets[first][0] : offsets[stop - 1][1]].strip() == step.text
        assert offsets[stop - 1][1] == step.end  # the last token ends the step
    for i, (a, b) in enumerate(offsets):  # tokens outside every span are whitespace only
        if not any(first <= i < stop for first, stop in spans):
            assert text[a:b].strip() == ""
    assert step_ends(text, tokenizer, mode) == [stop - 1 for _, stop in spans]


def test_multibyte_character_tokens_all_belong_to_their_step(tokenizer):
    text = "x 😀\ny"
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    emoji = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if text[a:b] == "😀"]
    assert len(emoji) == 4  # one byte-level token per UTF-8 byte, all with the same offsets
    (first, stop), _ = step_token_spans(split_steps(text), enc["offset_mapping"])
    assert emoji[-1] == stop - 1 and all(first <= i < stop for i in emoji)


def test_step_ends_of_empty_text_is_empty(tokenizer):
    assert step_ends("", tokenizer) == []
    assert step_ends(" \n ", tokenizer, "paragraphs") == []


def test_step_ends_needs_a_fast_tokenizer():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        step_ends("a\nb", Slow())


# ----------------------------------------------------------------------------- sampled ids


def test_sampled_ids_equal_to_the_retokenisation_map_to_themselves(tokenizer):
    text = TOKEN_TEXTS[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert step_ends(text, tokenizer, token_ids=ids) == step_ends(text, tokenizer)


def test_sampled_ids_that_spell_the_text_differently_map_to_the_same_characters(tokenizer):
    # The policy spelled every character as its own token (the tokenizer would merge " 12" etc.),
    # then ended the turn: decoding gives the same text, but 2-3x as many ids.
    text = "3 * 4 = 12\nso 12 + 1 = 13\nThe answer is 13."
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in text] + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) < len(ids) - 10
    # token i is character i, so each step's last id is its last character
    assert step_ends(text, tokenizer, token_ids=ids) == [s.end - 1 for s in split_steps(text)]


def test_sampled_ids_are_required_when_given():
    class Fast:
        is_fast = True

        def __call__(self, text, **_):
            return {"input_ids": [5, 6], "offset_mapping": [(0, 1), (2, 3)]}

    with pytest.raises(ValueError, match="no tokens"):
        step_ends("a\nb", Fast(), token_ids=[])
    assert step_ends("a\nb", Fast(), token_ids=[5, 6, 0]) == [0, 1]


ALIGN_CASES = [
    # (indices, source, target, expected): comments give the opcodes
    ([0, 1, 2], [1, 2, 3], [1, 2, 3], [0, 1, 2]),  # identical: identity
    ([0, 1, 2], [7, 12, 5], [7, 1, 2, 5], [0, 2, 3]),  # 12 -> 1,2: replace [1,2) by [1,3), last to last
    ([0, 1, 2, 3], [7, 1, 2, 5], [7, 12, 5], [0, 1, 1, 2]),  # 1,2 -> 12: both map onto the merged token
    ([0, 1, 2], [7, 8, 9], [7, 9], [0, 0, 1]),  # 8 deleted: maps to the target token before it
    ([0, 1], [7, 9], [7, 8, 9, 0], [0, 2]),  # inserted tokens (and a trailing eos) are skipped
    ([0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12], [1, 3, 5, 7]),  # all differ: proportional
    ([0], [4], [9], [0]),
]


@pytest.mark.parametrize("indices, source, target, expected", ALIGN_CASES)
def test_align_indices(indices, source, target, expected):
    assert align_indices(indices, source, target) == expected


def test_align_indices_is_monotone_and_in_range():
    source = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    target = [1, 20, 21, 22, 4, 5, 6, 30, 9, 10, 0]
    mapped = align_indices(range(len(source)), source, target)
    assert mapped == sorted(mapped) and all(0 <= j < len(target) for j in mapped)
    assert mapped[0] == 0 and mapped[3:6] == [4, 5, 6] and mapped[8:] == [8, 9]  # agreeing stretches exact
    with pytest.raises(ValueError, match="target_ids is empty"):
        align_indices([0], [1], [])
