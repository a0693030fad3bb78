"""Difficulty of GSM8K-style problems: the number of calculation steps of the reference solution.

A GSM8K solution marks each calculation with a calculator annotation, `48/2 = <<48/2=24>>24`;
its difficulty is how many it has (GSM8K train: 95 problems with none, 404 with 1, 2175 with 2,
2137 with 3, 1424 with 4, 785 with 5, 453 with 6 to 9). A solution without annotations counts 0;
a problem without a solution (a synthetic one) has no step count.

Three config keys use it, on the TRAINING split only (`data.min_steps`, `data.max_steps`,
`data.curriculum`). The held-out split is drawn first, from the whole source (data/splits.py), so
it is the same whatever these keys say: an SFT job with `max_steps: 3` and a GRPO job with a
curriculum evaluate on the same problems, and a problem held out is never trained on. (MATH's
subject and level filters, by contrast, narrow both splits; see splits.py.)

A curriculum widens `max_steps` over training: `[[0, 2], [100, 4], [200, null]]` trains on
problems of at most 2 steps from step 0, at most 4 from step 100, any from step 200 (always
within `data.min_steps` / `data.max_steps`). `training/problems.CurriculumStream` draws each
phase from its own seeded shuffle.

    >>> from tinyr1.types import Problem
    >>> calculation_steps(Problem("1", "q", "72", solution="48/2 = <<48/2=24>>24\\n48+24 = <<48+24=72>>72\\n#### 72"))
    2
    >>> phase_at([[0, 2], [100, 4], [200, None]], 150)
    (1, 4)
"""

from __future__ import annotations

import re

from tinyr1.errors import UserError
from tinyr1.types import Problem

ANNOTATION = re.compile(r"<<[^<>]*>>")


def calculation_steps(problem: Problem) -> int | None:
    """The number of `<<...>>` calculator annotations of the reference solution; None without a solution."""
    return None if problem.solution is None else len(ANNOTATION.findall(problem.solution))


def within_steps(problems: list[Problem], min_steps: int | None, max_steps: int | None, source: str = "data") -> list[Problem]:
    """The problems whose step count lies in [min_steps, max_steps] (None = no bound), in order.

    With a bound set, `UserError` when no problem has an annotated solution: the count would mean
    nothing (MATH, synthetic and plain JSONL problems have no `<<...>>` notes).
    """
    if min_steps is None and max_steps is None:
        return problems
    counts = [calculation_steps(p) for p in problems]
    if problems and not any(counts):
        raise UserError(f"data.min_steps / data.max_steps / data.curriculum: no training problem of {source} has a "
                        "reference solution with <<...>> calculator annotations (GSM8K style), so there are no steps "
                        "to count; leave these keys unset for this source")
    lo = 0 if min_steps is None else min_steps
    return [p for p, n in zip(problems, counts) if n is not None and lo <= n and (max_steps is None or n <= max_steps)]


def phase_at(curriculum: list, step: int) -> tuple[int, int | None]:
    """(index, max_steps) of the curriculum phase in force at training `step`: the last entry
    whose start step is <= `step` (entries are `[from_step, max_steps or None]`, starting at 0)."""
    index = max(i for i, (start, _) in enumerate(curriculum) if start <= step)
    return index, curriculum[index][1]
