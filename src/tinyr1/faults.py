"""Test hooks: stop a training process at a named moment, so crash tests can hit it exactly.

    TINYR1_KILL_AT=update:3    the process SIGKILLs itself in step 3, just before the optimizer step
    TINYR1_PAUSE_AT=logged:1   it prints "tinyr1: paused at logged:1" to stderr and sleeps until killed

Moments (`reached(moment)` marks them in the code; the step is the training step being run, 0
before the first one):
    sampling     inside the sampler, after the first batch of responses (rollouts and held-out evals)
    update       after the backward passes, just before the optimizer step
    logged       after a step's metrics line is written, before its evaluation and checkpoint
    checkpoint   halfway through writing a checkpoint (model files written, trainer state not yet)
    final        after final/ is written, before summary.json

A kill here is a real SIGKILL (no handler, no cleanup runs), so it stands for any crash at that
moment. Without these variables `reached` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import time

step = 0  # the training step being run (set by `training.run.Run.steps`)


def reached(moment: str) -> None:
    """Die (TINYR1_KILL_AT) or pause (TINYR1_PAUSE_AT) here when the variable names this moment and step."""
    here = f"{moment}:{step}"
    if os.environ.get("TINYR1_KILL_AT") == here:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("TINYR1_PAUSE_AT") == here:
        print(f"tinyr1: paused at {here}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
