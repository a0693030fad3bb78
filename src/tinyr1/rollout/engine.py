"""The fast sampling engine: our own decode loop over transformers' forward.

Same contract as the reference engine (`sampler.ENGINES["hf"]`): left-padded prompts in,
`n` raw responses per prompt out. What makes it faster on CPU than `generate` (profiled on the
135M model, batch 64, bf16):

  - for Llama-family models (Llama, SmolLM2, Qwen2, Mistral) the decode steps run in
    `decoder.GroupedDecoder`: the model's weights in our own step, a prompt's keys and values
    stored once for its `n` samples (cascade attention), oneDNN-prepacked bf16 weights on CPU
    (1.4x the tokens/s of the path below, 8 prompts x 8 samples x 128 tokens on the 135M model);
    other models step through transformers' forward with the cache and attention below;
  - one prefill per prompt, shared by its `n` samples (the KV cache is repeated, not recomputed);
  - logits only for the last position (`logits_to_keep`, `last_position`): the 49k-vocabulary
    head is a large share of a small model's compute;
  - a preallocated KV cache (`PreallocatedLayer`): a decode step writes one position instead of
    concatenating the whole cache again (`DynamicCache` copies it every step);
  - decode attention as two small matmuls on the key/value heads (`decode_attention`): torch's
    CPU flash kernel spent more time on a 1-token query than all the linear layers together;
  - sampling by inverse CDF (softmax, cumulative sum in float64, one uniform per row):
    `torch.multinomial` over 64 x 49k probabilities took ~45 ms per step here, this ~2 ms; on CPU
    the compiled `draw` op does it in one pass over the bf16 logits (`draw_with_logprobs`), and
    returns each token's log-probability with it;
  - finished rows leave the batch: at once with the compiled kernel's caches (a row's keys and
    values stay in its slot, nothing is copied), else once a quarter of the rows are done
    (compacting copies every layer's cache, so it is not done for each finished row).

Greedy decoding follows the same arithmetic as `generate` (same masks and positions); decode
attention accumulates in float32, so in float32 the tokens are identical (tests check this).
"""

from __future__ import annotations

import time

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tinyr1.rollout import decoder, native

ATTENTION = "tinyr1_decode"
STEP_TIMES: list[tuple[int, float]] | None = None  # set to a list to record (rows, seconds) of each decode iteration


