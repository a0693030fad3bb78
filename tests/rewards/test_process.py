"""Rule-based process rewards: the arithmetic checker (a table of exact verdicts, malformed and
hostile inputs), reference intermediate values on GSM8K-style problems, the batch callables, the
rules that cannot be farmed (only new values pay, capped below the outcome), and their fit with
`process_advantages`.

Run: `.venv/bin/python -m pytest tests/rewards/test_process.py -q`.
"""

from __future__ import annotations

import builtins
import subprocess
import sys
import time
from fractions import Fraction

import pytest

from tinyr1.rewards.build import PROCESS_SHARE, build_process_reward, build_reward_fns, outcome_weight
from tinyr1.rewards.process import (
    PROCESS_REWARDS,
    arithmetic_process_reward,
    arithmetic_step_rewards,
    capped,
    find_equations,
    reference_process_reward,
    reference_value_step_rewards,
    reference_values,
)
from tinyr1.rewards.steps import split_steps
from tinyr1.types import Problem

T, F = True, False

# (step text, the verdict of every equation found, in order). [] = nothing checkable: skipped.
EQUATIONS = [
    # --- plain arithmetic, every operator spelling
    ("48 / 2 = 24", [T]),
    ("2 + 2 = 5", [F]),
    ("3 x 4 = 12", [T]),
    ("3×4=12", [T]),
    ("12 ÷ 4 = 3", [T]),
    ("3 \\times 4 = 12", [T]),
    ("3 \\cdot 4 = 13", [F]),
    ("0.2 x 50 = 10", [T]),
    ("4 x $5 = $20", [T]),
    ("$1,200 / 4 = $300", [T]),
    ("1,000 + 2,000 = 3,000", [T]),
    ("1,000,000 / 1,000 = 1,001", [F]),
    # --- signs, precedence, parentheses
    ("-3 + 5 = 2", [T]),
    ("5 - -3 = 8", [T]),
    ("3 - 5 = -2", [T]),
    ("−3 + 5 = 2", [T]),  # unicode minus
    ("10 - 3 - 2 = 5", [T]),  # left associative
    ("8 / 4 / 2 = 1", [T]),
    ("2 + 3 * 4 = 14", [T]),
    ("2 + 3 * 4 = 20", [F]),  # precedence, not left to right
    ("3 * (4 + 2) = 18", [T]),
    ("She has 7 apples (3 + 4 = 7).", [T]),  # an aside in parentheses
    ("25 / 1/3 = 75", [T]),  # a tight fraction is one number
    ("1/2 + 1/4 = 3/4", [T]),  # exact fractions
    # --- chains and both directions
    ("7 + 8 + 9 = 24", [T]),
    ("12 = 3 * 4", [T]),
    ("5 + 3 = 8 + 2 = 10", [T, T]),  # running total
    ("3 * 4 = 4 * 3 = 12", [T, T]),  # equal expressions
    ("5 + 3 = 9 + 2 = 11", [F, T]),
    ("1 + 1 = 2 and 2 * 3 = 7", [T, F]),
    # --- decimals and rounding to the written places
    ("0.1 + 0.2 = 0.3", [T]),
    ("2 + 2 = 4.0000001", [T]),  # within 1e-6 relative
    ("2 + 2 = 4.00001", [F]),
    ("10 / 3 = 3.33", [T]),  # |3.333.. - 3.33| <= 0.005
    ("2 / 3 = 0.67", [T]),
    ("2 / 3 = 0.66", [F]),  # truncated, not rounded
    ("7 / 2 = 3", [F]),  # an integer result is not rounded
    ("1.5 * 2 = 3.0", [T]),
    # --- GSM8K calculator annotations and markup read through
    ("<<48/2=24>>", [T]),
    ("<<48/2=25>>", [F]),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", [T]),  # the annotation is checked once
    ("- 48 / 2 = 24", [T]),  # a list bullet, not a minus
    ("**48 / 2 = 24**", [T]),
    ("Step 1: 48 / 2 = 24", [T]),
    ("$3 + 4 = 7$", [T]),
    ("Total = 5 + 3 = 8", [T]),
    # --- algebra and text around the numbers: skipped, never misread
    ("x^2 + 3 = 7", []),
    ("x ^ 2 + 3 = 7", []),
    ("2x + 3 = 7", []),
    ("so x - 3 + 5 = 7", []),
    ("f(2) + 1 = 5", []),
    ("x = 5", []),
    ("1:30 + 2 = 3:30", []),
    ("3 + 4 = 7cm", []),
    ("10% of 150 = 75 + 15", []),
    ("50 * 20% = 10", []),
    ("4 / 3 = 1 and 1/3", []),  # a mixed number
    ("Week 2 = 35 + 35", []),  # a label
    ("7 = 7", []),  # no operation
    # --- malformed and hostile: skipped, never evaluated, never slow
    ("2 + = 3", []),
    ("= 5", []),
    ("3 + 4 == 7", []),
    ("3 + (4 = 7", []),
    ("1/0 = 5", []),  # division by zero
    ("5 / (3 - 3) = 1", []),
    ("9**9**9 = 1", []),  # no power towers
    ("2**3 + 1 = 9", []),
    ("1e5 + 1 = 100001", []),
    ("1" * 10_000 + " + 1 = 2", []),  # a 10,000-digit number
    ("2 + 2 = " + "4" * 10_000, []),
    ("(" * 17 + "1" + ")" * 17 + " + 1 = 2", []),  # nested too deep
    ("+".join(["1"] * 40) + " = 40", []),  # too many tokens
    ("__import__('os')", []),
    ("__import__('os').system('echo hacked') = 0", []),
    ("eval('2+2') = 4", []),
    ("().__class__.__bases__[0] = 1", []),
]


