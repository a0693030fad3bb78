"""Rollouts built, selected and joined: always the layout a fresh build of the same rows gives."""

import torch

from tinyr1.rollout.collect import build_rollout, concat, empty_rollout, response_ids, score, select
from tinyr1.types import Problem, Rewards

PAD = 0
P = [Problem(str(i), f"q{i}", str(i)) for i in range(4)]
PROMPTS = [[5, 6], [5, 6], [7, 8, 9], [7, 8, 9]]
RESPONSES = [[11, 12, 13, 14], [15], [16, 17], [18, 19, 20]]  # rows 2 + 4, 2 + 1, 3 + 2, 3 + 3 tokens
LOGPROBS = [[-0.5, -1.0, -1.5, -2.0], [-0.25], [-0.1, -0.2], [-1.0, -2.0, -3.0]]


def fresh(rows):
    r = build_rollout([PROMPTS[i] for i in rows], [RESPONSES[i] for i in rows], [i != 1 for i in rows], [P[i] for i in rows],
                      [f"t{i}" for i in rows], 2, PAD, [LOGPROBS[i] for i in rows])
    r.rewards = Rewards(torch.tensor([float(i) for i in rows]), {"correctness": torch.tensor([i % 2 * 1.0 for i in rows])})
    return r


def same(a, b):
    for name in ("input_ids", "attention_mask", "response_mask", "truncated", "sampler_logprobs"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.problems == b.problems and a.texts == b.texts and a.group_size == b.group_size
    assert torch.equal(a.rewards.total, b.rewards.total)
    assert {k: v.tolist() for k, v in a.rewards.parts.items()} == {k: v.tolist() for k, v in b.rewards.parts.items()}


def test_build_places_prompt_response_and_engine_logprobs():
    r = fresh([0, 1])
    assert r.input_ids.tolist() == [[5, 6, 11, 12, 13, 14], [5, 6, 15, PAD, PAD, PAD]]
    assert r.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert r.response_mask.tolist() == [[0, 0, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]]
    assert r.sampler_logprobs[1].tolist() == [0, 0, -0.25, 0, 0, 0] and r.truncated.tolist() == [False, True]
    assert response_ids(r) == [[11, 12, 13, 14], [15]]


def test_select_trims_to_the_longest_remaining_row():
    picked = select(fresh([0, 1, 2, 3]), [1, 2])  # row 0 (width 6) is dropped: width 5 remains
    assert picked.input_ids.shape == (2, 5)
    same(picked, fresh([1, 2]))


def test_concat_pads_to_the_longer_width_and_adds_scoring_times():
    a, b = fresh([1]), fresh([0, 3])
    a.rewards.seconds, b.rewards.seconds = 0.25, 0.5
    joined = concat(a, b, PAD)
    same(joined, fresh([1, 0, 3]))
    assert joined.rewards.seconds == 0.75


def test_select_of_nothing_and_the_empty_rollout():
    none = select(fresh([0, 1]), [])
    assert none.num_sequences == 0 and none.texts == [] and len(none.rewards.total) == 0
    e = empty_rollout(PAD)
    assert e.input_ids.tolist() == [[PAD]] and e.response_mask.sum() == 0


def test_score_weighs_each_function():
    r = fresh([0, 1])
    fns = {"a": (lambda problems, texts: [1.0, 0.0], 2.0), "b": (lambda problems, texts: [0.5, 0.5], -1.0)}
    s = score(r, fns)
    assert s.total.tolist() == [1.5, -0.5] and s.parts["a"].tolist() == [1.0, 0.0] and s.seconds >= 0
