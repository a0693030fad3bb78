"""Fixtures for recipe smoke runs: a tiny job on a JSONL problem file, with a reward that varies."""

import json

import pytest

from tinyr1.config import TrainJob, load_config
from tinyr1.rewards import rules


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
