"""The grader under fuzzing: a seeded few thousand hostile responses (unicode, 1 MB strings, 500-deep
\\frac nesting, towers of exponents, 10,000-digit numbers, null bytes, unbalanced braces,
thousands of \\boxed{}, random LaTeX) are graded within their deadline, none crashes, and all
count as wrong against a reference none of them states. `tinyr1 grade` takes the same lines."""

from __future__ import annotations

import json
import random
import time

import pytest

from tinyr1.cli import main
from tinyr1.rewards.answers import grade

REFERENCE = "271828"  # no generator below writes it as a whole answer
TIMEOUT = 2.0  # seconds allowed per math-verify check


def fuzzed_responses(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    soup = ["\\frac", "{", "}", "^", "_", "\\sqrt", "x", "1", "7", "=", "\\infty", "\\pi", "(", ")", "[", "]", ",", "\\cdot",
            "e", "i", "\\log", "-", "+", "!", "\\%", "\\{", "\\}", "\\text{", "\\left(", "\\right)", "0.5", "/", "\\boxed{"]

    def text() -> str:  # any character of the first planes but surrogates (a str cannot reach a file with those)
        return "".join(c for c in (chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(1, 300))) if not 0xD800 <= ord(c) <= 0xDFFF)

    def digits(k: int) -> str:
        return str(rng.randrange(1, 10)) + "".join(rng.choice("0123456789") for _ in range(k - 1))

    makers = [
        text,
        lambda: "\\boxed{" + text() + "}",
        lambda: "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}",  # 500-deep nesting
        lambda: "\\boxed{" + "".join(f"{rng.randrange(2, 10)}^{{" for _ in range(rng.randrange(3, 8))) + "9" + "}" * 7 + "}",
        lambda: "\\boxed{" + "**".join(str(rng.randrange(2, 99)) for _ in range(rng.randrange(3, 6))) + "}",  # 2**3**4
        lambda: "\\boxed{" + digits(10_000) + "}",  # a 10,000-digit number
        lambda: "so the answer is " + digits(10_000),  # ... found by the fallback
        lambda: "\x00" * rng.randrange(1, 5) + "\\boxed{4\x002}\x00" + text(),  # null bytes
        lambda: "\\boxed{" * rng.randrange(1, 50) + "1" + "}" * rng.randrange(0, 50),  # unbalanced braces
        lambda: "".join(f"\\boxed{{{rng.randrange(100)}}}" for _ in range(rng.randrange(100, 3000))),  # many \boxed{}
        lambda: "\\boxed{" + "".join(rng.choice(soup) for _ in range(rng.randrange(1, 25))) + "}",  # LaTeX soup
        lambda: "<answer>" + text() + "</answer> #### " + text(),
    ]
    responses = [makers[i % len(makers)]() for i in range(n)]
    for i in range(0, n, 500):
        responses[i] = rng.choice("y1{\\") * 1_000_000  # 1 MB strings
    return responses


@pytest.mark.timeout(600)
def test_thousands_of_fuzzed_responses_grade_wrong_in_time_without_crashing():
    responses = fuzzed_responses(3000)
    worst, t0 = 0.0, time.monotonic()
    for style in ("boxed", "gsm8k", "r1"):
        for r in responses[:: 1 if style == "boxed" else 7]:
            start = time.monotonic()
            verdict = grade(r, REFERENCE, style=style, timeout=TIMEOUT)
            worst = max(worst, time.monotonic() - start)
            assert not verdict.correct, (style, r[:200])
    assert worst < TIMEOUT + 5.0  # the deadline, plus a math-verify worker restart after a kill
    assert time.monotonic() - t0 < 300


def test_tinyr1_grade_takes_fuzzed_lines(tmp_path, capsys):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps({"response": r, "answer": REFERENCE}) + "\n" for r in fuzzed_responses(240, seed=1)))
    assert main(["grade", str(path), "--timeout", str(TIMEOUT)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 240 and summary["correct"] == 0
    lines = (tmp_path / "fuzz.graded.jsonl").read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: U+2028 is text
    assert len(lines) == 240 and not any(json.loads(line)["correct"] for line in lines)
