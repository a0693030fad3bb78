"""Prompt rendering in each answer style, with and without a chat template."""

import pytest

from tinyr1.config import PromptConfig
from tinyr1.data.prompts import INSTRUCTIONS, build_messages, format_response, reasoning_of, render_prompt
from tinyr1.types import Problem

GSM = Problem("g1", "Natalia sold 48 clips in April and half as many in May. How many in all?", "72",
              "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72 clips.\n#### 72")
MATH = Problem("m1", "What is $1/2 + 1/4$?", "\\frac{3}{4}", "We add: $\\frac{1}{2}+\\frac{1}{4}=\\boxed{\\frac{3}{4}}$.")
BARE = Problem("s1", "Calculate 12 + 7.", "19")


def test_reasoning_drops_calculator_notes_and_final_line():
    assert reasoning_of(GSM) == "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips."
    assert reasoning_of(BARE) is None


@pytest.mark.parametrize(
    "problem, style, expected",
    [
        (GSM, "gsm8k", "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72"),
        (GSM, "boxed", "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\nThe final answer is $\\boxed{72}$."),
        (MATH, "boxed", "We add: $\\frac{1}{2}+\\frac{1}{4}=\\boxed{\\frac{3}{4}}$."),
        (BARE, "r1", "<think>\n\n</think>\n<answer>19</answer>"),
        (BARE, "gsm8k", "#### 19"),
    ],
)
def test_format_response_in_each_style(problem, style, expected):
    assert format_response(problem, style) == expected


def test_messages_put_instruction_after_question_and_shots_first():
    msgs = build_messages(BARE, PromptConfig(style="gsm8k", system_prompt="Be brief."), shots=[GSM])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[-1]["content"] == f"Calculate 12 + 7.\n\n{INSTRUCTIONS['gsm8k']}"
    assert msgs[2]["content"].endswith("#### 72")


def test_chat_template_used_when_present_and_plain_text_otherwise(tiny_model):
    _, tok = tiny_model
    chat = render_prompt(BARE, PromptConfig(style="boxed"), tok)
    assert chat.startswith("<|im_start|>user\nCalculate 12 + 7.") and chat.endswith("<|im_start|>assistant\n")
    plain = render_prompt(BARE, PromptConfig(style="boxed", chat_template="none", system_prompt="Hi."), tok)
    assert plain == f"Hi.\n\nQuestion: Calculate 12 + 7.\n\n{INSTRUCTIONS['boxed']}\n\nAnswer:"
