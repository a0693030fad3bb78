"""Tests for the rule-based answer grader: extraction per style, equivalence, and safety.

The big table pins exact verdicts (correct, extracted answer, method) for every kind of answer the
grader must handle; the tests after it check that no input can make grading hang or raise, from
any thread or process. Run: `.venv/bin/python -m pytest tests/rewards/test_answers.py -q`.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import pytest

from tinyr1.rewards import answers
from tinyr1.rewards._verifier import VERIFIER
from tinyr1.rewards.answers import STYLES, Grade, extract_answer, grade, grade_many, is_equivalent

# A regression that hangs should fail the run, not stall it.
pytestmark = pytest.mark.timeout(120)


def case(response, reference, correct, extracted, method="style", style="boxed", fallback=True, id=None):
    """One row of the table; `method` is ignored (None) when nothing is extracted."""
    method = method if extracted is not None else None
    return pytest.param(response, reference, style, fallback, Grade(correct, extracted, method), id=id)


def boxed(pred, reference, correct, id):
    """An equivalence case: `pred` given as the response's last \\boxed{}."""
    return case(f"The answer is $\\boxed{{{pred}}}$.", reference, correct, pred, id=id)


GRADE_CASES = [
    # --- fractions and decimals
    boxed(r"\frac{1}{2}", "0.5", True, "frac-vs-decimal"),
    boxed(r"\dfrac12", "1/2", True, "dfrac-short-vs-slash"),
    boxed("0.5", r"\frac{1}{2}", True, "decimal-vs-frac"),
    boxed("2/4", r"\frac12", True, "unreduced-fraction"),
    boxed("1.50", r"\frac32", True, "trailing-zero-decimal"),
    boxed("0.333333", "1/3", True, "decimal-rounded-to-6-places"),
    boxed("0.33", "1/3", False, "decimal-too-coarse"),
    boxed(r"\frac{3}{4}", "0.7", False, "frac-vs-wrong-decimal"),
    boxed(r"\tfrac{5}{2}", "2.5", True, "tfrac"),
    # --- LaTeX expressions (math-verify)
    boxed(r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}", True, "sqrt-brace-less"),
    boxed(r"\sqrt{8}", r"2\sqrt{2}", True, "sqrt-simplified"),
    boxed("0.866025", r"\frac{\sqrt{3}}{2}", True, "decimal-vs-surd"),
    boxed(r"\sqrt{3}", r"\sqrt{2}", False, "different-surds"),
    boxed(r"3\pi/2", r"\frac{3\pi}{2}", True, "pi-slash-vs-frac"),
    boxed("3.14", r"\pi", False, "pi-approximation-too-coarse"),
    boxed("(x+1)^2", "x^2+2x+1", True, "expanded-polynomial"),
    boxed("x^2-1", "x^2+1", False, "different-polynomials"),
    boxed(r"\left( 3, 4 \right)", "(3,4)", True, "left-right-tuple"),
    boxed(r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", True, "matrix"),
    boxed(r"\begin{pmatrix}1\\3\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", False, "matrix-wrong"),
    boxed(r"\text{(A)}", "A", True, "text-choice"),
    boxed(r"\text{Tuesday}", r"\text{Monday}", False, "text-word-wrong"),
    # --- sets
    boxed(r"\{2,1\}", r"\{1,2\}", True, "set-order"),
    boxed("1,2,3", r"\{1,2,3\}", True, "bare-list-vs-set"),
    boxed(r"\{1,3\}", r"\{1,2\}", False, "set-wrong-element"),
    # --- intervals
    boxed("(1, 2]", "(1,2]", True, "interval-spacing"),
    boxed("[1,2]", "(1,2]", False, "interval-closed-vs-half-open"),
    boxed(r"(-\infty, 5)", r"(-\infty,5)", True, "interval-infinite"),
    boxed(r"(-\infty, 5]", r"(-\infty, 5)", False, "interval-infinite-wrong-end"),
    boxed(r"[0, \infty)", r"x \geq 0", True, "interval-vs-inequality"),
    # --- units
    boxed(r"5 \text{ cm}", "5", True, "text-unit"),
    boxed(r"12\text{ cm}^2", "12", True, "squared-unit"),
    boxed(r"5 \text{ cm}", "6", False, "unit-wrong-number"),
    boxed(r"30^\circ", "30", True, "degrees"),
    boxed("18 dollars", "18", True, "plain-word-unit"),
    boxed(r"5\mbox{ m}", r"5 \text{m}", True, "unit-on-both-sides"),
    boxed("3i", "3", False, "imaginary-unit-is-not-a-unit"),
    boxed("2 pi", "2", False, "pi-is-not-a-unit"),
    # --- percentages
    boxed(r"50\%", "50", True, "percent-vs-number"),
    boxed(r"50\%", "0.5", True, "percent-vs-fraction"),
    boxed("50%", "5", False, "percent-wrong"),
    boxed(r"12.5\%", "0.125", True, "decimal-percent"),
    boxed("40", r"40\%", True, "number-vs-percent-reference"),
    # --- thousands separators, dollar signs
    boxed("1,000", "1000", True, "thousands-comma"),
    boxed("1{,}000", "1000", True, "thousands-latex-comma"),
    boxed("1,234,567", "1234567", True, "thousands-millions"),
    boxed("1,000", "100", False, "thousands-wrong"),
    boxed("1e3", "1000", True, "scientific-notation"),
    boxed("2.5E-2", "0.025", True, "scientific-notation-negative-exponent"),
    boxed("1e3", "100", False, "scientific-notation-wrong"),
    boxed(r"\$18", "18", True, "escaped-dollar"),
    boxed(r"\$1,000.50", "1000.5", True, "dollar-thousands-cents"),
    # --- assignments
    boxed("x = 5", "5", True, "assignment-vs-number"),
    boxed("x=5", "6", False, "assignment-wrong"),
    boxed("y = 2x + 3", "2x+3", True, "assignment-expression"),
    # --- negative numbers
    boxed("-3", "-3.0", True, "negative-int-vs-decimal"),
    boxed("-3", "3", False, "sign-matters"),
    boxed("\u22127", "-7", True, "unicode-minus"),
    boxed(r"-\frac{1}{2}", "-0.5", True, "negative-frac"),
    boxed(r"\frac{-1}{2}", r"-\frac12", True, "negative-numerator"),
    # --- gsm8k style
    case("48/2 = 24 clips in May.\n#### 72", "72", True, "72", style="gsm8k", id="gsm8k-basic"),
    case("#### 1,234\nDone.", "1234", True, "1,234", style="gsm8k", id="gsm8k-thousands-line-end"),
    case("#### 72", "71", False, "72", style="gsm8k", id="gsm8k-wrong"),
    case("#### 1\nno, wait\n#### 2", "2", True, "2", style="gsm8k", id="gsm8k-last-marker"),
    case("#### $18.00", "18", True, "$18.00", style="gsm8k", id="gsm8k-dollars-cents"),
    case("so the answer is 72", "72", True, "72", "fallback", style="gsm8k", id="gsm8k-fallback"),
    case("so the answer is 72", "72", False, None, style="gsm8k", fallback=False, id="gsm8k-no-fallback"),
    case("#### \nso 5", "5", True, "5", "fallback", style="gsm8k", id="gsm8k-empty-marker-fallback"),
    # --- r1 style
    case("<think>2+2</think><answer>4</answer>", "4", True, "4", style="r1", id="r1-basic"),
    case("<answer>1</answer> hmm <answer> 7 </answer>", "7", True, "7", style="r1", id="r1-last-tag"),
    case(r"<answer>It is \boxed{\frac{1}{2}}</answer>", "0.5", True, r"\frac{1}{2}", style="r1", id="r1-boxed"),
    case("<answer>5</answer>", "6", False, "5", style="r1", id="r1-wrong"),
    case("<answer>4", "4", True, "4", "fallback", style="r1", id="r1-unclosed-fallback"),
    case("<answer>4", "4", False, None, style="r1", fallback=False, id="r1-unclosed-no-fallback"),
    case("<think>I get 9</think>", "9", True, "9", "fallback", style="r1", id="r1-no-tag-fallback"),
    case("<answer> </answer> 3", "3", True, "3", "fallback", style="r1", id="r1-empty-tag-fallback"),
    # --- boxed style
    case(r"\boxed{3} no, \boxed{4}", "4", True, "4", id="boxed-last"),
    case(r"\boxed{3} no, \boxed{4}", "3", False, "4", id="boxed-last-wrong"),
    case(r"\fbox{12}", "12", True, "12", id="fbox"),
    case(r"so \boxed 5$", "5", True, "5", id="boxed-braceless"),
    case(r"$\boxed{\frac{1}{2}}$", "0.5", True, r"\frac{1}{2}", id="boxed-nested-braces"),
    case("no box here, 41 and 42", "42", True, "42", "fallback", id="boxed-fallback"),
    case("no box here, 41 and 42", "42", False, None, fallback=False, id="boxed-no-fallback"),
    case(r"answer \boxed{12", "12", True, "12", "fallback", id="boxed-unclosed-fallback"),
    case(r"answer \boxed{12", "12", False, None, fallback=False, id="boxed-unclosed-no-fallback"),
    case(r"\boxed{} but 8", "8", True, "8", "fallback", id="boxed-empty-fallback"),
    # --- the fallback's idea of a number
    case("it costs -4.5 dollars", "-4.5", True, "-4.5", "fallback", id="fallback-negative-decimal"),
    case("total: 1,234 apples", "1234", True, "1,234", "fallback", id="fallback-thousands"),
    case("a ratio of 3/4", "0.75", True, "3/4", "fallback", id="fallback-slash-fraction"),
    case("so 10-3=7", "7", True, "7", "fallback", id="fallback-minus-is-operator"),
    case("so x=-3", "-3", True, "-3", "fallback", id="fallback-minus-is-sign"),
    case(r"it is \frac{1}{2}", "0.5", True, r"\frac{1}{2}", "fallback", id="fallback-latex-frac"),
    case("see model v2", "2", False, None, id="fallback-ignores-digits-in-words"),
    case("pay .5 now", "0.5", True, ".5", "fallback", id="fallback-leading-dot"),
    # --- not found, garbage, empty
    case("no numbers at all", "5", False, None, id="nothing-found"),
    case("", "5", False, None, id="empty-response"),
    case(r"\boxed{5}", "", False, "5", id="empty-reference"),
    case(r"\boxed{qwerty}", "5", False, "qwerty", id="garbage-answer"),
    case("\\boxed{\U0001f4a5}", "5", False, "\U0001f4a5", id="emoji-answer"),
    case(r"\boxed{\frac{1}{0}}", "0", False, r"\frac{1}{0}", id="division-by-zero"),
    case(r"\boxed{)(}{][}", "5", False, ")(", id="unbalanced-brackets"),
]


@pytest.mark.parametrize("response, reference, style, fallback, expected", GRADE_CASES)
def test_grade_table(response, reference, style, fallback, expected):
    assert grade(response, reference, style=style, fallback=fallback) == expected


def test_grade_table_is_big_enough():
    assert len(GRADE_CASES) >= 80


def test_grade_many_matches_grade_one_by_one():
    responses = [r"\boxed{1/2}", "#### 3", "nothing", r"\boxed{\{1,2\}}"]
    references = ["0.5", "3", "1", r"\{2,1\}"]
    assert grade_many(responses, references) == [grade(r, a) for r, a in zip(responses, references)]
    assert [g.correct for g in grade_many(responses, references)] == [True, True, False, True]


def test_grade_many_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 responses but 1 references"):
        grade_many(["a", "b"], ["a"])


def test_found_property():
    assert grade(r"\boxed{3}", "4").found is True
    assert grade("nothing", "4").found is False


@pytest.mark.parametrize("call", [
    lambda: grade(r"\boxed{1}", "1", style="latex"),
    lambda: extract_answer(r"\boxed{1}", "json"),
    lambda: grade_many([r"\boxed{1}"], ["1"], style="Boxed"),
    lambda: grade(r"\boxed{1}", "1", style=["boxed"]),
])
def test_unknown_style_names_the_allowed_ones(call):
    with pytest.raises(ValueError, match="allowed: boxed, gsm8k, r1"):
        call()


def test_last_number_tail_search_matches_a_full_scan():
    import random

    rng = random.Random(0)
    pieces = ["1,234", "-5", "3/4", ".5", "x2", " ", "\n", "word", "12.5", r"\frac{1}{2}", ",", "-"]
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 400)))
        full = [m.group() for m in answers._NUMBER.finditer(text)]
        assert answers.last_number(text) == (full[-1] if full else None), text


