"""The fast engine against transformers' `generate`: identical greedy tokens, same stopping."""

import pytest
import torch

from tinyr1.rollout import sampler as sampler_mod
from tinyr1.rollout.engine import sample_next
from tinyr1.rollout.sampler import SamplingParams, sample

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


def test_inverse_cdf_draws_follow_the_distribution():
    from tinyr1.rollout.engine import inverse_cdf

    probs = torch.zeros(1, 1000)  # 1000 tokens: 3 full blocks of 256 and a padded last one
    probs[0, 3], probs[0, 300], probs[0, 999] = 0.5, 0.3, 0.2
    torch.manual_seed(0)
    draws = inverse_cdf(probs.expand(20000, -1).contiguous())
    counts = torch.bincount(draws, minlength=1000).float() / 20000
    assert set(draws.unique().tolist()) == {3, 300, 999}  # zero-probability tokens never drawn
    assert abs(counts[3] - 0.5) < 0.015 and abs(counts[300] - 0.3) < 0.015 and abs(counts[999] - 0.2) < 0.015


def test_inverse_cdf_unnormalised_and_single_token_rows():
    from tinyr1.rollout.engine import inverse_cdf

    probs = torch.zeros(3, 600)
    probs[0, 0] = 1.0  # first token of the first block
    probs[1, 599] = 7.0  # last token, any total
    probs[2, 255], probs[2, 256] = 1e-9, 1e-9  # both sides of a block boundary, tiny mass
    torch.manual_seed(1)
    for _ in range(50):
        d = inverse_cdf(probs).tolist()
        assert d[0] == 0 and d[1] == 599 and d[2] in (255, 256)


def test_sampling_matches_generate_distribution(tiny_model):
    """Same next-token distribution as `generate`: first-token frequencies over 600 samples at a
    temperature that makes the tiny model's distribution peaked."""
    model, tok = tiny_model
    logits = model(**tok(PROMPTS[:1], return_tensors="pt", add_special_tokens=False)).logits[0, -1].detach()
    # the temperature at which the likeliest token holds about half the mass
    temp = next(t for t in torch.logspace(-4, 1, 200).tolist() if torch.softmax(logits / t, -1).max() < 0.5)
    p = torch.softmax(logits.float() / temp, -1)
    assert 0.1 < p.max() < 0.9  # a distribution worth testing: neither uniform nor one-hot
    params = SamplingParams(max_new_tokens=1, temperature=temp, n=600, batch_size=600)
    for engine, seed in (("fast", 0), ("hf", 1)):
        torch.manual_seed(seed)
        s = sample(model, tok, PROMPTS[:1], params, engine=engine)
        freq = torch.bincount(torch.tensor([r[0] for r in s.response_ids]), minlength=len(p)).float() / 600
        # 4 standard errors of a binomial frequency at 600 draws
        assert ((freq - p).abs() <= 4 * (p * (1 - p) / 600).sqrt() + 1e-3).all(), engine


def test_finished_rows_riding_along_do_not_change_the_others(tiny_model, monkeypatch):
    """One of 8 rows stops early: it stays in the batch (no compaction below a quarter finished)
    and the seven others still match `generate` token for token."""
    model, tok = tiny_model
    prompts = PROMPTS + [p + " Again." for p in PROMPTS]
    params = SamplingParams(max_new_tokens=12, temperature=0.0, batch_size=8)
    free = sample(model, tok, prompts, params, engine="hf")
    stop = free.response_ids[5][2]
    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
    fast = sample(model, tok, prompts, params, engine="fast")
    ref = sample(model, tok, prompts, params, engine="hf")
    assert fast.response_ids == ref.response_ids
    assert fast.finished == ref.finished and sum(fast.finished) >= 1


def test_engine_restores_the_models_attention(tiny_model):
    model, tok = tiny_model
    before = model.config._attn_implementation
    sample(model, tok, PROMPTS[:1], SamplingParams(max_new_tokens=2, temperature=0.0), engine="fast")
    assert model.config._attn_implementation == before


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_reported_logprobs_are_the_models_at_temperature_one(tiny_model, temperature):
    """Each sampled token's log-probability as the engine reports it equals log_softmax of the
    model's logits (temperature 1) from a forward over prompt + response."""
    model, tok = tiny_model
    torch.manual_seed(0)
    s = sample(model, tok, PROMPTS[:2], SamplingParams(max_new_tokens=6, temperature=temperature, n=2), engine="fast")
    for k, response in enumerate(s.response_ids):
        prompt = s.prompt_ids[k // 2]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(s.logprobs[k]), expected, atol=1e-4), k


def test_step_times_record_each_decode_iteration_and_its_rows(tiny_model, monkeypatch):
    """engine.STEP_TIMES (for benchmarks): one (rows, seconds) per decode iteration; rows shrink
    only when finished rows are dropped."""
    from tinyr1.rollout import engine

    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=16, temperature=0.0, batch_size=8)
    stop = sample(model, tok, PROMPTS, params, engine="hf").response_ids[1][3]  # row 1 stops at step 4
    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
    monkeypatch.setattr(engine, "STEP_TIMES", [])
    out = sample(model, tok, PROMPTS, params, engine="fast")
    rows = [r for r, _ in engine.STEP_TIMES]
    lengths = [len(r) for r in out.response_ids]
    # with 4 rows every finished row is dropped at once: step k runs the rows with more than k + 1 tokens
    assert rows == [sum(n > k + 1 for n in lengths) for k in range(max(lengths) - 1)]
    assert rows[-1] < 4 and all(s > 0 for _, s in engine.STEP_TIMES)
