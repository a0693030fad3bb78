"""The fast engine against transformers' `generate`: identical greedy tokens, same stopping."""

import pytest
import torch

from tinyr1.rollout.engine import sample_next
from tinyr1.rollout.sampler import SamplingParams, sample
from tinyr1.rollout import sampler as sampler_mod

PROMPTS = [
    "Calculate 12 + 7.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many?",
    "3 * 4",
    "What is 5 - 3 - 6? Solve the problem step by step. Put the final answer in \\boxed{}.",
]


@pytest.mark.parametrize("prompts", [PROMPTS, PROMPTS[:1]], ids=["varied-lengths", "batch-of-one"])
def test_greedy_fast_equals_generate(tiny_model, prompts):
    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=16, temperature=0.0, batch_size=8)
    fast = sample(model, tok, prompts, params, engine="fast")
    ref = sample(model, tok, prompts, params, engine="hf")
    assert fast.response_ids == ref.response_ids
    assert fast.finished == ref.finished


def test_stop_in_the_middle_of_the_batch_drops_only_that_row(tiny_model, monkeypatch):
    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=16, temperature=0.0, batch_size=8)
    free = sample(model, tok, PROMPTS, params, engine="hf")
    stop = free.response_ids[1][3]  # a token that row 1 emits at step 4
    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
    fast = sample(model, tok, PROMPTS, params, engine="fast")
    ref = sample(model, tok, PROMPTS, params, engine="hf")
    assert fast.response_ids == ref.response_ids  # rows still going are unaffected by the dropped ones
    assert fast.finished[1] and len(fast.response_ids[1]) <= 4
    assert any(not f for f in fast.finished)  # some rows ran to max_new_tokens


def test_shared_prefill_samples_are_reproducible_and_grouped(tiny_model):
    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=4, batch_size=16)
    torch.manual_seed(3)
    a = sample(model, tok, PROMPTS[:2], params, engine="fast")
    torch.manual_seed(3)
    b = sample(model, tok, PROMPTS[:2], params, engine="fast")
    assert a.response_ids == b.response_ids and len(a.response_ids) == 8
    assert len({tuple(r) for r in a.response_ids[:4]}) > 1


def test_sample_next_greedy_and_top_p():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, 0.0, 1.0).tolist() == [1, 0]
    # softmax row 0: token 1 holds 0.47 of the mass, token 3 0.43: with top_p 0.4 only token 1 survives
    torch.manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, 0.4) for _ in range(50)])
    assert (draws[:, 0] == 1).all() and (draws[:, 1] == 0).all()
    # with top_p 0.9 tokens 1 and 3 share the draws, 0 and 2 never appear
    draws = torch.stack([sample_next(logits, 1.0, 0.9)[0] for _ in range(200)])
    assert set(draws.tolist()) == {1, 3}