def test_styles_constant():
    assert STYLES == ("boxed", "gsm8k", "r1")


@pytest.mark.parametrize("pred, reference", [(None, "1"), ("1", None), (1, "1"), (b"1", "1"), ([], [])])
def test_non_strings_are_not_equivalent(pred, reference):
    assert is_equivalent(pred, reference) is False


@pytest.mark.parametrize("response, reference, expected", [
    (None, "1", Grade(False, None, None)),
    (12, "12", Grade(False, None, None)),
    (r"\boxed{12}", 12, Grade(False, "12", "style")),
    (r"\boxed{12}", None, Grade(False, "12", "style")),
])
def test_non_string_inputs_grade_wrong_without_raising(response, reference, expected):
    assert grade(response, reference) == expected


def test_timeout_zero_uses_fast_paths_only():
    assert is_equivalent("1,000", "1000", timeout=0) is True
    assert is_equivalent(r"\sqrt{4}", "2", timeout=0) is False  # needs math-verify
    assert is_equivalent(r"\sqrt{4}", "2", timeout=float("nan")) is False


# ---------------------------------------------------------------------------------------------
# Adversarial inputs: each must return its verdict quickly, and never hang or raise.

NESTED = "{" * 10_000 + "1" + "}" * 10_000
ADVERSARIAL = [
    pytest.param("x" * 1_000_000 + r"\boxed{5}", "5", Grade(False, None, None), id="1MB-response"),
    pytest.param(r"\boxed{" + NESTED + "}", "1", Grade(False, NESTED, "style"), id="10k-nested-braces"),
    pytest.param("\\boxed{" * 10_000, "1", Grade(False, None, None), id="10k-unclosed-boxes"),
    pytest.param(r"the answer is \boxed{", "1", Grade(False, None, None), id="unclosed-box"),
    pytest.param(r"\boxed{9**9**9**9}", "1", Grade(False, "9**9**9**9", "style"), id="python-power-tower"),
    pytest.param(r"\boxed{10^{10^{10^{10}}}}", "1", Grade(False, "10^{10^{10^{10}}}", "style"), id="latex-power-tower"),
    pytest.param(r"\boxed{9^{9^{9}}}", "0", Grade(False, "9^{9^{9}}", "style"), id="short-power-tower"),
    pytest.param(r"\boxed{2^{99999999}}", "1", Grade(False, "2^{99999999}", "style"), id="huge-exponent"),
    pytest.param(r"\boxed{1}", "10^{10^{10^{10}}}", Grade(False, "1", "style"), id="tower-in-reference"),
    pytest.param(r"\boxed{" + "1" * 5000 + "}", "1", Grade(False, "1" * 5000, "style"), id="5000-digit-number"),
    pytest.param("9" * 100_000, "9", Grade(False, "9" * 100_000, "fallback"), id="100k-digit-fallback"),
    pytest.param("\x00\x01\ud800 \\boxed{\x00}", "0", Grade(False, "\x00", "style"), id="control-and-surrogate"),
    pytest.param(r"\boxed{\left(\left(\left(1\right)\right)\right)}", "1",
                 Grade(True, r"\left(\left(\left(1\right)\right)\right)", "style"), id="left-right-parens"),
]


