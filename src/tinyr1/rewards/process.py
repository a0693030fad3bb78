"""Rule-based process rewards: score each step of a response without a reward model.

Math-Shepherd (Wang et al. 2024) and DeepSeekMath's process supervision (Shao et al. 2024,
section 4.1.3) score every reasoning step with a learned process reward model (PRM). These two
rules need no model, so they serve as a free PRM baseline and as a sanity check of the
per-step plumbing (`steps.step_ends` -> `algorithms.advantages.process_advantages`).

A step is paid only for progress: a NEW correct intermediate value, the first time the response
reaches it. Earlier versions paid every line whose equations held and every restatement of a
reference value, and a policy farmed them (the quickstart policy collapsed to 0% accuracy writing
trivially true equations). The rules, in units where `cap` = 1:

- reference values (GSM8K): the calculator annotations of the reference solution
  (`48/2 = <<48/2=24>>24`) give K distinct intermediate results. A step earns `hit` for each of
  them it states (a number or expression right after an `=`) for the first time in the
  response; a value stated by an earlier step earns nothing again. `hit` defaults to cap / K, so
  stating every reference value earns exactly `cap`; a step that states none earns `miss` (0).
  Without annotations (a synthetic problem) every step misses.
- arithmetic: every equation a step writes is recomputed (`rewards.equations`). A step with a
  wrong equation costs `wrong` (-0.25); a step with at least one correct equation that is new,
  grounded and not an identity earns `correct` (+0.25), once however many it holds; any other
  step `unchecked` (0). An equation is
    new        when its result is not 0, not a number of the question and not a value the response
               stated before (a result after an `=`, in this step or an earlier one);
    grounded   when one of its operands is a number of the question (written in digits, or as a
               word: "three", "twice", "half", "dozen", ...; `GIVEN_WORDS`) or the result of an
               earlier grounded equation, so `1 + 1 = 2` conjured from nothing does not pay, nor
               does a chain built on it (`2 + 1 = 3`, ...); skipped without a problem;
    an identity when its result equals an operand and every other operand is 0 or 1 (`24 * 1 = 24`).
- the cap: a response's step rewards are added up in order and the running total is kept in
  [-cap, cap]; a step pays what it moves the total (`clip(S + r) - S`), so the whole response
  earns between -cap and cap, and a mistake made after the cap is reached still costs.

`rewards.build` binds a rule with `cap` = half the outcome weight w (`reward.weights`'
`correctness`, else the sum of the positive weights; `build.PROCESS_SHARE`), and the per-step
amounts scale with it: a response's step rewards then lie in [-w/2, w/2], never more than the
outcome, and a wrong answer that farms steps (at most w/2) never out-earns a correct one however
sloppy its steps (at least w - w/2). PPO multiplies them again by `ppo.process_coef` (1.0).

How this departs from the papers: their PRMs score each step's correctness in context; these
rules only see arithmetic and the reference's values, and pay each value once.

    >>> arithmetic_step_rewards(["48 / 2 = 24", "48 + 24 = 73", "So she sold 72 clips."])
    [0.25, -0.25, 0.0]
    >>> from tinyr1.types import Problem
    >>> p = Problem("0", "...", "72", solution="48/2 = <<48/2=24>>24\\n48+24 = <<48+24=72>>72\\n#### 72")
    >>> reference_process_reward([p], ["May: 48 / 2 = 24\\nAgain: 24 = 48 / 2\\nTotal: 50"])
    [[0.5, 0.0, 0.0]]

The equations themselves are read by `rewards.equations` (`find_equations`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from tinyr1.rewards.equations import Equation, agrees, find_equations, stated_values, written_numbers
from tinyr1.rewards.steps import Step, split_steps
from tinyr1.types import Problem

__all__ = [
    "PROCESS_REWARDS", "arithmetic_process_reward", "arithmetic_step_rewards", "capped", "reference_process_reward",
    "reference_value_step_rewards", "reference_values",
]  # fmt: skip


# ----------------------------------------------------------------------------- step rewards


def _text(step: Step | str) -> str:
    return step if isinstance(step, str) else step.text


def capped(rewards: Sequence[float], cap: float = 1.0) -> list[float]:
    """Per-step rewards with their running total kept in [-cap, cap]: step k pays
    clip(S_k-1 + r_k) - S_k-1, so the sum is within the cap and a late mistake still costs.

    >>> capped([0.5, 0.5, 0.5, -0.25, 0.5], cap=1.0)
    [0.5, 0.5, 0.0, -0.25, 0.25]
    """
    total, out = 0.0, []
    for r in rewards:
        held = min(cap, max(-cap, total + r))
        out.append(r if held == total + r else held - total)  # exactly r while within the cap
        total = held
    return out


def _known(value: Fraction, values: list[Fraction]) -> bool:
    return any(agrees(value, v, 0) for v in values)


def _operands(eq: Equation) -> list[Fraction]:
    """The numbers an equation computes from: every number written in it but its result."""
    numbers = written_numbers(eq.text)
    if numbers and _known(numbers[-1], [eq.left, eq.right]):
        return numbers[:-1]  # `a op b = c`
    if numbers and _known(numbers[0], [eq.left, eq.right]):
        return numbers[1:]  # `c = a op b`
    return numbers


def _pays(eq: Equation, operands: list[Fraction], given: list[Fraction], seen: list[Fraction], grounded: bool) -> bool:
    """A correct equation that pays: grounded, a new result (not 0, not known), not an identity (`x * 1 = x`)."""
    result = eq.left
    if not grounded or result == 0 or _known(result, given) or _known(result, seen) or _known(eq.right, seen):
        return False  # `48 - 48 = 0` computes nothing; a known value is not progress
    return not any(agrees(result, v, 0) and all(w in (0, 1) for w in operands[:i] + operands[i + 1 :])
                   for i, v in enumerate(operands))


def arithmetic_step_rewards(
    steps: Sequence[Step | str], problem: Problem | None = None, *, correct: float = 0.25, wrong: float = -0.25,
    unchecked: float = 0.0, cap: float = 1.0,
) -> list[float]:  # fmt: skip
    """S steps (`Step`s or strings) -> S rewards (the arithmetic rule above): `wrong` for a step
    with a false equation, `correct` for one with a new, grounded, non-identity true equation,
    else `unchecked`; capped at `cap` in total. Grounding uses `problem.question`'s numbers and is
    skipped without a problem."""
    given = given_numbers(problem.question) if problem is not None else []
    seen: list[Fraction] = []  # every value the response stated so far
    ground = list(given)  # the question's numbers and the results of grounded correct equations
    raw = []
    for step in steps:
        text, pays, bad = _text(step), False, False
        for eq in find_equations(text):
            operands = _operands(eq)
            grounded = problem is None or any(_known(v, ground) for v in operands)
            bad |= not eq.correct
            pays |= eq.correct and _pays(eq, operands, given, seen, grounded)
            seen += [eq.left, eq.right]
            ground += [eq.left, eq.right] if eq.correct and grounded else []
        seen += [v for v, _ in stated_values(text)]
        raw.append(wrong if bad else correct if pays else unchecked)
    return capped(raw, cap)


_ANNOTATION = re.compile(r"<<([^<>]*)>>")
# Numbers a question gives in words (GSM8K writes "two hours", "twice as many", "half of them").
_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
GIVEN_WORDS = {
    **{w: i for i, w in enumerate(_UNITS)},
    **{w: 10 * i for i, w in enumerate(_TENS, 3)},
    "hundred": 100, "thousand": 1000, "half": 2, "halves": 2, "twice": 2, "double": 2, "doubles": 2, "triple": 3,
    "thrice": 3, "quarter": 4, "quarters": 4, "dozen": 12, "dozens": 12, "percent": 100, "%": 100,
}
_WORD = re.compile(r"[a-z]+|%")


def given_numbers(question: str) -> list[Fraction]:
    """The numbers a question gives: written in digits, and as words (`GIVEN_WORDS`)."""
    words = [Fraction(GIVEN_WORDS[w]) for w in _WORD.findall(question.lower()) if w in GIVEN_WORDS]
    return written_numbers(question) + words


def reference_values(solution: str | None) -> list[tuple[Fraction, int]]:
    """Intermediate results of a GSM8K reference solution, one per calculator annotation, as
    (value, decimals of rounding slack); [] without annotations.

    `<<100/3=33.33>>` gives the exact 100/3 with no slack (a step may round it to any number of
    decimals, `33.3` or `33.333`); an annotation whose left side cannot be read or does not hold
    gives its written result with the written decimals.
    """
    values = []
    for note in _ANNOTATION.finditer(solution or ""):
        exact = [(eq.left, 0) for eq in find_equations(note.group(1)) if eq.correct]
        values.extend(exact or stated_values(note.group(1)))
    return values


def _matches(stated: list[tuple[Fraction, int]], ref: tuple[Fraction, int]) -> bool:
    # Either side may be the rounded one: the step's `0.33` for 1/3, or a reference written
    # `33.33` (with an unreadable left side) for the step's `33.333`.
    r, rd = ref
    return any(agrees(v, r, rd) or agrees(r, v, vd) for v, vd in stated)


def _reference_rewards(steps, refs, hit: float | None, miss: float, cap: float) -> list[float]:
    distinct = list(dict.fromkeys(refs))  # one value annotated twice is one value to reach
    per_value = cap / len(distinct) if hit is None and distinct else hit or 0.0
    reached: set[int] = set()
    raw = []
    for step in steps:
        stated = stated_values(_text(step))
        new = [i for i, ref in enumerate(distinct) if i not in reached and _matches(stated, ref)]
        reached.update(new)
        raw.append(per_value * len(new) if new else miss)
    return capped(raw, cap)


def reference_value_step_rewards(
    steps: Sequence[Step | str], problem: Problem, *, hit: float | None = None, miss: float = 0.0, cap: float = 1.0
) -> list[float]:
    """S steps -> S rewards (the reference rule above): `hit` (default cap / K) per intermediate
    result of `problem.solution`'s calculator annotations the step states for the first time,
    else `miss` (always `miss` without annotations); capped at `cap` in total."""
    return _reference_rewards(steps, reference_values(problem.solution), hit, miss, cap)


# ----------------------------------------------------------------------------- batch callables


def _check_lengths(problems: Sequence[Problem], responses: Sequence[str]) -> None:
    if len(problems) != len(responses):
        raise ValueError(f"got {len(problems)} problems but {len(responses)} responses")


def arithmetic_process_reward(
    problems: list[Problem], responses: list[str], *, mode: str = "lines",
    correct: float = 0.25, wrong: float = -0.25, unchecked: float = 0.0, cap: float = 1.0,
) -> list[list[float]]:  # fmt: skip
    """N responses -> N lists of per-step rewards, steps as `split_steps(response, mode)`."""
    _check_lengths(problems, responses)
    weights = {"correct": correct, "wrong": wrong, "unchecked": unchecked, "cap": cap}
    return [arithmetic_step_rewards(split_steps(r, mode), p, **weights) for p, r in zip(problems, responses)]


def reference_process_reward(
    problems: list[Problem], responses: list[str], *, mode: str = "lines", hit: float | None = None,
    miss: float = 0.0, cap: float = 1.0,
) -> list[list[float]]:  # fmt: skip
    """N responses -> N lists of per-step rewards against each problem's reference values."""
    _check_lengths(problems, responses)
    refs: dict[str | None, list] = {}  # a GRPO batch repeats each problem G times
    rewards = []
    for problem, response in zip(problems, responses):
        if problem.solution not in refs:
            refs[problem.solution] = reference_values(problem.solution)
        rewards.append(_reference_rewards(split_steps(response, mode), refs[problem.solution], hit, miss, cap))
    return rewards


# The one place a process rule is chosen by name.
PROCESS_REWARDS = {
    "arithmetic": arithmetic_process_reward,
    "reference": reference_process_reward,
}
