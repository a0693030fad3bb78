"""Child process that runs math-verify for `tinyr1.rewards.answers`, one JSON request per line.

The parent (`tinyr1.rewards._verifier`) starts it with `python path/to/_verify_worker.py` and
enforces a wall-clock deadline on every request, killing this process when one passes. That is why
math-verify's own signal-based timeouts are switched off here (`parsing_timeout=None`,
`timeout_seconds=None`): signals only work on the main thread, and the parent can be any thread in
any process. For debugging it also runs by hand:

    $ python -m tinyr1.rewards._verify_worker
    {"ready": true}
    {"id": 1, "pred": "\\\\dfrac12", "ref": "0.5"}
    {"id": 1, "ok": true}

Protocol: after importing math-verify (and warming its parser) it writes `{"ready": true}`, or
`{"ready": false, "error": "..."}` and exits. Then for each request line `{"id", "pred", "ref"}`
it writes `{"id", "ok"}`. It exits on end of input, or when its parent dies.
"""

import os
import sys

# Run as a script, Python puts this file's folder first on sys.path, where sibling modules could
# shadow real packages; the worker needs nothing from tinyr1, so drop that entry.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import json  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from functools import lru_cache  # noqa: E402

# A runaway sympy evaluation should fail with MemoryError, not swap the machine out.
MEMORY_LIMIT_BYTES = 2 << 30
# How often the watchdog checks that the parent is still alive.
PARENT_POLL_SECONDS = 1.0


def _limit_memory() -> None:
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(hard, MEMORY_LIMIT_BYTES)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass  # not available on this platform: the parent's deadline still applies


def _watch_parent() -> None:
    """Exit when the parent dies, even if stdin stays open (a forked sibling may hold it)."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=loop, name="parent-watchdog", daemon=True).start()


def _load_math_verify():
    import logging

    # With timeouts off math-verify warns once that the caller must enforce them; we do.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    @lru_cache(maxsize=4096)
    def parse_bare(answer: str):
        # Both sides are bare answers ("\frac{1}{2}", "1,000", "(1,2]"), not whole responses.
        # Wrapping them in \boxed{} makes math-verify read the whole string as one LaTeX answer
        # (bare strings or "$...$" lose sets, intervals and \dfrac12 to its plain-number regexes).
        parsed = parse("\\boxed{" + answer + "}", config, parsing_timeout=None)
        return parsed or parse(answer, config, parsing_timeout=None)

    def equivalent(pred: str, ref: str) -> bool:
        gold, target = parse_bare(ref), parse_bare(pred)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=None))

    equivalent("\\frac{1}{2}", "0.5")  # warm the LaTeX parser so the first real call is quick
    return equivalent


def _answer(request: dict, equivalent) -> dict:
    try:
        ok = equivalent(str(request["pred"]), str(request["ref"]))
    except Exception:  # includes RecursionError and MemoryError
        ok = False  # anything math-verify cannot handle counts as not equivalent
    return {"id": request.get("id"), "ok": ok}


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol channel private: anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        out.write((json.dumps(obj) + "\n").encode("ascii"))

    _watch_parent()
    _limit_memory()
    try:
        equivalent = _load_math_verify()
    except Exception as e:  # noqa: BLE001 - report any import failure to the parent
        send({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return
    send({"ready": True})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            send({"id": None, "ok": False})
            continue
        send(_answer(request, equivalent))


if __name__ == "__main__":
    main()
