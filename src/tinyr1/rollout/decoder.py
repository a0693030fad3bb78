"""The engine's own decode step for Llama-family models (Llama, SmolLM2, Qwen2, Mistral).

transformers' forward costs about 80 framework calls per layer for one new token; a decode step
of a 135M model at batch 64 is small enough that those calls, and the layout of the KV cache,
decide its speed. `GroupedDecoder` runs the same arithmetic with the model's own weights, norms
and rotary embedding (profiled on the embedded 135M model, batch 64 = 8 prompts x 8 samples, bf16,
2 CPU cores; numbers in benchmarks/RESULTS.md):

  - cascade attention: a prompt's keys and values are stored once for its `n` samples; only the
    responses' keys are per row. The prompt is about half of the KV cache in a GRPO rollout and
    is read from memory n times less;
  - attention on CPU runs in one compiled kernel per layer (`decode_attention.cpp`, built on first
    use by `native.py`): per (row, kv head) the group's query heads score 16 key positions at a
    time, softmax in float32, and the weighted sum of values, reading only filled positions, with
    keys stored in blocks of 16 positions in buffers allocated once, one slot per row, so rows
    leave the batch without a copy. About half the time of the same attention as eager matmuls at
    batch 64 (`_NativeCache`). The same extension fuses the
    RMSNorms, the rotary embedding + cache write, and the MLP's silu(gate) * up (one call each
    instead of 2-8 eager ops);
  - elsewhere (GPU, no compiler, `TINYR1_NATIVE=0`) eager ops (`_EagerCache`): response keys stored
    transposed, (rows, kv heads, head dim, positions), in buffers that grow by `CHUNK` positions
    and are read whole (the unfilled tail masked, zeros), because a slice of a bigger buffer is
    copied by torch's CPU matmul before it runs;
  - one q/k/v projection per layer (the three weights concatenated) and one gate/up projection
    (64 x 576 x 3072 in one oneDNN call: 255 us against 305 for the two halves at batch 64),
    rotary embedding over q and k together, the attention scale folded into q's rotation;
  - on CPU in bfloat16, weights prepacked for oneDNN (kept until a weight changes)
    (`mkldnn._linear_pointwise`, the kernels torch.compile's CPU backend uses), with the residual
    adds fused into the matmuls. Elsewhere (float32, GPU) plain `F.linear` and eager ops.

Prefill stays with transformers' forward (`engine._GroupedSteps`); only the 1-token steps run here. In float32
the steps match transformers' forward to rounding (tests check greedy tokens against `generate`);
in bfloat16 the eager path rounds attention scores and probabilities to bfloat16 like every other
activation; the kernel keeps them in float32.
Models this does not recognise (other architectures, adapters not merged, sliding windows) go
through transformers' forward instead (`unsupported_reason`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "qwen2", "mistral")
CHUNK = 16  # response positions added to the decode buffers at a time


def unsupported_reason(model) -> str | None:
    """Why `GroupedDecoder` cannot run `model` (None when it can)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in FAMILIES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {FAMILIES}"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {getattr(config, 'hidden_act', None)!r} is not silu"
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    inner = getattr(model, "model", None)
    if not all(hasattr(inner, a) for a in ("layers", "embed_tokens", "norm", "rotary_emb")):
        return "not a decoder-only model with .model.layers"
    if type(getattr(model, "lm_head", None)) is not torch.nn.Linear:
        return "lm_head is not a plain Linear"
    for layer in inner.layers:
        a, m = layer.self_attn, layer.mlp
        linears = (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj)
        if any(type(x) is not torch.nn.Linear for x in linears):  # e.g. peft LoRA layers: merge first
            return "projections are not plain Linear layers (adapters not merged?)"
        if hasattr(a, "q_norm") or getattr(a, "sliding_window", None) is not None:
            return "attention with q/k norms or a sliding window"
    return None


