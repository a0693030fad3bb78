"""Rule-based reward functions: correctness and format per style, weights bound from config."""

import pytest

from tinyr1.errors import UserError
from tinyr1.rewards.build import build_reward_fns
from tinyr1.rewards.rules import correctness, format_reward
from tinyr1.types import Problem

P = Problem("1", "What is 3 + 4?", "7")


@pytest.mark.parametrize(
    "style, response, fmt, correct",
    [
        ("boxed", "3 + 4 = 7, so \\boxed{7}", 1.0, 1.0),
        ("boxed", "3 + 4 = 7", 0.0, 1.0),  # fallback finds the last number; no format credit
        ("boxed", "\\boxed{8}", 1.0, 0.0),
        ("gsm8k", "3 + 4 = 7\n#### 7", 1.0, 1.0),
        ("gsm8k", "the answer is #### 7", 0.0, 1.0),  # the marker must start a line
        ("r1", "<think>3 + 4 = 7</think>\n<answer>7</answer>", 1.0, 1.0),
        ("r1", "<think>3 + 4</think><answer>6</answer>", 1.0, 0.0),
        ("r1", "<answer>7</answer>", 0.0, 1.0),
        ("r1", "<think>x</think><answer>7</answer> and more text", 0.0, 1.0),
    ],
)
def test_format_and_correctness_per_style(style, response, fmt, correct):
    assert format_reward([P], [response], style=style) == [fmt]
    assert correctness([P], [response], style=style) == [correct]


def test_fallback_off_gives_no_credit_without_the_marker():
    assert correctness([P], ["3 + 4 = 7"], style="boxed", fallback=False) == [0.0]


def test_build_binds_style_and_weights_and_rejects_unknown_names():
    fns = build_reward_fns({"correctness": 2, "format": 0.5}, style="gsm8k")
    assert {k: w for k, (_, w) in fns.items()} == {"correctness": 2.0, "format": 0.5}
    fn, _ = fns["format"]
    assert fn([P, P], ["#### 7", "7"]) == [1.0, 0.0]
    with pytest.raises(UserError, match="config key 'reward.weights.speed': unknown reward function; known: correctness, format"):
        build_reward_fns({"speed": 1.0}, style="boxed")