def sample_next(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next tokens (R,) from last-position logits (R, V): argmax when temperature is 0, else
    sampling from softmax(logits / temperature) restricted to the top-p nucleus.

    Sampling inverts the cumulative distribution at one uniform draw per row, in two levels:
    first a block of `BLOCK` tokens by the blocks' masses, then a token inside that block. A
    single float32 running sum over 49k tokens would swallow probabilities below ~1e-7 of the
    total; block masses and in-block sums keep them (and it is cheaper than float64).
    """
    return _draw(logits, temperature, top_p)[0]


def _draw(logits: torch.Tensor, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sample_next`, also returning the probabilities drawn from (None for argmax)."""
    if temperature == 0:
        return logits.argmax(-1), None
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return inverse_cdf(probs), probs


def draw_with_logprobs(logits: torch.Tensor, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_next`'s tokens (R,) and their log-probabilities at temperature 1 (R,) float32:
    the sampling model's own distribution, what the update recomputes.

    On CPU, sampling without a nucleus (top_p 1) runs in the compiled `draw` op (native.py): the
    same two-level inverse CDF at the same uniform draws, in one pass over the bf16 logits, with
    no (rows, vocab) float32 tensors allocated (at batch 64 those allocations and their page
    faults made the draw 3-8 ms of a 40 ms decode iteration; the op takes ~0.5 ms)."""
    ops = native.kernels() if logits.device.type == "cpu" and temperature > 0 and top_p >= 1.0 else None
    if ops is not None:
        u = torch.rand(logits.shape[0], dtype=torch.float64)
        return ops.draw(logits, u, float(temperature))
    logits = logits.float()
    tokens, probs = _draw(logits, temperature, top_p)
    if temperature == 1.0 and top_p >= 1.0:  # the drawn-from distribution is the one to report
        return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1).log()
    return tokens, logits.gather(-1, tokens[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


BLOCK = 256


def inverse_cdf(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of `probs` (R, V) (non-negative, any total): the first token whose
    cumulative mass exceeds u * total for u ~ U[0, 1). A zero-probability token is never drawn."""
    r, v = probs.shape
    padded = (torch.nn.functional.pad(probs, (0, -v % BLOCK)) if v % BLOCK else probs).view(r, -1, BLOCK)
    block_cdf = padded.sum(-1).double().cumsum(-1)  # (R, V / BLOCK), small: float64 costs nothing here
    u = torch.rand(r, 1, dtype=torch.float64, device=probs.device) * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, u, right=True).clamp_(max=block_cdf.shape[1] - 1)  # (R, 1)
    below = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)), torch.zeros_like(u))
    inner_cdf = padded.gather(1, block[:, :, None].expand(r, 1, BLOCK)).squeeze(1).cumsum(-1, dtype=torch.float64)
    inner = torch.searchsorted(inner_cdf, u - below, right=True).clamp_(max=BLOCK - 1)
    # rounding can put u - below at the block's very end: step back to its last non-zero token
    inner = torch.minimum(inner, (inner_cdf < inner_cdf[:, -1:]).sum(-1, keepdim=True))
    return (block * BLOCK + inner).squeeze(-1).clamp_(max=v - 1)


def decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """Attention for transformers' `AttentionInterface`: a 1-token query (decode) as two matmuls
    in float32 on the key/value heads; anything longer (prefill) goes to `sdpa` unchanged.

    query (B, H, Q, D); key, value (B, Hkv, L, D) from the cache (float32 in `PreallocatedLayer`);
    attention_mask: sdpa's boolean (B, 1, Q, L) mask (True = attend) or None. Returns
    (B, Q, H, D) in the query's dtype, like the other attention functions.
    """
    b, h, q, d = query.shape
    if q != 1:
        key, value = key.to(query.dtype), value.to(query.dtype)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    hkv = key.shape[1]
    scale = scaling if scaling is not None else d**-0.5
    grouped = query.reshape(b, hkv, h // hkv, d).float()  # the query heads sharing each key/value head
    scores = torch.matmul(grouped, key.float().transpose(-1, -2)) * scale  # (B, Hkv, G, L)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask[:, :, -1:, : key.shape[2]], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), value.float())  # (B, Hkv, G, D)
    return out.reshape(b, h, 1, d).transpose(1, 2).to(query.dtype), None


def _register_attention() -> None:
    AttentionInterface.register(ATTENTION, decode_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # same boolean masks as sdpa


def preallocated_cache(capacity: int):
    """A transformers `DynamicCache` whose layers hold `capacity` positions, in float32."""
    class PreallocatedLayer(DynamicLayer):
        """Keys and values in (B, Hkv, capacity, D) float32 buffers; `keys`/`values` are views
        of the filled part. A decode step writes one position; nothing is concatenated."""

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            if not self.is_initialized:
                self.dtype, self.device, self.is_initialized, self.length = torch.float32, key_states.device, True, 0
                shape = (*key_states.shape[:2], capacity, key_states.shape[-1])
                self.k_buf = key_states.new_empty(shape, dtype=torch.float32)
                self.v_buf = key_states.new_empty(shape, dtype=torch.float32)
            if self.length + n > capacity:
                raise RuntimeError(f"KV cache of {capacity} positions is full")
            self.k_buf[:, :, self.length : self.length + n] = key_states
            self.v_buf[:, :, self.length : self.length + n] = value_states
            self.length += n
            self._views()
            return self.keys, self.values

        def _views(self):
            self.keys, self.values = self.k_buf[:, :, : self.length], self.v_buf[:, :, : self.length]

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:
                self.k_buf = self.k_buf.repeat_interleave(repeats, dim=0)
                self.v_buf = self.v_buf.repeat_interleave(repeats, dim=0)
                self._views()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized:
                self.k_buf, self.v_buf = self.k_buf[indices], self.v_buf[indices]
                self._views()

    cache = DynamicCache()
    cache.layer_class_to_replicate = PreallocatedLayer
    return cache


@torch.no_grad()
def fast_generate(model, tokenizer, prompt_ids: list[list[int]], params, stops: list[int]):
    """Decode `params.n` responses per prompt; returns them grouped by prompt (raw, uncut), and
    each token's log-probability under the sampling model at temperature 1 (what the update
    recomputes: their difference is the sampler/trainer mismatch reported in metrics)."""
    _register_attention()
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    try:
        return _decode(model, tokenizer, prompt_ids, params, stops)
    finally:
        model.set_attn_implementation(previous)


def _decode(model, tokenizer, prompt_ids, params, stops):
    device = next(model.parameters()).device
    width, n = max(len(p) for p in prompt_ids), params.n
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    # 1. prefill each prompt once; its n samples share (grouped decoder) or copy (cache) its keys
    stepper = _GroupedSteps if decoder.unsupported_reason(model) is None else _ForwardSteps
    steps = stepper(model, ids, mask, positions, n, params.max_new_tokens)
    logits = steps.first_logits.float().repeat_interleave(n, dim=0)
    next_pos = positions[:, -1].repeat_interleave(n, dim=0) + 1

    # 2. decode; `rows` maps the batch rows back to the N output sequences, `live` marks rows
    # still generating (finished rows ride along until the next compaction, their tokens ignored)
    total = len(prompt_ids) * n
    responses: list[list[int]] = [[] for _ in range(total)]
    logprobs: list[list[float]] = [[] for _ in range(total)]
    rows = torch.arange(total, device=device)
    live = torch.ones(total, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(stops, device=device)
    for step in range(params.max_new_tokens):
        t0 = time.perf_counter()
        tokens, lp = draw_with_logprobs(logits, params.temperature, params.top_p)
        for r, t, x in zip(rows[live].tolist(), tokens[live].tolist(), lp[live].tolist()):
            responses[r].append(t)
            logprobs[r].append(x)
        live &= ~torch.isin(tokens, stop_ids)
        n_live = int(live.sum())
        if step == params.max_new_tokens - 1 or n_live == 0:
            break
        done = len(rows) - n_live
        if done and (steps.free_select or 4 * done >= len(rows) or n_live <= 4 < len(rows)):  # drop finished rows
            keep = live.nonzero().squeeze(-1)
            steps.select(keep)
            rows, tokens, next_pos, live = rows[keep], tokens[keep], next_pos[keep], live[keep]
        logits = steps.step(tokens, next_pos, live)
        next_pos = next_pos + 1
        if STEP_TIMES is not None:  # the draw, the bookkeeping and the model's step for len(rows) rows
            STEP_TIMES.append((len(rows), time.perf_counter() - t0))
    return responses, logprobs


def last_position(ids: torch.Tensor) -> torch.Tensor:
    """`logits_to_keep` for the last position only, as an index rather than `1`: transformers then
    takes `hidden[:, [w - 1]]` (a copy) instead of the slice `hidden[:, -1:]`, and torch's matmul
    runs the head on that slice as a batched matmul over a copy of the weight expanded per prompt
    (8 prompts x the 135M model's 49k x 576 head: 0.3-0.55 s per prefill, against 3 ms)."""
    return torch.tensor([ids.shape[1] - 1], device=ids.device)


class _GroupedSteps:
    """Decode steps by `decoder.GroupedDecoder` (Llama-family models): prompts' caches shared."""

    def __init__(self, model, ids, mask, positions, n, max_new_tokens):
        cache = DynamicCache()
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                    logits_to_keep=last_position(ids))
        self.first_logits = out.logits[:, -1]
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.decoder = decoder.GroupedDecoder(model, kv, mask.bool(), n, max_new_tokens)

    @property
    def free_select(self):
        return self.decoder.free_select

    def select(self, keep):
        self.decoder.select(keep)

    def step(self, tokens, positions, live):
        return self.decoder.step(tokens, positions)


class _ForwardSteps:
    """Decode steps through transformers' forward (any model): a preallocated cache per row."""

    free_select = False  # dropping rows copies the cache

    def __init__(self, model, ids, mask, positions, n, max_new_tokens):
        self.model, self.cache = model, preallocated_cache(ids.shape[1] + max_new_tokens)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=self.cache,
                    use_cache=True, logits_to_keep=last_position(ids))
        self.first_logits = out.logits[:, -1]
        if n > 1:
            self.cache.batch_repeat_interleave(n)
        self.mask = mask.repeat_interleave(n, dim=0)

    def select(self, keep):
        self.cache.batch_select_indices(keep)
        self.mask = self.mask[keep]

    def step(self, tokens, positions, live):
        self.mask = torch.cat([self.mask, live[:, None].to(self.mask.dtype)], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=positions[:, None],
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]
