"""Every forward pass that turns token rows into per-token log-probs (and entropies, values).

All outputs are aligned with the input ids: position t holds log p(ids[t] | ids[:t]) and position
0 holds 0. Rows are right-padded (real tokens first) unless stated; shapes use `N` rows and `T`
positions (or `R` packed rows of width `W`).

- `sequence_logprobs`: the plain pass, only over the response positions' logits.
- `shared_prompt_logprobs`: GRPO groups, each prompt run once (`optim.share_prompt`).
- `packed_sequence_logprobs` / `packed_logprobs`: several sequences per row, kept apart by
  position ids (`optim.padding_free`, `sft.packing`); `check_packing` verifies a model does that.
- `reference_logprobs`: the KL reference (adapters disabled, or a frozen copy).
- `policy_and_values`: PPO's one pass for log-probs, values (from a critic) and entropy.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from tinyr1 import distributed as D
from tinyr1.algorithms.logprobs import token_logprobs, token_logprobs_and_entropy
from tinyr1.errors import UserError
from tinyr1.rollout.engine import last_position
from tinyr1.training.batching import first_fit_decreasing, micro_batches
from tinyr1.types import Rollout


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                      with_entropy: bool = False, start: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (N, T) aligned with `input_ids`, and entropies (N, T) or None.

    Only positions `start..` are computed (the others are 0): pass the first response position
    of the micro-batch and the 49k-vocabulary head and log-softmax never run over the prompts.
    The forward runs only up to the last real token (no compute on a padded tail), under
    bfloat16 autocast when `bf16`; log-probs are computed in float32.
    """
    lengths = attention_mask.sum(-1)
    width = int(lengths.max())
    start = max(1, min(start, width - 1))
    ids, mask = input_ids[:, :width], attention_mask[:, :width]
    # Right padding (every row's real tokens first, as in a Rollout) needs no mask: causal attention
    # already keeps real tokens off the padding after them, and positions count from 0 either way.
    # Without a mask, attention runs the causal kernel, which skips the masked half of the scores.
    right_padded = bool((mask == (torch.arange(width)[None] < lengths[:, None]).to(mask.dtype)).all())
    device = next(model.parameters()).device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        # logits for positions start-1 .. width-1: they predict tokens start .. width-1 (the last is unused)
        logits = model(input_ids=ids.to(device), attention_mask=None if right_padded else mask.to(device),
                       use_cache=False, logits_to_keep=width - start + 1).logits
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = None
    if with_entropy:  # one pass over the logits for both
        out[:, start:width], ent = token_logprobs_and_entropy(logits[:, :-1], ids[:, start:].to(device))
        entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
        entropy[:, start:width] = ent
    else:
        out[:, start:width] = token_logprobs(logits[:, :-1], ids[:, start:].to(device))
    return out, entropy