def _prepacked_cpu(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's prepacked bf16 linears, where this CPU runs them (AVX-512 BW/VL/DQ or AVX-NE-CONVERT;
    without them `_reorder_linear_weight` raises, and F.linear is used)."""
    return (device.type == "cpu" and dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and _mkldnn_bf16())


def _mkldnn_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


class _Linears:
    """The decode step's matmuls: oneDNN with prepacked weights and a fused residual add, or F.linear."""

    def __init__(self, packed: bool, rows: int):
        self.packed, self.rows = packed, rows

    def prepare(self, weight: torch.Tensor, bias: torch.Tensor | None):
        if self.packed:
            return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), self.rows), _detached(bias)
        return weight.detach(), _detached(bias)

    def __call__(self, x, w, add: torch.Tensor | None = None):
        """x @ w.T + b, plus `add` (the residual) when given."""
        weight, bias = w
        if self.packed:
            mk = torch.ops.mkldnn._linear_pointwise
            if add is not None:
                return mk.binary(x, add, weight, bias, "add")
            return mk(x, weight, bias, "none", [], "")
        y = F.linear(x, weight, bias)
        return y if add is None else y + add


def _detached(t):
    return None if t is None else t.detach()


def _cat_bias(*linears):
    if all(x.bias is None for x in linears):
        return None
    return torch.cat([x.bias if x.bias is not None else x.weight.new_zeros(x.out_features) for x in linears]).detach()


def _prepared_weights(model, lin: _Linears):
    """Per layer (norm, qkv, o, norm, gate|up, down) as `lin` wants them, and the head.

    Preparing the 135M model takes 0.1-0.3 s (prepacking), so the result is kept on the model until any
    of its weights changes (new storage or an in-place update such as the sampling copy's refresh).
    """
    params = [p for _, p in sorted(model.named_parameters())]
    key = (lin.packed, tuple((p.data_ptr(), p._version) for p in params))
    cached = model.__dict__.get("_tinyr1_decode_weights")
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    layers = []
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach()
        gate_up = torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach()
        layers.append((
            layer.input_layernorm.weight.detach(), lin.prepare(qkv, _cat_bias(a.q_proj, a.k_proj, a.v_proj)),
            lin.prepare(a.o_proj.weight, a.o_proj.bias), layer.post_attention_layernorm.weight.detach(),
            lin.prepare(gate_up, _cat_bias(m.gate_proj, m.up_proj)), lin.prepare(m.down_proj.weight, m.down_proj.bias),
        ))
    head = lin.prepare(model.lm_head.weight, model.lm_head.bias)
    model.__dict__["_tinyr1_decode_weights"] = (key, layers, head)
    return layers, head


def _silu_mul(y: torch.Tensor) -> torch.Tensor:
    """The MLP's activation on the fused gate|up projection (the kernel's `silu_mul`, eager)."""
    gate, up = y.chunk(2, dim=-1)
    return F.silu(gate) * up


