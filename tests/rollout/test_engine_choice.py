"""sampling.engine chooses what samples; `vllm` is wired through the sampling copy's refresh.

vLLM itself is not installed in the test environment (tests/rollout/test_vllm_engine.py runs it
where it is): a stand-in engine with the same contract records every weight push and samples
with the fast engine on the weights it was given.
"""

import copy

import pytest
import torch

from tinyr1.config import validate
from tinyr1.errors import UserError
from tinyr1.recipes.grpo import train
from tinyr1.rollout import policy_copy
from tinyr1.rollout.sampler import ENGINES
from tinyr1.training.checkpoint import new_run_dir


class StandInEngine:
    """VLLMEngine's contract: `(None, tokenizer, prompt_ids, params, stops) -> (raws, logprobs)`, `load_weights(pairs)`."""

    def __init__(self, model):
        self.model, self.pushes = copy.deepcopy(model).eval(), []
        self.generation_config = self.model.generation_config

    def eval(self):
        return self

    def load_weights(self, named_tensors):
        state = self.model.state_dict()
        pushed = {}
        for name, tensor in named_tensors:
            if name in state and name not in pushed:
                state[name].copy_(tensor)
                pushed[name] = tensor.detach().clone()
        self.pushes.append(pushed)

    def __call__(self, model, tokenizer, prompt_ids, params, stops):
        return ENGINES["fast"](self.model, tokenizer, prompt_ids, params, stops)


def test_grpo_with_the_vllm_engine_pushes_the_policy_before_every_rollout_and_eval(tiny_job, tiny_model, monkeypatch):
    engines = []

    def build(model_cfg, dtype, memory_gib):
        engines.append(StandInEngine(tiny_model[0]))
        return engines[-1]

    monkeypatch.setattr(policy_copy, "vllm_engine", build)
    job = tiny_job(sampling__engine="vllm", run__steps=2, run__eval_every=1)
    run_dir = new_run_dir(job)
    summary = train(job, run_dir)
    (engine,) = engines  # built once, at the first refresh
    # before: eval; step 1: rollout, eval; step 2: rollout; after: eval = 5 refreshes, each a push of every weight
    assert len(engine.pushes) == 5 and all(len(p) == len(engine.pushes[0]) > 0 for p in engine.pushes)
    q = next(k for k in engine.pushes[0] if k.endswith("q_proj.weight"))
    assert torch.equal(engine.pushes[0][q], engine.pushes[1][q])  # nothing trained between the first eval and rollout
    assert not torch.equal(engine.pushes[1][q], engine.pushes[-1][q])  # the update changed what vLLM samples with
    assert summary["eval_after"]["n"] == 4


def test_the_vllm_engine_is_refused_where_vllm_is_not_installed(tiny_job, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(UserError, match="config key 'sampling.engine': vllm is not installed here"):
        validate(tiny_job(sampling__engine="vllm"))


def test_load_sampler_hands_the_evaluation_a_vllm_engine_holding_the_model(tiny_model_dir, tiny_model, monkeypatch):
    from tinyr1.config import ModelConfig, SamplingConfig

    monkeypatch.setattr(policy_copy, "vllm_engine", lambda cfg, dtype, gib: StandInEngine(tiny_model[0]))
    engine, tok = policy_copy.load_sampler(ModelConfig(name=str(tiny_model_dir), device="cpu"), SamplingConfig(engine="vllm"))
    assert isinstance(engine, StandInEngine) and len(engine.pushes) == 1 and tok.eos_token_id is not None
    model, _ = policy_copy.load_sampler(ModelConfig(name=str(tiny_model_dir), device="cpu"), SamplingConfig())
    assert isinstance(model, torch.nn.Module)
