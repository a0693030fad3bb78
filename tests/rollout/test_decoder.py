"""The engine's own decode step (`GroupedDecoder`) against transformers' forward on whole sequences."""

import pytest
import torch

from tinyr1.rollout import decoder as decoder_mod
from tinyr1.rollout import engine
from tinyr1.rollout.decoder import GroupedDecoder, unsupported_reason

PROMPTS = [[5, 17, 9, 30, 2, 11, 4], [8, 3], [12, 40, 7, 7, 1]]  # uneven: left padding in the prefill


def _qwen2_tiny(vocab: int):
    """A 2-layer Qwen2: q/k/v biases, no sliding window, untied head."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, use_sliding_window=False)
    model = Qwen2ForCausalLM(config).eval()
    for layer in model.model.layers:  # random init leaves biases at zero: make them count
        for p in (layer.self_attn.q_proj.bias, layer.self_attn.k_proj.bias, layer.self_attn.v_proj.bias):
            p.data.normal_(0, 0.5)
    return model


def _prefill(model, prompts, n):
    from transformers import DynamicCache

    width = max(map(len, prompts))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), past_key_values=cache,
              use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers], mask.bool()


def _reference_logits(model, sequence):
    with torch.no_grad():
        return model(input_ids=torch.tensor([sequence])).logits[0, -1]


def _run_and_compare(model, n=3, steps=6, drop_after=2, atol=1e-5):
    """Decode `steps` tokens for every row (rows 1 and 4 leave after `drop_after` steps, rows 0 and 6
    two steps later) and compare each step's logits with transformers' forward over the row's
    whole sequence (no cache)."""
    kv, mask = _prefill(model, PROMPTS, n)
    dec = GroupedDecoder(model, kv, mask, n, capacity=steps)
    rows = list(range(len(PROMPTS) * n))
    seqs = [list(PROMPTS[r // n]) for r in rows]
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for step in range(steps):
        if step in (drop_after, drop_after + 2) and drop_after >= 0:
            keep = [i for i, r in enumerate(rows) if r not in ((1, 4) if step == drop_after else (0, 6))]
            dec.select(torch.tensor(keep))
            rows = [rows[i] for i in keep]
        tokens = torch.randint(0, model.config.vocab_size, (len(rows),), generator=gen)
        positions = torch.tensor([len(seqs[r]) for r in rows])
        for r, t in zip(rows, tokens.tolist()):
            seqs[r].append(t)
        logits = dec.step(tokens, positions)
        for i, r in enumerate(rows):
            ref = _reference_logits(model, seqs[r])
            worst = max(worst, (logits[i].float() - ref.float()).abs().max().item())
    assert worst <= atol, worst
    return worst


def test_grouped_steps_equal_the_forward_of_whole_sequences(tiny_model):
    model, _ = tiny_model
    assert unsupported_reason(model) is None
    _run_and_compare(model)


def test_buffers_growing_in_small_chunks_between_rows_leaving(tiny_model, monkeypatch):
    model, _ = tiny_model
    monkeypatch.setattr(decoder_mod, "CHUNK", 2)  # grows at steps 0, 2, 4, 6; rows leave at 3 and 5
    _run_and_compare(model, steps=8, drop_after=3)


def test_prepared_weights_are_reused_until_a_weight_changes(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model[0])
    kv, mask = _prefill(model, PROMPTS, 1)
    a = GroupedDecoder(model, kv, mask, 1, capacity=2)
    b = GroupedDecoder(model, kv, mask, 1, capacity=2)
    assert a.layers is b.layers
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(2.0)  # in place, as the sampling copy's refresh
    c = GroupedDecoder(model, kv, mask, 1, capacity=2)
    assert c.layers is not a.layers and torch.equal(c.layers[1][6][0], model.model.layers[1].mlp.down_proj.weight)


def test_single_sample_per_prompt_and_no_rows_leaving(tiny_model):
    model, _ = tiny_model
    _run_and_compare(model, n=1, drop_after=-1)


def test_qwen2_with_projection_biases(tiny_model):
    _, tok = tiny_model
    model = _qwen2_tiny(len(tok))
    assert unsupported_reason(model) is None
    _run_and_compare(model)


def test_bfloat16_prepacked_steps_follow_the_model(tiny_model):
    """bf16 on CPU takes the oneDNN path (prepacked weights, fused epilogues): its logits stay
    within bf16 rounding of transformers' bf16 forward."""
    import copy

    model, _ = tiny_model
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    if not decoder_mod._prepacked_cpu(torch.bfloat16, torch.device("cpu")):
        pytest.skip("no oneDNN on this torch build")
    worst = _run_and_compare(bf16, atol=0.1)
    kv, mask = _prefill(bf16, PROMPTS, 2)
    assert GroupedDecoder(bf16, kv, mask, 2, capacity=1).lin.packed
    assert worst > 0  # it did run in bf16 (float32 agrees to 1e-5, bf16 does not)