def shared_prompt_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
                           group_size: int, bf16: bool = False, with_entropy: bool = False,
                           prompt_model=None, rows_per_pass: int = 4) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` for whole groups of `group_size` rows that share one prompt (GRPO):
    each prompt runs through the model ONCE and the responses continue from its keys/values.
    Same numbers (up to float rounding) and same gradients (selecting cache rows is
    differentiable), with 1/G of the prompt compute.

    The responses run in passes of `rows_per_pass` rows of similar length, each over the cache
    rows of its prompts: one pass per group would pad every response to the group's longest,
    which costs about what sharing the prompt saves (measured: 8 x 8 rows, ~60-token prompts,
    40-128-token responses).

    Rows are grouped contiguously (rows g*G .. g*G+G-1 share a prompt), right-padded as in a
    Rollout. `prompt_model`: the module the prompt pass runs through (the plain module under DDP,
    so that the wrapper sees one forward per backward); `model` by default.
    """
    # One function on purpose (68 lines): the prompt pass, each chunk's cache rows and the scatter
    # back to (N, T) share one set of index bookkeeping (prompt_len, of, rows); split up, every
    # piece would need all of it passed around.
    n, g = input_ids.shape[0], group_size
    lengths = attention_mask.sum(-1)
    resp_len = response_mask.sum(-1).long()
    prompt_len = (lengths - resp_len)[::g]  # (k,) one prompt per group
    k, p_max = n // g, int(prompt_len.max())
    device = next(model.parameters()).device
    # prompts left-padded to a common length (positions count from each prompt's first token)
    p_ids = torch.zeros((k, p_max), dtype=torch.long)
    p_mask = torch.zeros((k, p_max), dtype=torch.long)
    for j, p in enumerate(prompt_len.tolist()):
        p_ids[j, p_max - p :] = input_ids[j * g, :p]
        p_mask[j, p_max - p :] = 1
    uneven = bool((prompt_len != p_max).any())
    width = input_ids.shape[1]
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device) if with_entropy else None
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        first = (prompt_model or model)(input_ids=p_ids.to(device), attention_mask=p_mask.to(device) if uneven else None,
                                         position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True,
                                         logits_to_keep=last_position(p_ids))
        order = torch.argsort(resp_len, descending=True, stable=True)
        for chunk in order.split(rows_per_pass):
            rows, of = chunk.tolist(), (chunk // g).tolist()  # response rows and their prompts
            r_max = max(1, int(resp_len[chunk].max()))
            r_ids = torch.zeros((len(rows), r_max), dtype=torch.long)
            for a, i in enumerate(rows):
                p, r = int(prompt_len[of[a]]), int(resp_len[i])
                r_ids[a, :r] = input_ids[i, p : p + r]
            cache = DynamicCache()
            pick = torch.tensor(of, device=device)
            for layer, kv in enumerate(first.past_key_values.layers):  # each row's prompt keys/values
                cache.update(kv.keys.index_select(0, pick), kv.values.index_select(0, pick), layer)
            # left padding of a shorter prompt stays masked; right padding of responses needs no mask
            mask = torch.cat([p_mask[of], torch.ones((len(rows), r_max), dtype=torch.long)], 1) if uneven else None
            r_pos = prompt_len[of][:, None] + torch.arange(r_max)[None]
            logits = model(input_ids=r_ids.to(device), attention_mask=None if mask is None else mask.to(device),
                           position_ids=r_pos.to(device), past_key_values=cache, use_cache=True).logits
            # the prompt's last logits predict the first response token; the response's predict the rest
            heads = [first.logits.index_select(0, pick)[:, -1:], logits[:, :-1]]
            targets = [r_ids[:, :1].to(device), r_ids[:, 1:].to(device)]
            if with_entropy:
                parts = [token_logprobs_and_entropy(h, t) for h, t in zip(heads, targets)]
                lp, ent = torch.cat([x for x, _ in parts], 1), torch.cat([y for _, y in parts], 1)
            else:
                lp = torch.cat([token_logprobs(h, t) for h, t in zip(heads, targets)], 1)
            for a, i in enumerate(rows):  # response token t of row i sits at prompt_len + t
                p, r = int(prompt_len[of[a]]), min(int(resp_len[i]), width - int(prompt_len[of[a]]))
                out[i, p : p + r] = lp[a, :r]
                if with_entropy:
                    entropy[i, p : p + r] = ent[a, :r]
    return out, entropy


def shares_prompts(rollout: Rollout) -> bool:
    """True when each group's rows start with the same prompt (so `shared_prompt_logprobs` applies)."""
    g, n = rollout.group_size, rollout.num_sequences
    if g < 2 or n % g:
        return False
    prompt_len = rollout.attention_mask.sum(-1) - rollout.response_mask.sum(-1).long()
    for j in range(0, n, g):
        p = int(prompt_len[j])
        if bool((prompt_len[j : j + g] != p).any()) or bool((rollout.input_ids[j : j + g, :p] != rollout.input_ids[j, :p]).any()):
            return False
    return True


def packed_sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                             with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` without padding: the micro-batch's sequences packed into rows as long
    as the longest (first-fit), one forward, results scattered back to the (N, T) layout.

    transformers keeps packed sequences apart when given position ids that restart at 0 and no
    attention mask (block-diagonal causal attention); `sft.check_packing` verifies a model does.
    Position 0 of every sequence gets 0, as in `sequence_logprobs`.
    """
    lengths = attention_mask.sum(-1).tolist()
    width = max(lengths)
    rows = first_fit_decreasing(lengths, width)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros_like(ids)
    place = []  # (sequence, packed row, offset)
    for k, row in enumerate(rows):
        col = 0
        for i in row:
            ids[k, col : col + lengths[i]] = input_ids[i, : lengths[i]]
            positions[k, col : col + lengths[i]] = torch.arange(lengths[i])
            place.append((i, k, col))
            col += lengths[i]
        positions[k, col:] = torch.arange(width - col)  # the tail is a segment of its own
    device = next(model.parameters()).device
    ids = ids.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, position_ids=positions.to(device), use_cache=False).logits
    if with_entropy:
        lp, ent = token_logprobs_and_entropy(logits[:, :-1], ids[:, 1:])
    else:
        lp, ent = token_logprobs(logits[:, :-1], ids[:, 1:]), None
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device) if with_entropy else None
    for i, k, col in place:  # lp[k, j] is the log-prob of packed token j + 1
        out[i, 1 : lengths[i]] = lp[k, col : col + lengths[i] - 1]
        if with_entropy:
            entropy[i, 1 : lengths[i]] = ent[k, col : col + lengths[i] - 1]
    return out, entropy


def packed_logprobs(model, input_ids: torch.Tensor, position_ids: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Per-token log-probs (R, W) of packed rows, aligned with `input_ids` (position 0 gets 0).

    The packed twin of `setup.sequence_logprobs`: no attention mask and no cache, so transformers
    infers the block-diagonal causal mask from `position_ids`. The log-prob of an example's first
    token is read from the previous example's last position; it is a prompt token, never trained on.
    """
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, position_ids=position_ids.to(device), use_cache=False).logits
    return torch.nn.functional.pad(token_logprobs(logits[:, :-1], ids[:, 1:]), (1, 0))


