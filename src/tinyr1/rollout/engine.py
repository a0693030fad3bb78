"""The fast sampling engine: our own decode loop over transformers' forward and KV cache.

Same contract as the reference engine (`sampler.ENGINES["hf"]`): left-padded prompts in,
`n` raw responses per prompt out. What makes it faster on CPU than `generate`:

  - one prefill per prompt, shared by its `n` samples (the KV cache is repeated, not recomputed);
  - logits only for the last position (`logits_to_keep=1`): the 49k-vocabulary head is a large
    share of a small model's compute;
  - finished rows leave the batch: their KV cache rows are dropped, so late steps run on the
    few sequences still going instead of a full batch of padding;
  - a lean loop: sampling, stop checks and bookkeeping are a few tensor ops per step.

Greedy decoding follows the same arithmetic as `generate` (same masks and positions), so in
float32 the tokens are identical; tests check this.
"""

from __future__ import annotations

import torch


def sample_next(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next tokens (R,) from last-position logits (R, V): argmax when temperature is 0, else
    sampling from softmax(logits / temperature) restricted to the top-p nucleus."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


@torch.no_grad()
def fast_generate(model, tokenizer, prompt_ids: list[list[int]], params, stops: list[int]) -> list[list[int]]:
    """Decode `params.n` responses per prompt; returns them grouped by prompt (raw, uncut)."""
    from transformers import DynamicCache

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

    # 1. prefill each prompt once, then give each of its n samples a copy of the cache
    cache = DynamicCache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1].float().repeat_interleave(n, dim=0)
    if n > 1:
        cache.batch_repeat_interleave(n)
    mask = mask.repeat_interleave(n, dim=0)
    next_pos = positions[:, -1].repeat_interleave(n, dim=0) + 1

    # 2. decode; `rows` maps the live batch rows back to the N output sequences
    total = len(prompt_ids) * n
    responses: list[list[int]] = [[] for _ in range(total)]
    rows = torch.arange(total, device=device)
    stop_ids = torch.tensor(stops, device=device)
    for step in range(params.max_new_tokens):
        tokens = sample_next(logits, params.temperature, params.top_p)
        for r, t in zip(rows.tolist(), tokens.tolist()):
            responses[r].append(t)
        live = ~torch.isin(tokens, stop_ids)
        if step == params.max_new_tokens - 1 or not live.any():
            break
        if not live.all():  # drop finished rows from every tensor and from the KV cache
            keep = live.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, tokens, mask, next_pos = rows[keep], tokens[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1].float()
        next_pos = next_pos + 1
    return responses