@pytest.fixture
def no_code_evaluation(monkeypatch):
    """Fail the test if anything is evaluated as Python code."""

    def refuse(*args, **kwargs):
        raise AssertionError("code was evaluated")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)


@pytest.mark.parametrize("text, verdicts", EQUATIONS, ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_arithmetic_checker_verdicts(text, verdicts, no_code_evaluation):
    start = time.perf_counter()
    found = find_equations(text)
    assert time.perf_counter() - start < 0.5
    assert [eq.correct for eq in found] == verdicts


def test_the_table_covers_enough_cases():
    assert len(EQUATIONS) >= 40
    assert sum(v == [T] for _, v in EQUATIONS) >= 15 and sum(F in v for _, v in EQUATIONS) >= 10


def test_equation_records_the_text_and_exact_values():
    (eq,) = find_equations("so 0.1 + 0.2 = 0.3 apples")
    assert (eq.text, eq.left, eq.right, eq.correct) == ("0.1 + 0.2 = 0.3", Fraction(3, 10), Fraction(3, 10), True)


@pytest.mark.parametrize(
    "text",
    [
        "1+" * 25_000,
        "(" * 50_000,
        "=" * 50_000,
        "1=" * 10_000,
        "9" * 50_000,
        "- 1 + 1 = 2\n" * 4_000,
        "(1+" * 15_000 + "=2",
        "1" + ",000" * 12_000 + " + 1 = 2",
    ],
    ids=["plus", "parens", "equals", "chain", "digits", "bullets", "open", "commas"],
)
def test_huge_inputs_finish_quickly(text, no_code_evaluation):
    start = time.perf_counter()
    find_equations(text)
    assert time.perf_counter() - start < 2.0  # about 0.1 s each on an idle 2-core CPU: linear time


def test_importing_process_does_not_import_torch():
    code = "import sys, tinyr1.rewards.process; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- arithmetic step rewards


def test_arithmetic_step_rewards_per_step_and_weights():
    # Changed with the unfarmable rule: a correct step earns 0.25 (was +1) and a wrong one -0.25
    # (was -1), so four new correct steps reach the cap of 1.
    steps = ["48 / 2 = 24", "48 + 24 = 73", "So she sold 72 clips.", "2 + 2 = 4 but 3 + 3 = 7"]
    assert arithmetic_step_rewards(steps) == [0.25, -0.25, 0.0, -0.25]  # one wrong equation spoils a step
    weights = {"correct": 0.5, "wrong": -2.0, "unchecked": 0.1}
    assert arithmetic_step_rewards(steps, **weights, cap=10) == [0.5, -2.0, 0.1, -2.0]
    # cap 1: the running total 0.5 -> -1.5 is held at -1 (the step pays -1.5), -1 + 0.1 = -0.9, then -1 again (-0.1)
    assert arithmetic_step_rewards(steps, **weights) == pytest.approx([0.5, -1.5, 0.1, -0.1])
    assert arithmetic_step_rewards(split_steps("\n".join(steps))) == [0.25, -0.25, 0.0, -0.25]  # Step objects
    assert arithmetic_step_rewards([]) == []


def test_arithmetic_process_reward_is_a_batch_callable():
    # Changed: 0.25 per new correct step (was 1), and the problem now matters (its question's numbers
    # ground the first equation), so the problem is a real one (its question was "q", with no number).
    problems = [NATALIA] * 3
    responses = ["48 / 2 = 24\n48 + 24 = 72\n#### 72", "48 / 2 = 25\n\n25 + 48 = 73", ""]
    assert arithmetic_process_reward(problems, responses) == [[0.25, 0.25, 0.0], [-0.25, 0.25], []]
    assert arithmetic_process_reward(problems, responses, mode="paragraphs") == [[0.25], [-0.25, 0.25], []]
    assert arithmetic_process_reward(problems[:1], responses[:1], wrong=-0.5, unchecked=0.25) == [[0.25, 0.25, 0.25]]
    with pytest.raises(ValueError, match="got 3 problems but 2 responses"):
        arithmetic_process_reward(problems, responses[:2])


# ----------------------------------------------------------------------------- reference values

NATALIA = Problem(
    "gsm8k-0",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "72",
    solution="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
)
WENG = Problem(
    "gsm8k-1",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "10",
    solution="Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
)


def test_reference_values_are_the_annotation_results():
    assert reference_values(NATALIA.solution) == [(24, 0), (72, 0)]
    assert reference_values(WENG.solution) == [(Fraction(1, 5), 0), (10, 0)]  # exact: no rounding slack
    assert reference_values("<<100/3=33.33>>") == [(Fraction(100, 3), 0)]  # the exact value, not 33.33
    assert reference_values("no annotations here") == [] and reference_values(None) == []
    # Unreadable or wrong left sides: the written result, with its written decimals as slack.
    assert reference_values("<<2**3=8.0>> <<1/0=x>> <<7>> <<192*100=1920>>") == [(8, 1), (1920, 0)]


NATALIA_RESPONSE = (
    "In April she sold 48 clips.\n"  # 0: no `=`                                      -> 0
    "In May she sold half: 48 / 2 = 24 clips.\n"  # 1: reaches 24, one of K = 2 values  -> 1/2
    "Together: 48 + 24 = 72.\n"  # 2: reaches 72                                         -> 1/2
    "Check: 72 - 48 = 24\n"  # 3: states 24 again: reached already                       -> 0
    "So 48 * 2 = 96 would be wrong.\n"  # 4: states 96, not a reference value             -> 0
    "#### 72"  # 5: the final answer, no `=`                                              -> 0
)


def test_reference_value_step_rewards_on_the_natalia_problem():
    # Changed: a reference value pays once, hit = cap / K = 1/2 (was +1 for every statement, so
    # step 3's restatement of 24 paid again).
    steps = split_steps(NATALIA_RESPONSE)
    assert reference_value_step_rewards(steps, NATALIA) == [0.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    # explicit amounts: misses -0.1, running total -0.1, 0.4, 0.9, 0.8, 0.7, 0.6: never at the cap
    assert reference_value_step_rewards(steps, NATALIA, hit=0.5, miss=-0.1) == [-0.1, 0.5, 0.5, -0.1, -0.1, -0.1]
    # The arithmetic rule on the same steps: 72 - 48 = 24 restates 24 (0); 48 * 2 = 96 is true and new (0.25).
    assert arithmetic_step_rewards(steps) == [0.0, 0.25, 0.25, 0.0, 0.25, 0.0]
    assert arithmetic_step_rewards(steps, NATALIA) == [0.0, 0.25, 0.25, 0.0, 0.25, 0.0]  # 48 grounds them all


def test_reference_rewards_use_what_the_step_states_not_what_it_should_have_computed():
    # Each step scored alone (changed: in one response the later statements of 24 would be restatements).
    steps = ["48 / 2 = 25", "x = 24", "<<48/2=24>>24", "24 clips", "Half of 48 is 24."]
    # 25 is stated (wrongly); `x = 24` and the annotation state 24; a bare 24 states nothing.
    assert [reference_value_step_rewards([s], NATALIA) for s in steps] == [[0.0], [0.5], [0.5], [0.0], [0.0]]


def test_reference_values_match_decimals_and_rounding():
    # Changed: hit = 1 / K (K = 2 for Weng, 1 for the thirds), each rounding checked in a response of its own.
    steps = ["12 / 60 = 0.20 per minute", "0.2 x 50 = $10.00", "12 / 60 = 0.21"]
    assert reference_value_step_rewards(steps, WENG) == [0.5, 0.5, 0.0]
    thirds = Problem("p", "q", "33.33", solution="100/3 = <<100/3=33.33>>33.33")
    # 100/3 rounded to any number of decimals is a hit; 33.34 and 33 are not roundings of it.
    steps = ["100 / 3 = 33.333", "100 / 3 = 33.3", "100 / 3 = 33.34", "100 / 3 = 33"]
    assert [reference_value_step_rewards([s], thirds) for s in steps] == [[1.0], [1.0], [0.0], [0.0]]
    # Unreadable left side: 33.33 counts as written: 33.333 rounds to it, 33.3 is it rounded, 33.34 neither.
    rounded = Problem("p", "q", "33.33", solution="<<x/3=33.33>>")
    assert [reference_value_step_rewards([s], rounded) for s in ["y = 33.333", "y = 33.3", "y = 33.34"]] == [[1.0], [1.0], [0.0]]


def test_without_a_reference_solution_every_step_misses():
    problem = Problem("p", "1 + 1?", "2")  # e.g. a synthetic problem: no solution text
    assert reference_value_step_rewards(["1 + 1 = 2"], problem) == [0.0]


def test_reference_process_reward_is_a_batch_callable():
    # Changed: values pay once each, 1/2 apiece for K = 2 (was +1 per stating step).
    problems = [NATALIA, NATALIA, WENG]
    responses = [NATALIA_RESPONSE, "Step 1: 48/2 = 24 Step 2: 24 + 48 = 70", "0.2 x 50 = 10"]
    # one line holding both steps states 24: a hit; split at the markers, only step 1 is
    assert reference_process_reward(problems, responses) == [[0.0, 0.5, 0.5, 0.0, 0.0, 0.0], [0.5], [0.5]]
    assert reference_process_reward(problems, responses, mode="markers")[1] == [0.5, 0.0]
    with pytest.raises(ValueError, match="got 3 problems but 1 responses"):
        reference_process_reward(problems, responses[:1])


def test_process_rewards_are_chosen_by_name():
    assert PROCESS_REWARDS == {"arithmetic": arithmetic_process_reward, "reference": reference_process_reward}


# ----------------------------------------------------------------------------- fit with process_advantages


def test_step_rewards_and_step_ends_feed_process_advantages(tiny_model_dir):
    """Two responses to one problem (G = 2): per-step rewards on each step's last token."""
    import torch
    from transformers import AutoTokenizer

    from tinyr1.algorithms.advantages import process_advantages
    from tinyr1.rewards.steps import step_ends

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    responses = ["48 / 2 = 24\n48 + 24 = 72", "48 / 2 = 25\n48 + 25 = 73\nSo 73."]
    rewards = arithmetic_process_reward([NATALIA] * 2, responses)
    assert rewards == [[0.25, 0.25], [-0.25, 0.25, 0.0]]  # changed: +-0.25 a step (was +-1); normalised alike
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    ends = [step_ends(r, tokenizer, token_ids=i) for r, i in zip(responses, ids)]
    n_steps, length = max(map(len, rewards)), max(map(len, ids))

    def padded(rows, width):  # right-pad with zeros to (2, width)
        return torch.tensor([row + [0] * (width - len(row)) for row in rows])

    step_rewards, step_end = padded(rewards, n_steps).float(), padded(ends, n_steps)
    step_mask = padded([[1.0] * len(r) for r in rewards], n_steps)
    response_mask = padded([[1.0] * len(i) for i in ids], length)
    adv = process_advantages(step_rewards, step_mask, step_end, response_mask, group_size=2)
    # The 5 real step rewards (0.25, 0.25, -0.25, 0.25, 0) have mean 0.1 and std 0.2: normalised (0.75,
    # 0.75, -1.75, 0.75, -0.5) up to the 1e-4 in the divisor. Row 0's first token collects both its steps: 1.5; its eos token, after
    # the last step, gets 0. Row 1's first token: -1.75 + 0.75 - 0.5 = -1.5.
    assert adv[0, 0].item() == pytest.approx(1.5, abs=1e-3)
    assert adv[0, len(ids[0]) - 1].item() == 0.0
    assert adv[1, 0].item() == pytest.approx(-1.5, abs=1e-3)
    assert adv[1, ends[1][2]].item() == pytest.approx(-0.5, abs=1e-3)


# ----------------------------------------------------------------------------- rules that cannot be farmed

SHORT_CORRECT = "48 / 2 = 24\n48 + 24 = 72\n#### 72"


def _totals(process: str, responses: list[str], weights: dict[str, float]) -> list[float]:
    """Each response's outcome reward plus its summed step rewards, built as GRPO / PPO build them."""
    problems = [NATALIA] * len(responses)
    scores = [[w * v for v in fn(problems, responses)] for fn, w in build_reward_fns(weights, style="gsm8k").values()]
    outcome = [sum(column) for column in zip(*scores)]
    steps = build_process_reward(process, outcome=outcome_weight(weights))(problems, responses, mode="lines")
    return [o + sum(s) for o, s in zip(outcome, steps)]


FARMS = {
    "1 + 1 = 2 x 50": "1 + 1 = 2\n" * 50 + "#### 2",  # conjured from nothing: never grounded
    "a reference value x 50": "48 / 2 = 24\n" * 50 + "#### 24",  # pays once
    "a grounded chain x 50": "".join(f"{48 + k} + 1 = {49 + k}\n" for k in range(50)) + "#### 98",  # capped
    "prose only": "She sold some clips.\n" * 50 + "#### 7",
}


@pytest.mark.parametrize("process", ["arithmetic", "reference"])
@pytest.mark.parametrize("weights", [{"correctness": 1.0}, {"correctness": 2.0, "format": 0.5}], ids=["w1", "w2-format"])
@pytest.mark.parametrize("farm", FARMS, ids=list(FARMS))
def test_a_farming_response_never_out_earns_a_short_correct_answer(process, weights, farm):
    farmed, correct = _totals(process, [FARMS[farm], SHORT_CORRECT], weights)
    assert farmed < correct
    # the step rewards alone stay within half the outcome weight (format may add its own weight to both)
    w = outcome_weight(weights)
    assert farmed - weights.get("format", 0.0) <= PROCESS_SHARE * w + 1e-9


def test_farming_earns_by_hand():
    # arithmetic, cap 1 in rule units: `1 + 1 = 2` is not grounded in the question (48 and nothing else), so
    # 50 of them earn 0; 50 copies of `48 / 2 = 24` earn 0.25 once; the grounded chain 48 + 1 = 49, 49 + 1 = 50,
    # ... earns 0.25 per new value until the running total reaches 1 (4 steps), then 0.
    assert sum(arithmetic_process_reward([NATALIA], [FARMS["1 + 1 = 2 x 50"]])[0]) == 0.0
    assert arithmetic_process_reward([NATALIA], [FARMS["a reference value x 50"]])[0][:3] == [0.25, 0.0, 0.0]
    chain = arithmetic_process_reward([NATALIA], [FARMS["a grounded chain x 50"]])[0]
    assert chain[:6] == [0.25, 0.25, 0.25, 0.25, 0.0, 0.0] and sum(chain) == 1.0
    # reference: 24 is one of K = 2 values: 1/2 once, then nothing
    assert sum(reference_process_reward([NATALIA], [FARMS["a reference value x 50"]])[0]) == 0.5
    # built with the outcome weight 1: everything scaled by PROCESS_SHARE = 1/2
    built = build_process_reward("arithmetic", outcome=1.0)
    assert built([NATALIA], [FARMS["a grounded chain x 50"]])[0][:5] == [0.125, 0.125, 0.125, 0.125, 0.0]


def test_arithmetic_pays_new_grounded_non_trivial_values_by_hand():
    steps = [
        "1 + 1 = 2",  # operands 1, 1: not in the question (48, and "half": 2)                  -> 0
        "3 * 5 = 15",  # conjured from nothing                                                    -> 0
        "48 / 2 = 24",  # 48 is in the question, 24 is new                                        -> 0.25
        "24 + 15 = 39 and 39 - 15 = 24",  # 24 is grounded, 39 new (the second restates 24)     -> 0.25
        "39 * 1 = 39",  # restates 39 (and is an identity)                                        -> 0
        "48 - 48 = 0",  # computes nothing                                                        -> 0
        "39 + 3 = 43",  # wrong                                                                    -> -0.25
    ]
    assert arithmetic_step_rewards(steps, NATALIA) == [0.0, 0.0, 0.25, 0.25, 0.0, 0.0, -0.25]
    # numbers the question writes as words ground equations too: two, three, twice
    roque = Problem("r", "It takes Roque two hours to walk. He walks three times a week and rides twice.", "16")
    assert arithmetic_step_rewards(["2*3 = 6", "6*2 = 12", "5*7 = 35"], roque) == [0.25, 0.25, 0.0]
    # without a problem there is nothing to ground on, so grounding is skipped; identities still earn nothing
    assert arithmetic_step_rewards(["7 * 1 = 7", "7 + 0 = 7", "0 + 9 = 9", "9 / 1 = 9", "3 * 3 = 9"]) == [0.0] * 5
    assert arithmetic_step_rewards(["1 + 1 = 2", "2 * 3 = 6"]) == [0.25, 0.25]


def test_capped_keeps_the_running_total_within_the_cap_and_late_mistakes_still_cost():
    # totals: 0.5, 1.0, 1.0 (held: pays 0), 0.75, 1.0 (pays 0.25 of 0.5), -1.0 (pays -2.0 of -3)
    assert capped([0.5, 0.5, 0.5, -0.25, 0.5, -3.0]) == [0.5, 0.5, 0.0, -0.25, 0.25, -2.0]
    assert capped([0.3, 0.3], cap=0.5) == pytest.approx([0.3, 0.2])


def test_outcome_weight_is_correctness_else_every_positive_weight():
    assert outcome_weight({"correctness": 2.0, "format": 0.5}) == 2.0
    assert outcome_weight({"orm:runs/rm": 0.5, "format": 0.25, "length": -1.0}) == 0.75
