"""The training problem streams: the held-out set is the same for every stage whatever the step
filters, the curriculum widens at its phase starts, extra generated problems come in at their
share, and every stream resumes from its state exactly.

Run: .venv/bin/python -m pytest tests/training/test_problems.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyr1.config import TrainJob, load_config, validate
from tinyr1.data.difficulty import calculation_steps
from tinyr1.errors import UserError
from tinyr1.training.problems import CurriculumStream, MixedStream, ProblemStream, load_data
from tinyr1.types import Problem

STEPS = Path(__file__).resolve().parents[1] / "fixtures" / "GSM8K_steps"  # 16 problems of 0-4 steps


def _job(algorithm: str, **data) -> TrainJob:
    job = load_config(TrainJob, None, {
        "algorithm": algorithm, "data": {"source": f"gsm8k:{STEPS}", "test_size": 4, "seed": 5, **data},
        "prompt": {"style": "gsm8k", "few_shot": 1}, "run": {"eval_size": 3}})
    validate(job)
    return job


def test_the_held_out_split_is_the_same_for_sft_and_grpo_whatever_their_filters():
    """Issue 15: stages on one data section hold out the same problems, whatever filters or schedule each uses."""
    plain = load_data(_job("sft"))
    sft = load_data(_job("sft", max_steps=1))
    grpo = load_data(_job("grpo", min_steps=2, curriculum=[[0, 2], [3, None]], extra={"synthetic:chain_sum": 0.25}))
    assert [p.id for p in sft.heldout] == [p.id for p in grpo.heldout] == [p.id for p in plain.heldout]
    assert len(plain.heldout) == 3  # run.eval_size of the 4 held out
    assert [p.id for p in sft.shots] == [p.id for p in grpo.shots] == [p.id for p in plain.shots]  # few-shot too
    held = {p.id for p in load_data(_job("sft")).heldout} | {p.id for p in plain.shots}
    sft_train = {p.id for p in sft.stream.problems}
    grpo_train = {p.id for pool in grpo.stream.main.pools for p in pool}
    assert not held & sft_train and not held & grpo_train  # never trained on
    assert sft_train and grpo_train and not sft_train & grpo_train  # the filters did differ
    assert all(calculation_steps(p) <= 1 for p in sft.stream.problems)


def _draws(stream, steps, per_step: int = 3) -> list[list[str]]:
    out = []
    for step in steps:
        stream.begin_step(step)
        out.append([p.id for p in stream.take(per_step)])
    return out


def test_the_curriculum_widens_at_its_phase_starts():
    job = _job("grpo", curriculum=[[0, 1], [3, 2], [5, None]])
    stream = load_data(job).stream
    assert isinstance(stream, CurriculumStream)
    bounds = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4}  # the most steps a problem may have at each step
    for step, bound in bounds.items():
        stream.begin_step(step)
        pool = stream.pools[stream.phase]
        drawn = stream.take(len(pool))  # a whole epoch of the phase's pool
        assert max(calculation_steps(p) for p in drawn) == bound, step
        assert sorted(p.id for p in drawn) == sorted(p.id for p in pool)
    # 16 problems - 4 held out - 1 few-shot example = 11 to train on; each phase's pool holds the previous one
    assert len(stream.pools[-1]) == 11
    assert all({p.id for p in a} < {p.id for p in b} for a, b in zip(stream.pools, stream.pools[1:]))


@pytest.mark.parametrize("cut", [2, 4, 5], ids=["mid-phase", "phase-boundary", "first-step-of-a-phase"])
def test_every_stream_resumes_exactly_from_its_state(cut):
    def fresh():
        return load_data(_job("grpo", curriculum=[[0, 1], [5, 2], [7, None]],
                              extra={"synthetic:chain_sum": {"share": 0.3, "size": 20, "task_options": {"min_terms": 3}}})).stream

    whole = _draws(fresh(), range(1, 11))
    first = fresh()
    head = _draws(first, range(1, cut + 1))
    resumed = fresh()  # what a resumed run builds, then loads the checkpoint's state into
    resumed.load_state_dict(first.state_dict())
    assert head + _draws(resumed, range(cut + 1, 11)) == whole


def test_extra_sources_come_in_at_their_share():
    main = ProblemStream([Problem(f"m{i}", "q", "1") for i in range(10)], seed=0)
    extra = ProblemStream([Problem(f"x{i}", "q", "1") for i in range(10)], seed=1)
    ids = [p.id for p in MixedStream(main, [(0.25, extra)], seed=0).take(2000)]
    share = sum(i.startswith("x") for i in ids) / len(ids)
    assert 0.22 < share < 0.28  # 500 expected; sd of the share = sqrt(0.25 * 0.75 / 2000) = 0.0097
    again = [p.id for p in MixedStream(ProblemStream(main.problems, 0), [(0.25, ProblemStream(extra.problems, 1))], 0).take(2000)]
    assert again == ids  # seeded


def test_extra_problems_are_generated_offline_and_never_held_out():
    data = load_data(_job("grpo", extra={"synthetic:basic_arithmetic": {"share": 0.5, "size": 30,
                                                                           "task_options": {"min_terms": 3, "max_terms": 4}}}))
    (share, extra), = data.stream.extras
    assert share == 0.5 and len(extra.problems) == 30
    assert all(p.meta["task_metadata"]["num_terms"] in (3, 4) for p in extra.problems)
    assert {p.id.split("/")[0] for p in data.stream.take(40)} == {"gsm8k", "basic_arithmetic"}


@pytest.mark.parametrize("data, message", [
    ({"curriculum": [[1, 2]]}, "config key 'data.curriculum[0]': expected a first phase starting at step 0, got [1, 2]"),
    ({"curriculum": [[0, 3], [10, 2]]}, "config key 'data.curriculum[1]': expected a max_steps not below the previous phase's 3"),
    ({"curriculum": [[0, None], [10, 2]]}, "config key 'data.curriculum[1]': expected a max_steps not below the previous phase's None"),
    ({"curriculum": [[0, 2], [0, 3]]}, "config key 'data.curriculum[1]': expected a from_step after the previous phase's 0"),
    ({"curriculum": [[0]]}, "config key 'data.curriculum[0]': expected a pair [from_step >= 0, max_steps]"),
    ({"curriculum": [[0, 1]], "min_steps": 2}, "config key 'data.curriculum[0]': expected a max_steps that is null or an integer >= data.min_steps (2)"),
    ({"min_steps": 3, "max_steps": 2}, "config key 'data.max_steps': expected a number >= data.min_steps=3, got 2"),
    ({"max_steps": -1}, "config key 'data.max_steps': expected an integer >= 0 or null, got -1"),
    ({"extra": {"synthetic:gsm_symbolic": 0.2}}, "config key 'data.extra.synthetic:gsm_symbolic': expected another task: gsm_symbolic's templates were written from GSM8K's test questions"),
    ({"extra": {"gsm8k:data/GSM8K": 0.2}}, "config key 'data.extra.gsm8k:data/GSM8K': expected a generated source named synthetic:<reasoning-gym task>"),
    ({"extra": {"synthetic:chain_sum": 1.5}}, "config key 'data.extra.synthetic:chain_sum': expected a share of the training problems in (0, 1), got 1.5"),
    ({"extra": {"synthetic:chain_sum": {"share": 0.2, "seed": 3}}}, "config key 'data.extra.synthetic:chain_sum': expected a share, or a mapping with keys share, size, task_options"),
    ({"extra": {"synthetic:chain_sum": 0.6, "synthetic:basic_arithmetic": 0.5}}, "config key 'data.extra': expected shares adding up to less than 1"),
])
def test_bad_curriculum_and_extra_keys_are_named(data, message):
    with pytest.raises(UserError) as e:
        _job("grpo", **data)
    assert str(e.value).startswith(message)


def test_an_empty_curriculum_phase_fails_before_training():
    two_steps = [Problem(str(i), "q", "1", solution="<<1+1=2>> <<2+1=3>>") for i in range(4)]
    with pytest.raises(UserError, match=r"'data.curriculum\[0\]': no training problem has at most 1 calculation steps"):
        CurriculumStream(two_steps, 0, [[0, 1], [5, None]])  # phase 0 has nothing, though phase 1 would
