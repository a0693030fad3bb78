"""The engine's own decode step (`GroupedDecoder`) against transformers' forward on whole sequences."""

import pytest
import torch

from tinyr1.rollout import decoder as decoder_mod
from tinyr1.rollout import engine
from tinyr1.rollout.decoder import GroupedDecoder, unsupported_reason

PROMPTS = [[5, 17, 9, 30, 2, 11, 4], [8, 3], [12, 40, 7, 7, 1]]  # uneven: left padding in the prefill


def _qwen2_tiny(vocab: int, head_dim: int | None = None):
    """A 2-layer Qwen2: q/k/v biases, no sliding window, untied head."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, use_sliding_window=False,
                         **({} if head_dim is None else {"head_dim": head_dim}))
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


def _run_and_compare(model, n=3, steps=6, drop_after=2, atol=1e-5, native=None, late_drop=None):
    """Decode `steps` tokens for every row (rows 1 and 4 leave after `drop_after` steps, rows 0 and 6
    two steps later, row 8 at step `late_drop`) and compare each step's logits with transformers'
    forward over the row's whole sequence (no cache)."""
    kv, mask = _prefill(model, PROMPTS, n)
    dec = GroupedDecoder(model, kv, mask, n, capacity=steps, native=native)
    assert native is None or dec.native == native
    drops = {drop_after: (1, 4), drop_after + 2: (0, 6), late_drop: (8,)} if drop_after >= 0 else {}
    rows = list(range(len(PROMPTS) * n))
    seqs = [list(PROMPTS[r // n]) for r in rows]
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for step in range(steps):
        if step in drops:
            keep = [i for i, r in enumerate(rows) if r not in drops[step]]
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
    assert c.layers is not a.layers and torch.equal(c.layers[1][5][0], model.model.layers[1].mlp.down_proj.weight)


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


def test_bfloat16_on_a_cpu_without_onednn_bf16_takes_f_linear(tiny_model, monkeypatch):
    """An AVX2-only CPU (AMD Zen 3): `_reorder_linear_weight` raises there, so the decoder must not
    prepack; it samples bf16 through F.linear, within bf16 rounding of the model's own forward."""
    import copy

    model, _ = tiny_model
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    monkeypatch.setattr(decoder_mod, "_mkldnn_bf16", lambda: False)
    assert not decoder_mod._prepacked_cpu(torch.bfloat16, torch.device("cpu"))
    kv, mask = _prefill(bf16, PROMPTS, 2)
    assert not GroupedDecoder(bf16, kv, mask, 2, capacity=1).lin.packed
    assert _run_and_compare(bf16, atol=0.1) > 0


def test_prepacked_linears_equal_f_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(5, 16).bfloat16(), torch.randn(12, 16).bfloat16(), torch.randn(12).bfloat16()
    other = torch.randn(5, 12).bfloat16()
    if not decoder_mod._prepacked_cpu(torch.bfloat16, torch.device("cpu")):
        pytest.skip("no oneDNN on this torch build")
    packed, plain = decoder_mod._Linears(True, 5), decoder_mod._Linears(False, 5)
    for add in (None, other):
        a = packed(x, packed.prepare(w, b), add=add).float()
        ref = plain(x, plain.prepare(w, b), add=add).float()
        assert torch.allclose(a, ref, atol=0.05, rtol=0.02)
    assert not torch.allclose(packed(x, packed.prepare(w, b), add=other), packed(x, packed.prepare(w, b)))


def test_unsupported_models_are_named_and_sampled_through_the_forward(tiny_model, monkeypatch):
    import copy

    from peft import LoraConfig, get_peft_model

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


# --- the compiled attention kernel (rollout/native.py, decode_attention.cpp) ---------------------


@pytest.fixture(scope="module")
def native_op():
    """The built kernel; a skip where it cannot be built here, a failure in CI (where it must)."""
    import os

    from tinyr1.rollout import native

    op = native.decode_attention()
    if op is None:
        if os.environ.get("CI"):
            pytest.fail("the decode-attention kernel did not build in CI")
        pytest.skip("decode-attention kernel not built on this machine")
    return op


def _llama(vocab: int, hidden: int, heads: int, kv_heads: int, head_dim: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


# (hidden, heads, kv heads, head dim): 2 and 3 (SmolLM2) query heads per kv head, a head dim of
# 80 (a 64-wide chunk and a 16-wide one), 8 query heads per kv head (the most the kernel takes)
NATIVE_SHAPES = [(32, 4, 2, 16), (48, 6, 2, 16), (48, 3, 1, 80), (64, 8, 1, 32)]


@pytest.mark.parametrize("shape", NATIVE_SHAPES, ids=lambda s: "h{1}kv{2}d{3}".format(*s))
def test_native_steps_equal_the_forward_of_whole_sequences(tiny_model, native_op, shape):
    """float32: every step of 20 (past a 16-position block, rows leaving before and after it) within
    1e-5 of transformers' forward over each row's whole sequence."""
    model = _llama(len(tiny_model[1]), *shape)
    assert decoder_mod.native_reason(model, torch.float32, torch.device("cpu")) is None
    _run_and_compare(model, steps=20, native=True, late_drop=17)


def test_native_qwen2_with_projection_biases(tiny_model, native_op):
    model = _qwen2_tiny(len(tiny_model[1]), head_dim=16)
    _run_and_compare(model, steps=18, native=True, late_drop=16)


def test_native_bfloat16_steps_follow_the_model_and_the_eager_path(tiny_model, native_op):
    model = _llama(len(tiny_model[1]), 48, 6, 2, 16).to(torch.bfloat16)
    assert _run_and_compare(model, steps=18, atol=0.1, native=True, late_drop=16) > 0
    kv, mask = _prefill(model, PROMPTS, 2)
    fast, eager = (GroupedDecoder(model, kv, mask, 2, capacity=3, native=x) for x in (True, False))
    tokens, positions = torch.tensor([4, 9, 1, 3, 7, 2]), torch.tensor([7, 7, 2, 2, 5, 5])
    for _ in range(3):
        a, b = fast.step(tokens, positions).float(), eager.step(tokens, positions).float()
        assert (a - b).abs().max() < 0.1  # the same attention; scores in float32 here, bf16 there
        tokens, positions = a.argmax(-1), positions + 1


def test_native_kernel_checks_its_inputs(native_op):
    q = torch.randn(2, 1, 2, 16)
    pk, pv, bias = torch.zeros(1, 1, 1, 16, 16), torch.zeros(1, 1, 5, 16), torch.zeros(1, 16)
    rk, rv = torch.zeros(2, 1, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    slot = torch.tensor([0, 1])
    out = native_op(q, pk, pv, bias, rk, rv, 1, torch.tensor([0, 0]), slot)
    assert out.shape == (2, 32) and torch.allclose(out, torch.zeros(2, 32))  # all values zero
    with pytest.raises(RuntimeError, match="row 1 continues prompt 3 of 1"):
        native_op(q, pk, pv, bias, rk, rv, 1, torch.tensor([0, 3]), slot)
    with pytest.raises(RuntimeError, match="row 1 in response slot 2 of 2"):
        native_op(q, pk, pv, bias, rk, rv, 1, torch.tensor([0, 0]), torch.tensor([0, 2]))
    with pytest.raises(RuntimeError, match="length 17 outside"):
        native_op(q, pk, pv, bias, rk, rv, 17, torch.tensor([0, 0]), slot)
    with pytest.raises(RuntimeError, match="multiple of 16"):
        native_op(torch.randn(2, 1, 2, 8), pk, pv, bias, rk, rv, 1, torch.tensor([0, 0]), slot)


def test_native_off_falls_back_to_eager_attention(tiny_model, monkeypatch):
    model = _llama(len(tiny_model[1]), 32, 4, 2, 16)
    kv, mask = _prefill(model, PROMPTS, 2)
    monkeypatch.setenv("TINYR1_NATIVE", "0")
    assert not GroupedDecoder(model, kv, mask, 2, capacity=2).native
    with pytest.raises(ValueError, match="TINYR1_NATIVE=0"):
        GroupedDecoder(model, kv, mask, 2, capacity=2, native=True)
    # the tiny fixture's head dim of 8 is named as the reason
    assert "head dim 8" in decoder_mod.native_reason(tiny_model[0], torch.float32, torch.device("cpu"))


def test_kernel_that_cannot_be_built_is_reported_once(monkeypatch, capsys):
    from tinyr1.rollout import native

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", lambda: (_ for _ in ()).throw(RuntimeError("Error building: no g++")))
    assert native.decode_attention() is None and native.decode_attention() is None
    err = capsys.readouterr().err
    assert err.count("not built") == 1 and "no g++" in err and "eager attention" in err


def test_greedy_engine_with_the_native_kernel_equals_generate(tiny_model, monkeypatch, native_op):
    """The whole engine on Llama and Qwen2 models the kernel runs: greedy tokens are `generate`'s,
    with a row leaving mid-batch."""
    from tinyr1.rollout import sampler as sampler_mod
    from tinyr1.rollout.sampler import SamplingParams, sample

    _, tok = tiny_model
    used = []
    real = GroupedDecoder.__init__
    monkeypatch.setattr(GroupedDecoder, "__init__", lambda self, *a, **k: real(self, *a, **k) or used.append(self.native))
    prompts = ["Calculate 12 + 7.", "3 * 4", "What is 5 - 3 - 6? Solve the problem step by step.", "Again: 2 + 2"]
    params = SamplingParams(max_new_tokens=20, temperature=0.0, batch_size=8)
    for model in (_llama(len(tok), 32, 4, 2, 16), _qwen2_tiny(len(tok), head_dim=16)):
        free = sample(model, tok, prompts, params, engine="hf")
        stop = free.response_ids[2][3]  # a token row 2 emits at step 4: that row leaves the batch
        monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda m, t: [stop])
        fast = sample(model, tok, prompts, params, engine="fast")
        ref = sample(model, tok, prompts, params, engine="hf")
        monkeypatch.undo()
        monkeypatch.setattr(GroupedDecoder, "__init__", lambda self, *a, **k: real(self, *a, **k) or used.append(self.native))
        assert fast.response_ids == ref.response_ids and fast.finished == ref.finished and any(fast.finished)
    assert used == [True, True]


def test_native_rotary_and_silu_mul_equal_the_eager_formulas(native_op):
    """rotary_append: q rotated into the output, k into key block column t % 16 of the row's slot, v
    copied there, all equal
    to x * cos + rotate_half(x) * sin rounded once (bf16 exactly; head dim 80 runs the 16-lane
    loop and the scalar tail); silu_mul: silu(gate) * up with transformers' roundings."""
    from tinyr1.rollout import native

    ops = native.kernels()
    torch.manual_seed(0)
    for dtype, d in ((torch.bfloat16, 64), (torch.bfloat16, 80), (torch.float32, 80)):
        rows, h, hkv, t = 3, 3, 1, 18
        qkv = torch.randn(rows, (h + 2 * hkv) * d).to(dtype)
        cos, sin = torch.randn(rows, h + hkv, d).to(dtype), torch.randn(rows, h + hkv, d).to(dtype)
        rk, rv = torch.zeros(rows + 1, hkv, 2, d, 16, dtype=dtype), torch.zeros(rows + 1, hkv, 32, d, dtype=dtype)
        slot = torch.tensor([3, 0, 1])  # row 0 writes slot 3, slot 2 stays empty
        q = ops.rotary_append(qkv, cos, sin, rk, rv, slot, h, t)
        assert rk[2].abs().sum() == 0 and rv[2].abs().sum() == 0
        rk, rv = rk[slot], rv[slot]
        x = qkv.view(rows, h + 2 * hkv, d).float()
        rotated = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)[:, : h + hkv]
        ref = (x[:, : h + hkv] * cos.float() + rotated * sin.float()).to(dtype)
        tol = 0 if dtype == torch.bfloat16 else 1e-5  # float32: fused multiply-adds round once less
        assert torch.allclose(q, ref[:, :h], atol=tol, rtol=0)
        assert torch.allclose(rk[:, :, 1, :, 2], ref[:, h:], atol=tol, rtol=0)
        assert torch.equal(rv[:, :, t], x[:, h + hkv :].to(dtype)) and rk[:, :, 0].abs().sum() == 0
        y = torch.randn(rows, 2 * d).to(dtype)
        y[0, :3] = torch.tensor([-200.0, -90.0, 100.0])  # exp's argument past float range, both ways
        ref = torch.nn.functional.silu(y[:, :d]) * y[:, d:]
        assert torch.allclose(ops.silu_mul(y), ref, atol=max(tol, 1e-30), rtol=0)


def test_native_draw_inverts_the_cdf_at_the_given_uniforms(native_op):
    """draw(logits, u, T): the token where the float64 cumulative softmax(logits / T) first exceeds
    u (1000 tokens: three 256-blocks and a partial one), and its log-probability at temperature 1."""
    from tinyr1.rollout import native

    ops = native.kernels()
    torch.manual_seed(0)
    logits = torch.randn(40, 1000) * 3
    logits[0, 999] = 60.0  # all the mass on the last token of the partial block
    logits[1, 0] = 60.0  # ... on the first token
    u = torch.rand(40, dtype=torch.float64)
    u[2], u[3] = 0.0, 1 - 1e-12
    for dtype in (torch.float32, torch.bfloat16):
        x = logits.to(dtype)
        for temperature in (1.0, 0.7):
            tokens, lp = ops.draw(x, u, temperature)
            cdf = torch.softmax(x.double() / temperature, -1).cumsum(-1)
            ref = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(-1).clamp(max=999)
            assert torch.equal(tokens, ref) and tokens[0] == 999 and tokens[1] == 0
            assert tokens[2] == 0 and tokens[3] == int((cdf[3] < cdf[3, -1] * (1 - 1e-12)).sum())
            want = torch.log_softmax(x.double(), -1).gather(1, ref[:, None]).squeeze(-1)
            assert torch.allclose(lp.double(), want, atol=1e-5)
    with pytest.raises(RuntimeError, match="u must be float64"):
        ops.draw(logits, u.float(), 1.0)
    with pytest.raises(RuntimeError, match="temperature must be > 0"):
        ops.draw(logits, u, 0.0)


def test_engine_draws_natively_the_same_tokens_as_the_eager_draw(native_op, monkeypatch):
    from tinyr1.rollout.engine import draw_with_logprobs

    torch.manual_seed(1)
    logits = (torch.randn(16, 700) * 2).bfloat16()
    results = []
    for flag in ("1", "0"):  # the compiled op, then eager softmax + inverse_cdf, at the same seed
        monkeypatch.setenv("TINYR1_NATIVE", flag)
        torch.manual_seed(5)
        results.append(draw_with_logprobs(logits, 1.0, 1.0))
    (a, lp_a), (b, lp_b) = results
    assert torch.equal(a, b) and torch.allclose(lp_a, lp_b, atol=1e-5)
    assert lp_a.dtype == torch.float32 and len(set(a.tolist())) > 8


def test_a_build_lock_left_by_a_killed_process_does_not_hang_the_next_one(native_op, tmp_path):
    """cpp_extension guards a build folder with a `lock` file; a process SIGKILLed while holding it
    used to leave it there, and every later run waited on it for ever. A built kernel loads directly."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from torch.utils import cpp_extension

    from tinyr1.rollout import native

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path(cpp_extension.get_default_build_root()) / "tinyr1")
    built = max(root.glob("tinyr1_native_*/tinyr1_native_*.so"), key=lambda p: p.stat().st_mtime)  # what native_op loaded
    copy = tmp_path / built.parent.name
    copy.mkdir()
    shutil.copy(built, copy / built.name)
    (copy / "lock").write_text("")  # what a killed builder leaves
    code = "from tinyr1.rollout import native\nassert native.kernels() is not None"
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(native.__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "compiling" not in done.stderr, done.stderr[-2000:]  # loaded as is, not rebuilt
