"""The sampling interface: grouping, stopping, greedy equivalence with unbatched `generate`."""

import torch

from tinyr1.rollout import sampler as sampler_mod
from tinyr1.rollout.sampler import SamplingParams, cut_at_stop, sample

PROMPTS = ["Calculate 12 + 7.", "What is 5 - 3 - 6? Solve the problem step by step.", "3 * 4"]


def test_cut_at_stop_keeps_the_stop_token():
    assert cut_at_stop([5, 6, 2, 7, 2], {2}) == ([5, 6, 2], True)
    assert cut_at_stop([5, 6, 7], {2}) == ([5, 6, 7], False)
    assert cut_at_stop([], {2}) == ([], False)


def test_greedy_batch_equals_each_prompt_alone(tiny_model):
    model, tok = tiny_model
    batched = sample(model, tok, PROMPTS, SamplingParams(max_new_tokens=12, temperature=0.0, batch_size=8))
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                                 eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
        alone, _ = cut_at_stop(out[0, ids.shape[1]:].tolist(), {tok.eos_token_id})
        assert batched.response_ids[i] == alone
    assert batched.prompt_ids[0] == tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert all(len(r) == 12 for r in batched.response_ids if r[-1] != tok.eos_token_id)


def test_stop_token_ends_one_sequence_without_changing_others(tiny_model, monkeypatch):
    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=10, temperature=0.0, batch_size=8)
    free = sample(model, tok, PROMPTS, params)
    stop = free.response_ids[1][4]  # make the 5th token of the second response a stop token
    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
    stopped = sample(model, tok, PROMPTS, params)
    first = free.response_ids[1].index(stop)
    assert stopped.response_ids[1] == free.response_ids[1][: first + 1]
    assert stopped.finished[1] is True
    for i in (0, 2):  # the other rows are unchanged up to their own first stop token
        expected, done = cut_at_stop(free.response_ids[i], {stop})
        assert stopped.response_ids[i] == expected and stopped.finished[i] == done


def test_n_samples_per_prompt_are_grouped_and_seeded(tiny_model):
    model, tok = tiny_model
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, batch_size=4)  # forces 2 chunks
    torch.manual_seed(0)
    a = sample(model, tok, PROMPTS[:2], params)
    torch.manual_seed(0)
    b = sample(model, tok, PROMPTS[:2], params)
    assert len(a.response_ids) == 6 and len(a.texts) == 6 and len(a.finished) == 6 and a.n == 3
    assert a.response_ids == b.response_ids  # same seed, same samples
    assert len({tuple(r) for r in a.response_ids[:3]}) > 1  # temperature 1 gives varied samples
    assert a.num_tokens == sum(len(r) for r in a.response_ids)


def test_a_prompt_longer_than_the_model_context_is_refused_before_any_decoding(tiny_model, monkeypatch):
    import pytest

    from tinyr1.errors import UserError

    model, tok = tiny_model  # 2,048 positions
    monkeypatch.setattr(sampler_mod, "fast_generate", lambda *a, **k: pytest.fail("decoded a prompt past the context"))
    long = "Calculate 1 + 1. " * 700  # about 3,500 tokens
    with pytest.raises(UserError, match=r"problem 'p/2': its prompt is [\d,]+ tokens, which with sampling.max_new_tokens=8 "
                                         r"exceeds the model's 2,048 positions"):
        sample(model, tok, ["Calculate 1 + 1.", long], SamplingParams(max_new_tokens=8, temperature=0.0), names=["p/1", "p/2"])
    short = "Calculate 1 + 1. " * 100
    assert len(sample(model, tok, [short], SamplingParams(max_new_tokens=1, temperature=0.0), engine="hf").texts) == 1
