"""Sampling: batched generation with a KV cache, behind one small interface.

`sample(model, tokenizer, prompts, params)` returns a `Samples` record: `n` responses per prompt,
grouped contiguously (rows `[i*n, (i+1)*n)` answer prompt `i`), each cut after its first
end-of-turn token. Engines are chosen in one place (`ENGINES`); the reference engine is
transformers' `generate` (left-padded batches, KV cache, temperature / top-p).

An engine takes (model, tokenizer, prompt_ids, params, stop_ids) and returns `n` raw token lists
per prompt (N lists in all) plus, if it has them, the sampled tokens' log-probs (else None). A faster engine only
has to honour that contract, with greedy outputs identical to `generate` in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tinyr1 import faults
from tinyr1.errors import UserError
from tinyr1.rollout.engine import fast_generate
from tinyr1.types import Samples


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt (G)
    batch_size: int = 64  # sequences generated together (the fast and hf engines; vLLM batches on its own)
    engine: str = "fast"  # a key of ENGINES


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the model's generation EOS(s)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return sorted(ids)


def cut_at_stop(tokens: list[int], stops: set[int]) -> tuple[list[int], bool]:
    """Keep tokens up to and including the first stop token; report whether one was found."""
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[: i + 1], True
    return tokens, False


@torch.no_grad()
def _hf_generate(model, tokenizer, prompt_ids: list[list[int]], params: SamplingParams, stops: list[int]) -> list[list[int]]:
    """One batch through transformers' `generate`; returns n raw responses per prompt."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):  # left padding: every prompt ends where generation starts
        input_ids[i, width - len(p) :] = torch.tensor(p)
        attention[i, width - len(p) :] = 1
    greedy = params.temperature == 0
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        do_sample=not greedy,
        temperature=None if greedy else params.temperature,
        top_p=None if greedy else params.top_p,
        top_k=None,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=params.n,
        eos_token_id=stops,
        pad_token_id=pad,
    )
    return out[:, width:].tolist(), None


def _fast_generate(model, tokenizer, prompt_ids, params, stops):
    return fast_generate(model, tokenizer, prompt_ids, params, stops)


def _vllm_generate(engine, tokenizer, prompt_ids, params, stops):
    # the `model` handed to `sample` is a rollout.vllm_engine.VLLMEngine: it samples with its own
    # copy of the weights (pushed by SamplingCopy.refresh / load_sampler)
    return engine(None, tokenizer, prompt_ids, params, stops)


ENGINES = {"hf": _hf_generate, "fast": _fast_generate, "vllm": _vllm_generate}


def check_context(model, prompt_ids: list[list[int]], max_new_tokens: int, names: list[str] | None = None) -> None:
    """Refuse (`UserError`) a prompt that leaves no room for `max_new_tokens` in the model's
    positions (`max_position_embeddings`): past them a model returns garbage, slowly and at great
    memory cost, instead of an answer. `names`: what to call each prompt in the message."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    for i, ids in enumerate(prompt_ids):
        if len(ids) + max_new_tokens > limit:
            name = f"problem {names[i]!r}" if names else f"prompt {i}"
            raise UserError(f"{name}: its prompt is {len(ids):,} tokens, which with sampling.max_new_tokens={max_new_tokens} "
                            f"exceeds the model's {limit:,} positions; shorten or drop that question (or lower "
                            "prompt.few_shot or sampling.max_new_tokens)")


def sample(model, tokenizer, prompts: list[str], params: SamplingParams, engine: str | None = None, progress: bool = False,
           names: list[str] | None = None) -> Samples:
    """Generate `params.n` responses for each prompt text.

    Prompts are processed in chunks of about `batch_size // n` prompts. Returns `Samples` with
    N = len(prompts) * n responses, grouped by prompt, each cut after its first stop token.
    A prompt too long for the model's context raises `UserError` (`check_context`; `names`
    name the prompts in its message).
    """
    engine = engine or params.engine
    if engine not in ENGINES:
        raise ValueError(f"unknown sampling engine {engine!r}; expected one of {', '.join(ENGINES)}")
    generate = ENGINES[engine]
    stops = stop_token_ids(model, tokenizer)
    stop_set = set(stops)
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    check_context(model, prompt_ids, params.max_new_tokens, names)
    per_chunk = max(1, params.batch_size // max(1, params.n))
    chunks = range(0, len(prompt_ids), per_chunk)
    if progress:
        chunks = tqdm(chunks, total=math.ceil(len(prompt_ids) / per_chunk), desc="sampling", unit="batch", leave=False)
    responses, finished, logprobs = [], [], []
    for start in chunks:
        raws, lps = generate(model, tokenizer, prompt_ids[start : start + per_chunk], params, stops)
        for k, raw in enumerate(raws):
            tokens, done = cut_at_stop(raw, stop_set)
            responses.append(tokens)
            finished.append(done)
            logprobs.append(lps[k][: len(tokens)] if lps is not None else None)
        faults.reached("sampling")  # tests: a process killed here dies mid-rollout
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return Samples(prompt_ids=prompt_ids, response_ids=responses, texts=texts, finished=finished, n=params.n,
                   logprobs=logprobs if all(lp is not None for lp in logprobs) else None)