class _EagerCache:
    """Keys and values for eager-PyTorch attention (any device, dtype and head size).

    Prompt keys transposed (groups, kv, d, width); response keys transposed (rows, kv, d, buffer),
    values (rows, kv, buffer, d), in buffers that grow by `CHUNK` and are read whole: a slice of a
    bigger buffer is copied by torch's CPU matmul before it runs. Unfilled positions are zeros
    (finite) masked by an additive bias.
    """

    free_select = False  # dropping rows copies every layer's cache

    def __init__(self, dec: "GroupedDecoder", prompt_kv, prompt_mask: torch.Tensor):
        rows, dtype, device = dec.groups * dec.n, dec.dtype, dec.device
        self.dec = dec
        self.prompt_k = [k.to(dtype).transpose(-1, -2).contiguous() for k, _ in prompt_kv]
        self.prompt_v = [v.to(dtype).contiguous() for _, v in prompt_kv]
        # additive mask per row over [prompt | response buffer]: -inf at padding and unfilled positions
        self.bias = torch.zeros(rows, 1, 1, dec.width, device=device).masked_fill(
            ~prompt_mask.bool().repeat_interleave(dec.n, 0)[:, None, None], float("-inf"))
        self.resp_k = [torch.zeros(rows, dec.hkv, dec.d, 0, dtype=dtype, device=device) for _ in prompt_kv]
        self.resp_v = [torch.zeros(rows, dec.hkv, 0, dec.d, dtype=dtype, device=device) for _ in prompt_kv]
        self.slot = None  # each row's place in the full groups x n layout; None while no row has left

    def select(self, keep: torch.Tensor) -> None:
        dec = self.dec
        full = torch.arange(dec.groups * dec.n, device=dec.device) if self.slot is None else self.slot
        self.slot = full[keep]
        self.resp_k = [k[keep] for k in self.resp_k]
        self.resp_v = [v[keep] for v in self.resp_v]
        self.bias = self.bias[keep]

    def per_group(self, x: torch.Tensor) -> torch.Tensor:
        """Rows' (R, ...) values in the (groups, n, ...) layout, zeros where a row has left."""
        groups, n = self.dec.groups, self.dec.n
        if self.slot is None:
            return x.view(groups, n, *x.shape[1:])
        full = x.new_zeros(groups * n, *x.shape[1:])
        full[self.slot] = x
        return full.view(groups, n, *x.shape[1:])

    def per_row(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `per_group`: (groups * n, ...) back to the live rows."""
        return x if self.slot is None else x[self.slot]

    def open(self, t: int) -> None:
        """Make room for response position `t` (growing by `CHUNK`) and unmask it."""
        if t == self.resp_v[0].shape[2]:
            old, new = t, min(self.dec.capacity, t + CHUNK)
            for i, (k, v) in enumerate(zip(self.resp_k, self.resp_v)):
                self.resp_k[i] = torch.cat([k, k.new_zeros(*k.shape[:3], new - old)], 3)
                self.resp_v[i] = torch.cat([v, v.new_zeros(v.shape[0], v.shape[1], new - old, v.shape[3])], 2)
            self.bias = torch.cat([self.bias, self.bias.new_full((*self.bias.shape[:3], new - old), float("-inf"))], 3)
        self.bias[..., self.dec.width + t] = 0.0

    def attend(self, i: int, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, t: int) -> torch.Tensor:
        """Layer i's attention for the new token at response position t: qkv (R, (H + 2 Hkv) * D) from
        the projection, cos / sin (R, H + Hkv, D) with q's scale folded in -> (R, H * D)."""
        dec = self.dec
        r, h, hkv, d = qkv.shape[0], dec.h, dec.hkv, dec.d
        qk = qkv[:, : (h + hkv) * d].view(r, h + hkv, d)
        qk = qk * cos + torch.cat([-qk[..., d // 2 :], qk[..., : d // 2]], -1) * sin
        return self.attention(i, qk[:, :h], qk[:, h:], qkv[:, (h + hkv) * d :].view(r, hkv, d), t)

    def attention(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: int) -> torch.Tensor:
        """q (R, H, D) already scaled, k and v (R, Hkv, D) of the token at response position t -> (R, H * D)."""
        dec = self.dec
        r, hkv, d, g, groups, n, width = q.shape[0], dec.hkv, dec.d, dec.h // dec.hkv, dec.groups, dec.n, dec.width
        self.resp_k[i][:, :, :, t] = k
        self.resp_v[i][:, :, t] = v
        q = q.reshape(r, hkv, g, d)
        # the prompt: a group's n x g query heads per kv head against the prompt's keys, read once
        qg = self.per_group(q).transpose(1, 2).reshape(groups, hkv, n * g, d)
        s_prompt = torch.matmul(qg, self.prompt_k[i])  # (groups, hkv, n * g, width)
        s_prompt = self.per_row(s_prompt.view(groups, hkv, n, g, -1).transpose(1, 2).reshape(groups * n, hkv, g, -1))
        s_resp = torch.matmul(q, self.resp_k[i])  # (R, hkv, g, buffer positions)
        p = torch.softmax(torch.cat([s_prompt, s_resp], -1) + self.bias, -1).to(dec.dtype)  # float32 scores
        pg = self.per_group(p[..., :width]).transpose(1, 2).reshape(groups, hkv, n * g, width)
        o_prompt = torch.matmul(pg, self.prompt_v[i]).view(groups, hkv, n, g, d).transpose(1, 2)
        o_prompt = self.per_row(o_prompt.reshape(groups * n, hkv, g, d))
        out = torch.matmul(p[..., width:], self.resp_v[i]) + o_prompt
        return out.reshape(r, dec.h * d)


class _NativeCache:
    """Keys and values for the compiled kernel (`native.decode_attention`, CPU, float32 / bfloat16).

    Keys in blocks of 16 positions, (.., blocks, d, 16): the kernel reads a block as one contiguous
    stretch and scores its 16 positions at once. A prompt's keys and values are stored once for
    its rows (`group` says which prompt a row continues). The kernel reads filled positions only,
    through strides, so the response buffers are allocated for `capacity` positions once
    (uninitialised: memory is committed as it is written) and never grow. Each row's response
    lives in its own slot of the buffers (`slot`), so dropping rows copies nothing: it only
    shortens `group` and `slot` (`free_select`).
    """

    free_select = True

    def __init__(self, dec: "GroupedDecoder", prompt_kv, prompt_mask: torch.Tensor, ops):
        from . import native

        self.dec, self.ops = dec, ops
        dtype, device, b = dec.dtype, dec.device, native.BLOCK
        pad = -dec.width % b
        self.prompt_k = [F.pad(k.to(dtype), (0, 0, 0, pad)).unflatten(2, (-1, b)).transpose(-1, -2).contiguous()
                         for k, _ in prompt_kv]  # (groups, kv, blocks, d, 16)
        self.prompt_v = [v.to(dtype).contiguous() for _, v in prompt_kv]
        self.prompt_bias = F.pad(prompt_mask.bool(), (0, pad)).logical_not().float().mul(-1e30).contiguous()
        rows, blocks = dec.groups * dec.n, -(-dec.capacity // b)
        self.slot = torch.arange(rows, device=device)
        self.group = self.slot // dec.n
        self.resp_k = [torch.empty(rows, dec.hkv, blocks, dec.d, b, dtype=dtype, device=device) for _ in prompt_kv]
        self.resp_v = [torch.empty(rows, dec.hkv, blocks * b, dec.d, dtype=dtype, device=device) for _ in prompt_kv]

    def select(self, keep: torch.Tensor) -> None:
        self.group, self.slot = self.group[keep], self.slot[keep]

    def open(self, t: int) -> None:
        """Nothing to do: the buffers hold `capacity` positions."""

    def attend(self, i: int, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, t: int) -> torch.Tensor:
        """As `_EagerCache.attend`, in two kernel calls: rotary + cache write, then attention."""
        dec = self.dec
        q = self.ops.rotary_append(qkv, cos, sin, self.resp_k[i], self.resp_v[i], self.slot, dec.h, t)
        q = q.view(q.shape[0], dec.hkv, dec.h // dec.hkv, dec.d)
        return self.ops.decode_attention(q, self.prompt_k[i], self.prompt_v[i], self.prompt_bias, self.resp_k[i],
                                         self.resp_v[i], t + 1, self.group, self.slot)


def native_reason(model, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the compiled attention kernel cannot run `model`'s decode steps (None when it can)."""
    from . import native

    config = model.config
    h, hkv = config.num_attention_heads, config.num_key_value_heads
    d = getattr(config, "head_dim", None) or config.hidden_size // h
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return f"{device.type} {dtype}: the kernel is for CPU float32 / bfloat16"
    if d % native.BLOCK or h // hkv > native.MAX_GROUP:
        return f"head dim {d} (a multiple of {native.BLOCK} needed) or {h // hkv} query heads per kv head (at most {native.MAX_GROUP})"
    if native.kernels() is None:
        return "the kernel is off (TINYR1_NATIVE=0) or could not be built"
    return None


class GroupedDecoder:
    """Decode steps for `rows = groups x n` sequences, row r continuing prompt r // n.

    Built after the prefill of the `groups` prompts (`prompt_kv`: per layer the (groups, kv heads,
    width, head dim) keys and values transformers' cache holds, `prompt_mask` (groups, width)
    True at real tokens). `step(tokens, positions)` appends one token per live row and returns
    its next-token logits; `select(keep)` drops rows (their prompt's cache stays shared).
    Attention runs in the compiled kernel where `native_reason` allows (`native=None`), else as
    eager PyTorch ops; `native=False` forces the latter.
    """

    def __init__(self, model, prompt_kv, prompt_mask: torch.Tensor, n: int, capacity: int, native: bool | None = None):
        config = model.config
        self.model, self.inner = model, model.model
        self.h, self.hkv = config.num_attention_heads, config.num_key_value_heads
        self.d = getattr(config, "head_dim", None) or config.hidden_size // self.h
        self.eps = config.rms_norm_eps
        weight = self.inner.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        self.groups, self.n, self.width = prompt_mask.shape[0], n, prompt_mask.shape[1]
        rows = self.groups * n
        self.lin = _Linears(_prepacked_cpu(self.dtype, self.device), rows)
        self.layers, self.head = _prepared_weights(model, self.lin)
        self.length, self.capacity = 0, capacity
        reason = native_reason(model, self.dtype, self.device) if native is not False else "native=False"
        if native and reason:
            raise ValueError(f"native attention asked for but unavailable: {reason}")
        hidden = (config.hidden_size,)
        if reason is None:
            from . import native as native_mod

            ops = native_mod.kernels()
            self.cache = _NativeCache(self, prompt_kv, prompt_mask, ops)
            self.norm = lambda x, w: ops.rms_norm(x, w, self.eps)
            self.act = ops.silu_mul
        else:
            self.cache = _EagerCache(self, prompt_kv, prompt_mask)
            self.norm = lambda x, w: F.rms_norm(x, hidden, w, self.eps)
            self.act = _silu_mul
        scale = self.d**-0.5  # folded into q's rotation; k's rows keep 1
        self.qk_scale = torch.cat([torch.full((self.h, 1), scale), torch.ones(self.hkv, 1)]).to(self.device, self.dtype)

    @property
    def native(self) -> bool:
        return isinstance(self.cache, _NativeCache)

    @property
    def free_select(self) -> bool:
        """True when `select` copies nothing (the kernel's slots), so rows can leave every step."""
        return self.cache.free_select

    def select(self, keep: torch.Tensor) -> None:
        """Keep only rows `keep` (ascending indices into the current rows)."""
        self.cache.select(keep)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens, positions (R,) -> next-token logits (R, vocab) in the model's dtype."""
        if self.length >= self.capacity:
            raise RuntimeError(f"decode cache of {self.capacity} positions is full")
        t, cache = self.length, self.cache
        cache.open(t)
        x = self.inner.embed_tokens(tokens)
        cos, sin = self.inner.rotary_emb(x, positions[:, None])
        cos, sin = cos[:, :1] * self.qk_scale, sin[:, :1] * self.qk_scale  # (R, H + Hkv, D)
        lin, norm, act = self.lin, self.norm, self.act
        for i, (norm1, qkv_w, o_w, norm2, gate_up_w, down_w) in enumerate(self.layers):
            o = cache.attend(i, lin(norm(x, norm1), qkv_w), cos, sin, t)
            x = lin(o, o_w, add=x)
            x = lin(act(lin(norm(x, norm2), gate_up_w)), down_w, add=x)
        self.length += 1
        return lin(norm(x, self.inner.norm.weight), self.head)
