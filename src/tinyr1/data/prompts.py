"""Prompts: turn a `Problem` into the text a model sees, in one of three answer styles.

Styles (the grader extracts the final answer the same way, see `tinyr1.rewards.answers`):
  - `boxed`: reason step by step, final answer in `\\boxed{}` (MATH's convention);
  - `gsm8k`: reason step by step, final line `#### <answer>` (GSM8K's convention);
  - `r1`:    `<think>...</think>` then `<answer>...</answer>` (DeepSeek-R1's template).

With a chat template (the default when the tokenizer has one) the instruction follows the
question in the user turn, since small instruct models heed the user turn more than the system
turn; few-shot examples are earlier user/assistant turns. Without one, plain text is used.
`format_response` writes a reference solution in a style: few-shot examples and SFT use it.
"""

from __future__ import annotations

import re

from tinyr1.config import PromptConfig
from tinyr1.types import Problem

INSTRUCTIONS = {
    "boxed": "Solve the problem step by step. Put the final answer in \\boxed{}.",
    "gsm8k": "Solve the problem step by step. Write the final answer on the last line as '#### <answer>'.",
    "r1": (
        "First think about the problem inside <think> </think> tags, "
        "then give only the final answer inside <answer> </answer> tags."
    ),
}

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def reasoning_of(problem: Problem) -> str | None:
    """The reference reasoning without its final-answer line (GSM8K `####`, calculator notes)."""
    if not problem.solution:
        return None
    text = _CALCULATOR.sub("", problem.solution)
    if "####" in text:
        text = text[: text.rfind("####")]
    return text.strip() or None


def format_response(problem: Problem, style: str) -> str:
    """A reference response for `problem` written in `style` (for few-shot and SFT targets)."""
    reasoning = reasoning_of(problem)
    if style == "boxed":
        if reasoning and "\\boxed" in reasoning:
            return reasoning  # MATH solutions already box their answer
        return f"{reasoning}\nThe final answer is $\\boxed{{{problem.answer}}}$." if reasoning else f"$\\boxed{{{problem.answer}}}$"
    if style == "gsm8k":
        return f"{reasoning}\n#### {problem.answer}" if reasoning else f"#### {problem.answer}"
    if style == "r1":
        return f"<think>\n{reasoning or ''}\n</think>\n<answer>{problem.answer}</answer>"
    raise ValueError(f"unknown style {style!r}; expected one of {', '.join(INSTRUCTIONS)}")


def build_messages(problem: Problem, cfg: PromptConfig, shots: list[Problem] = ()) -> list[dict[str, str]]:
    """Chat messages: optional system prompt, few-shot turns, then the question + instruction."""
    messages = []
    if cfg.system_prompt:
        messages.append({"role": "system", "content": cfg.system_prompt})
    instruction = cfg.instruction or INSTRUCTIONS[cfg.style]
    for shot in shots:
        messages.append({"role": "user", "content": f"{shot.question}\n\n{instruction}"})
        messages.append({"role": "assistant", "content": format_response(shot, cfg.style)})
    messages.append({"role": "user", "content": f"{problem.question}\n\n{instruction}"})
    return messages


def render_prompt(problem: Problem, cfg: PromptConfig, tokenizer, shots: list[Problem] = ()) -> str:
    """The full prompt text, ending where the model's response starts."""
    messages = build_messages(problem, cfg, shots)
    if cfg.chat_template == "auto" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [m["content"] for m in messages if m["role"] == "system"]
    for m in messages:
        if m["role"] == "user":
            parts.append(f"Question: {m['content']}")
        elif m["role"] == "assistant":
            parts.append(f"Answer: {m['content']}")
    return "\n\n".join(parts) + "\n\nAnswer:"
