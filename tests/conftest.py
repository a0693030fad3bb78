"""Shared fixtures: a tiny random-init Llama model with a small byte-level BPE tokenizer.

Built once per test session in a temporary folder, offline, in about a second. The tokenizer
has a ChatML chat template like SmolLM2's, so prompts, stopping and decoding follow the same
paths as with the real model.
"""

from __future__ import annotations

import json

import pytest

from tinyr1.config import TrainJob, load_config
from tinyr1.rewards import rules

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Calculate 12 + 7. The answer is 19.",
    "Solve the problem step by step. Put the final answer in \\boxed{}.",
    "<think> 3 * 4 = 12 </think> <answer> 12 </answer>",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "#### 72 What is 5 - 3 - 6? The final answer is $\\boxed{-4}$.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) { } [ ] $ \\frac{1}{2}",
]


def build_tiny_model(path, seed: int = 0):
    """Write a tiny Llama (2 layers, hidden 32) and its tokenizer to `path`; return `path`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from tinyr1.models.tiny import build_tiny_llama

    bpe = ByteLevelBPETokenizer()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHAT_TEMPLATE
    return build_tiny_llama(tok, path, seed=seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Folder holding a tiny random-init Llama and its tokenizer (save_pretrained format)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """(model, tokenizer) loaded through tinyr1's own loader, float32 on CPU."""
    from tinyr1.config import ModelConfig
    from tinyr1.models.load import load_model

    return load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))


# ----------------------------------------------------------------------------- reward-model files


def write_jsonl_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def responses_file(tmp_path):
    """Two responses per problem, one right and one wrong (what `rm collect` writes)."""
    rows = []
    for a in range(1, 5):
        for k, (b, ok) in enumerate([(a + 1, True), (a + 2, False)]):
            rows.append({"id": f"q{a}#{k}", "problem_id": f"q{a}", "prompt": f"Calculate {a} + 1.", "answer": str(a + 1),
                         "completion": f"{a} + 1 = {b}\nThe answer is \\boxed{{{b}}}.", "extracted": str(b), "label": ok})
    return write_jsonl_rows(tmp_path / "responses.jsonl", rows)


@pytest.fixture
def steps_file(tmp_path):
    rows = [{"prompt": f"Calculate {a} + 1.", "completions": [f"{a} + 1 = {a + 1 + w}", f"The answer is {a + 1 + w}."],
             "labels": [not w, not w], "soft_labels": [0.5 if w else 1.0, 0.0 if w else 1.0]} for a in range(1, 5) for w in (0, 1)]
    return write_jsonl_rows(tmp_path / "steps.jsonl", rows)


# ----------------------------------------------------------------------------- tiny training jobs


def _length_parity(problems, responses, **_):
    """A reward a random model earns half the time, so advantages are not all zero."""
    return [float(len(r) % 2) for r in responses]


@pytest.fixture
def varied_reward(monkeypatch):
    monkeypatch.setitem(rules.REWARDS, "length_parity", _length_parity)


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    rows = [{"question": f"Calculate {a} + {b}.", "answer": str(a + b)} for a in range(1, 7) for b in range(1, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_job(tiny_model_dir, problems_file, tmp_path, varied_reward):
    def make(**overrides) -> TrainJob:
        values = {
            "model": {"name": str(tiny_model_dir), "device": "cpu"},
            "data": {"source": f"jsonl:{problems_file}", "test_size": 4},
            "sampling": {"max_new_tokens": 8, "batch_size": 16},
            "reward": {"weights": {"length_parity": 1.0, "correctness": 0.5}},
            "run": {"output_dir": str(tmp_path / "runs"), "steps": 2, "eval_every": 0, "eval_size": 4, "progress": False},
            "lora": {"rank": 4, "alpha": 8},
            "optim": {"lr": 0.01, "micro_batch_size": 4},
            "grpo": {"batch_size": 8, "group_size": 4},
        }
        for key, value in overrides.items():
            section, name = key.split("__")
            values.setdefault(section, {})[name] = value
        return load_config(TrainJob, None, values)

    return make
