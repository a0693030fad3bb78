"""A tiny random-init Llama for tests and dry runs: the real code paths in a second.

    build_tiny_llama(tokenizer, "/tmp/tiny")   # save_pretrained folder usable as model.name
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def build_tiny_llama(tokenizer, path: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a 2-layer Llama with `tokenizer`'s vocabulary, plus the tokenizer, to `path`."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