@pytest.fixture
def warm_worker():
    """A running math-verify worker, so timed tests do not time its start-up (~1 s)."""
    assert VERIFIER.check("1", "1", timeout=60) is True


@pytest.mark.parametrize("response, reference, expected", ADVERSARIAL)
def test_adversarial_inputs_return_quickly(warm_worker, response, reference, expected):
    start = time.monotonic()
    result = grade(response, reference, timeout=5.0)
    elapsed = time.monotonic() - start
    assert result == expected
    assert elapsed < 3.0  # the guards answer long before the 5 s math-verify deadline


def test_too_long_answer_is_wrong_even_when_equal_after_cleaning():
    long_number = "1" * 2000
    assert is_equivalent(long_number, long_number) is False


# ---------------------------------------------------------------------------------------------
# The math-verify worker: deadlines, threads, processes.


def test_forced_timeout_returns_wrong_and_worker_recovers(warm_worker):
    before = VERIFIER.timeouts
    start = time.monotonic()
    # (10^{10})! passes the cheap guards, and sympy would compute it for hours.
    assert is_equivalent("(10^{10})!", "7", timeout=0.5) is False
    assert time.monotonic() - start < 3.0
    assert VERIFIER.timeouts == before + 1
    # the same pair again is answered from the record of its timeout, without waiting
    start = time.monotonic()
    assert is_equivalent("(10^{10})!", "7", timeout=0.5) is False
    assert time.monotonic() - start < 0.05
    assert VERIFIER.timeouts == before + 1
    # a fresh worker serves the next call
    assert is_equivalent(r"\sqrt{9}", "3") is True


