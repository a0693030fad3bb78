"""vLLM as a rollout engine behind the sampler's engine contract (`sampling.engine: vllm`; an optional extra).

    engine = VLLMEngine(model_dir, dtype="bfloat16")
    raws, logprobs = engine(model, tokenizer, prompt_ids, params, stops)   # like sampler.ENGINES[...]
    engine.load_weights(merged_tensors(policy))                            # before each rollout

`VLLMEngine` holds one colocated `vllm.LLM` whose engine core runs in this process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so weight updates are handed over as tensors, not serialized
to another process. A call takes token ids, asks vLLM for `params.n` samples per prompt
(temperature, top-p, `max_new_tokens`, the stop ids) and returns `n` raw responses per prompt
grouped as the sampler expects, with each sampled token's log-probability at temperature 1
(`logprobs_mode="raw_logprobs"`: log-softmax of the model's logits before temperature and top-p,
what the fast engine returns and what the update recomputes). `load_weights` pushes new weights in
checkpoint names (`policy_copy.merged_tensors` yields them) through vLLM's in-place
`reload_weights`, then drops the prefix cache, whose keys and values belong to the old weights.

vLLM is imported only here, when an engine is built: importing tinyr1 never imports vllm.

How it departs from the fast engine (rollout/engine.py):
  - it ignores the `model` argument: vLLM samples with its own copy of the weights, loaded from
    `model_dir` (a save_pretrained folder) and changed only by `load_weights`; a trainer must push
    the policy's weights before each rollout or it samples from stale ones;
  - its random numbers are vLLM's sampler's, drawn (in this process) from torch's default
    generator: `torch.manual_seed` makes a rollout reproducible, but the samples differ from the
    fast engine's at the same seed. No per-request seeds: on CPU, vLLM 0.32 crashes with them
    ("CPU Generator does not use offset") once a step's token is discarded (chunked prefill);
  - the fast engine prefills each prompt once for its `n` samples; here the `n` samples are `n`
    requests, scheduled in the same step, and each prefills the whole prompt (vLLM's prefix
    cache only shares full 128-token KV blocks computed in an earlier step). Batching is vLLM's
    own (continuous batching, paged KV cache of `kv_cache_gib`), not `params.batch_size`;
  - greedy tokens equal the fast engine's only as far as the arithmetic agrees (vLLM has its own
    CPU kernels); in float32 on the embedded model they were identical (8 math prompts x 128
    tokens; the tests check 4 x 32), and the log-probs matched a plain forward to ~5e-6 mean; bf16
    was not compared;
  - building the engine changes process-wide state: vLLM would set torch's threads to 1 (it
    leaves them when OMP_NUM_THREADS is set: set here, to `threads`, by default torch's current
    count, which torch keeps), it starts a one-process gloo group, and its CPU worker swaps
    `torch.set_num_threads` for a no-op (put back here: in-process, vLLM binds no OpenMP
    threads, the reason for the swap).
"""

from __future__ import annotations

import contextlib
import logging
import os
from types import SimpleNamespace

import torch
from transformers import GenerationConfig


class VLLMEngine:
    """A colocated vLLM engine for the 'sampler' contract; see the module docstring."""

    def __init__(self, model_dir, dtype: str = "bfloat16", kv_cache_gib: float = 2, max_model_len: int = 2048,
                 threads: int | None = None, seed: int = 0, **llm_kwargs):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in this process
        threads = threads or torch.get_num_threads()
        os.environ["OMP_NUM_THREADS"] = str(threads)  # set, it keeps vLLM from dropping torch to 1 thread
        from vllm import LLM

        self.dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        set_num_threads = torch.set_num_threads
        self.llm = LLM(model=str(model_dir), dtype=dtype, max_model_len=max_model_len, seed=seed,
                       kv_cache_memory_bytes=int(kv_cache_gib * 2**30),  # else 90% of RAM less what is in use
                       logprobs_mode="raw_logprobs", **llm_kwargs)
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)
        try:  # the model's own end-of-turn ids, as sampler.stop_token_ids reads them from a transformers model
            self.generation_config = GenerationConfig.from_pretrained(str(model_dir))
        except OSError:  # no generation_config.json: the tokenizer's EOS alone
            self.generation_config = None
        # what sampler.check_context reads: a prompt with its new tokens must fit vLLM's max_model_len
        self.config = SimpleNamespace(max_position_embeddings=max_model_len)

    def eval(self):
        """Nothing to switch: vLLM only infers (callers treat a sampler like a model in eval mode)."""
        return self

    def __call__(self, model, tokenizer, prompt_ids, params, stops):
        """`n` raw responses per prompt (grouped by prompt) and their tokens' log-probs at temperature 1."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = params.temperature == 0
        request = SamplingParams(n=params.n, temperature=0.0 if greedy else params.temperature,
                                 top_p=1.0 if greedy else params.top_p, max_tokens=params.max_new_tokens,
                                 stop_token_ids=list(stops), logprobs=0, flat_logprobs=True,
                                 detokenize=False, skip_special_tokens=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], request, use_tqdm=False)
        raws, logprobs = [], []
        for out in outs:  # in prompt order; a prompt's n completions in index order
            for c in sorted(out.outputs, key=lambda c: c.index):
                raws.append(list(c.token_ids))
                logprobs.append(list(c.logprobs.logprobs))  # logprobs=0: one entry per position, the sampled token
        return raws, logprobs

    def load_weights(self, named_tensors) -> None:
        """Replace the engine's weights with (name, tensor) pairs in checkpoint names (HF keys);
        later rollouts sample from them."""
        tensors = ((name, t.to(self.dtype)) for name, t in named_tensors)  # in the engine's dtype: no cast warning per weight
        with _quiet_rotary():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": tensors, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # cached prompt keys/values were computed with the old weights


class _RotaryFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "RotaryEmbedding: Failed to load weights" not in record.getMessage()


@contextlib.contextmanager
def _quiet_rotary():
    """vLLM's in-place reload warns that the rotary embedding has no weights to load (it has none:
    its frequencies are computed, and outputs after a reload match the fast engine's, tested);
    that one line per push is dropped."""
    logger, f = logging.getLogger("vllm"), _RotaryFilter()
    handlers = [logger, *logger.handlers]
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)