def check_packing(model) -> None:
    """Refuse `sft.packing` unless this model keeps packed examples apart (one tiny forward)."""
    device = next(model.parameters()).device
    first, second = torch.arange(10, 16)[None], torch.arange(20, 25)[None]
    with torch.no_grad():
        alone = model(input_ids=second.to(device), use_cache=False).logits
        ids, positions = torch.cat([first, second], 1), torch.cat([torch.arange(6), torch.arange(5)])[None]
        packed = model(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False).logits[:, 6:]
    if not torch.allclose(alone, packed, rtol=1e-3, atol=1e-3):
        raise UserError(f"sft.packing is unsupported for this model ({type(model).__name__}): packed examples would "
                        "attend to each other; set sft.packing=false")


def response_start(response_mask: torch.Tensor) -> int:
    """The first position holding a response token in any row of (N, T) `response_mask` (1 if none)."""
    has = response_mask.sum(-1) > 0
    return int(response_mask[has].argmax(-1).min()) if has.any() else 1


def reference_logprobs(model, ref_model, rollout: Rollout, micro_batch_size: int, bf16: bool = False) -> torch.Tensor:
    """Log-probs (N, T) of the reference policy: the adapters switched off (`ref_model` None), or the frozen copy."""
    out = torch.zeros(rollout.input_ids.shape)
    lengths = rollout.attention_mask.sum(-1)
    model = D.unwrap(model)  # no gradient here: the plain model, whose adapters can be switched off
    with torch.no_grad():
        for mb in micro_batches(rollout.num_sequences, micro_batch_size, lengths):
            if ref_model is None:
                with model.disable_adapter():
                    lp, _ = sequence_logprobs(model, rollout.input_ids[mb], rollout.attention_mask[mb], bf16,
                                              start=response_start(rollout.response_mask[mb]))
            else:
                lp, _ = sequence_logprobs(ref_model, rollout.input_ids[mb], rollout.attention_mask[mb], bf16,
                                          start=response_start(rollout.response_mask[mb]))
            out[mb] = lp.cpu()
    return out


def policy_and_values(model, critic, ids, mask, bf16: bool, with_entropy: bool = False):
    """PPO's pass: policy log-probs, values and entropies (or None), all (n, T) and aligned with `ids`
    (position 0 = 0). `critic(hidden (n, W, H), ids, mask) -> values (n, W)` reads the policy's last
    hidden states (or runs its own backbone)."""
    width = int(mask.sum(-1).max())
    ids_w, mask_w = ids[:, :width], mask[:, :width]
    device = next(model.parameters()).device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=ids_w.to(device), attention_mask=mask_w.to(device), use_cache=False, output_hidden_states=True)
        v = critic(out.hidden_states[-1], ids_w.to(device), mask_w.to(device))
    logp = torch.zeros(ids.shape, device=device)
    values = torch.zeros(ids.shape, device=device)
    values[:, 1:width] = v[:, :-1]  # the state before token t is the hidden state at t - 1
    entropy = None
    if with_entropy:  # one pass over the logits for both
        entropy = torch.zeros(ids.shape, device=device)
        logp[:, 1:width], entropy[:, 1:width] = token_logprobs_and_entropy(out.logits[:, :-1], ids_w[:, 1:].to(device))
    else:
        logp[:, 1:width] = token_logprobs(out.logits[:, :-1], ids_w[:, 1:].to(device))
    return logp.cpu(), values.cpu(), entropy