def test_tiny_timeout_counts_as_wrong(warm_worker, monkeypatch):
    monkeypatch.setattr(answers, "_CACHE", answers._VerdictCache())
    start = time.monotonic()
    assert is_equivalent(r"\sqrt{2}\cdot\sqrt{8}", "4", timeout=1e-6) is False
    assert time.monotonic() - start < 2.0
    assert is_equivalent(r"\sqrt{2}\cdot\sqrt{8}", "4", timeout=30) is True  # longer deadline: retried


def test_grading_from_a_thread():
    results = {}

    def work():
        results["latex"] = grade(r"\boxed{\sqrt{12}}", r"2\sqrt{3}")
        results["number"] = grade("#### 7", "7", style="gsm8k")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert results == {
        "latex": Grade(True, r"\sqrt{12}", "style"),
        "number": Grade(True, "7", "style"),
    }


def test_grading_from_many_threads_at_once():
    pairs = [(rf"\boxed{{\frac{{{k}}}{{2}}\pi}}", rf"{k}\pi/2", True) for k in range(1, 9)]
    pairs += [(rf"\boxed{{\frac{{{k}}}{{3}}\pi}}", rf"{k}\pi/2", False) for k in range(1, 5)]
    results = [None] * len(pairs)

    def work(i):
        results[i] = grade(pairs[i][0], pairs[i][1]).correct

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [p[2] for p in pairs]