def test_prepacked_linears_equal_f_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(5, 16).bfloat16(), torch.randn(12, 16).bfloat16(), torch.randn(12).bfloat16()
    other = torch.randn(5, 12).bfloat16()
    if not decoder_mod._prepacked_cpu(torch.bfloat16, torch.device("cpu")):
        pytest.skip("no oneDNN on this torch build")
    packed, plain = decoder_mod._Linears(True, 5), decoder_mod._Linears(False, 5)
    for epilogue in ("none", "silu", "mul", "add"):
        a = packed(x, packed.prepare(w, b), epilogue, other).float()
        ref = plain(x, plain.prepare(w, b), epilogue, other).float()
        assert torch.allclose(a, ref, atol=0.05, rtol=0.02), epilogue


def test_unsupported_models_are_named_and_sampled_through_the_forward(tiny_model, monkeypatch):
    from peft import LoraConfig, get_peft_model
    import copy

    model, tok = tiny_model
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert "adapters" in unsupported_reason(lora.base_model.model)
    other = copy.deepcopy(model)
    other.config.model_type = "gpt_neox"
    assert "gpt_neox" in unsupported_reason(other)

    used = []
    real = engine._ForwardSteps.__init__
    monkeypatch.setattr(engine._ForwardSteps, "__init__", lambda self, *a: used.append(1) or real(self, *a))
    from tinyr1.rollout.sampler import SamplingParams, sample

    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    fast = sample(lora.base_model.model, tok, ["3 * 4", "Calculate 12 + 7."], params, engine="fast")
    ref = sample(lora.base_model.model, tok, ["3 * 4", "Calculate 12 + 7."], params, engine="hf")
    assert used and fast.response_ids == ref.response_ids


def test_the_fast_engine_uses_the_grouped_decoder_for_llama(tiny_model, monkeypatch):
    from tinyr1.rollout.sampler import SamplingParams, sample

    model, tok = tiny_model
    calls = []
    real = GroupedDecoder.step
    monkeypatch.setattr(GroupedDecoder, "step", lambda self, *a: calls.append(a[0].shape[0]) or real(self, *a))
    sample(model, tok, ["3 * 4", "Calculate 12 + 7."], SamplingParams(max_new_tokens=4, temperature=1.0, n=3), engine="fast")
    assert calls and calls[0] == 6  # 2 prompts x 3 samples in one batch


def test_full_cache_is_an_error(tiny_model):
    model, _ = tiny_model
    kv, mask = _prefill(model, PROMPTS, 1)
    dec = GroupedDecoder(model, kv, mask, 1, capacity=1)
    dec.step(torch.tensor([1, 2, 3]), torch.tensor([7, 2, 5]))
    with pytest.raises(RuntimeError, match="full"):
        dec.step(torch.tensor([1, 2, 3]), torch.tensor([8, 3, 6]))


def test_greedy_engine_on_qwen2_equals_generate(tiny_model, monkeypatch):
    """Through the whole engine (prefill, grouped steps, rows leaving): Qwen2's greedy tokens are
    transformers' `generate`'s."""
    from tinyr1.rollout import sampler as sampler_mod
    from tinyr1.rollout.sampler import SamplingParams, sample

    _, tok = tiny_model
    model = _qwen2_tiny(len(tok))
    prompts = ["Calculate 12 + 7.", "3 * 4", "What is 5 - 3 - 6? Solve the problem step by step.", "Again: 2 + 2"]
    params = SamplingParams(max_new_tokens=12, temperature=0.0, batch_size=8)
    free = sample(model, tok, prompts, params, engine="hf")
    stop = free.response_ids[2][3]  # a token row 2 emits at step 4: that row leaves the batch
    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
    fast = sample(model, tok, prompts, params, engine="fast")
    ref = sample(model, tok, prompts, params, engine="hf")
    assert fast.response_ids == ref.response_ids and fast.finished == ref.finished and any(fast.finished)