def _grade_in_pool(args):
    response, reference = args
    return grade(response, reference).correct


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_grading_inside_a_multiprocessing_pool(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    VERIFIER.check("1", "1", timeout=30)  # a worker in the parent, so forked children inherit one
    tasks = [(r"\boxed{\sqrt{12}}", r"2\sqrt{3}"), (r"\boxed{(1,2]}", "[1,2]"), ("#### 5", "5")]
    with multiprocessing.get_context(method).Pool(2) as pool:  # daemonic workers
        assert pool.map(_grade_in_pool, tasks) == [True, False, True]
    # the parent's worker still answers: the children did not disturb its pipes
    assert VERIFIER.check(r"\sqrt{4}", "2", timeout=30) is True


def test_worker_is_reaped_on_close_and_restarts():
    assert VERIFIER.check(r"\sqrt{25}", "5", timeout=30) is True
    pid = VERIFIER.pid
    VERIFIER.close()
    assert VERIFIER.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped (a zombie would still accept signal 0)
    assert VERIFIER.check(r"\sqrt{36}", "6", timeout=30) is True
    assert VERIFIER.pid != pid


def test_worker_stops_when_the_interpreter_exits():
    code = (
        "from tinyr1.rewards._verifier import VERIFIER\n"
        "assert VERIFIER.check(r'\\sqrt{4}', '2', timeout=30) is True\n"
        "print(VERIFIER.pid)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.strip())
    assert _gone_within(pid, seconds=5)


def test_worker_exits_when_its_parent_is_killed():
    code = (
        "import sys, time\n"
        "from tinyr1.rewards._verifier import VERIFIER\n"
        "VERIFIER.check('1', '1', timeout=30)\n"
        "print(VERIFIER.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        parent.kill()  # no atexit: the worker must notice on its own
        parent.wait(timeout=10)
        assert _gone_within(pid, seconds=5)
    finally:
        parent.kill()
        parent.stdout.close()


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_importing_answers_stays_light():
    code = (
        "import sys, tinyr1.rewards.answers\n"
        "heavy = [m for m in ('torch', 'transformers', 'sympy', 'math_verify') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
