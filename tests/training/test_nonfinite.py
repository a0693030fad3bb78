"""`optim.on_nonfinite`: a NaN or infinite reward, loss or gradient norm stops the run before the
optimizer touches the weights (one line naming the step and the quantity) or skips that step;
non-finite weights are never saved. NaNs are injected where a user would meet them: a reward
function, an absurd `lora.alpha`, a loss."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tinyr1.cli import main
from tinyr1.errors import UserError
from tinyr1.recipes import grpo, ppo, sft
from tinyr1.rewards import rules
from tinyr1.training.checkpoint import new_run_dir
from tinyr1.training.optim import NonFiniteError, NonFiniteGuard


def _nan_from_step(step: int):
    """A reward of 1 until `step`'s rollout, NaN from then on."""
    calls = []

    def reward(problems, responses, **_):
        calls.append(1)
        return [math.nan if len(calls) >= step else 1.0 for _ in responses]

    return reward


def _all_finite(folder) -> bool:
    return all(bool(torch.isfinite(t).all()) for f in folder.glob("*.safetensors") for t in load_file(f).values())


@pytest.mark.parametrize("recipe", [grpo, ppo], ids=["grpo", "ppo"])
def test_a_nan_reward_stops_the_run_before_the_optimizer_step(tiny_job, monkeypatch, recipe):
    monkeypatch.setitem(rules.REWARDS, "nan_later", _nan_from_step(2))
    job = tiny_job(run__steps=3, run__save_every=1, reward__weights={"nan_later": 1.0}, run__eval_size=1)
    job.algorithm = recipe.__name__.split(".")[-1]
    job.ppo.batch_size, job.ppo.mini_batch_size = 4, 2
    run_dir = new_run_dir(job)
    with pytest.raises(NonFiniteError, match=r"^step 2: reward/total is nan.*; stopped before the optimizer step") as e:
        recipe.train(job, run_dir)
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)  # the CLI prints it as one line, exit 2
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-1"] and not (run_dir / "final").exists()
    assert _all_finite(run_dir / "checkpoint-1")


def test_skip_drops_the_bad_steps_and_finishes_with_finite_weights(tiny_job, monkeypatch):
    monkeypatch.setitem(rules.REWARDS, "nan_later", _nan_from_step(2))
    job = tiny_job(run__steps=3, reward__weights={"nan_later": 1.0, "length_parity": 1.0}, optim__on_nonfinite="skip")
    run_dir = new_run_dir(job)
    grpo.train(job, run_dir)
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "optim/skipped" in line]
    assert [r["optim/skipped"] for r in rows] == [0, 1, 1]
    assert _all_finite(run_dir / "final") and _all_finite(run_dir / "checkpoint-3")


def test_an_absurd_lora_alpha_stops_the_run_with_one_line(tiny_model_dir, problems_file, tmp_path, capsys):
    """The reported case (`--lora.alpha=1e20`): NaN losses from step 2 used to train on, into final/, with exit 0."""
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "data": {"source": f"jsonl:{problems_file}", "test_size": 4},
        "sampling": {"max_new_tokens": 8, "batch_size": 16}, "reward": {"weights": {"correctness": 1.0}},
        "run": {"output_dir": str(tmp_path), "steps": 3, "eval_every": 0, "eval_size": 4, "progress": False, "save_every": 1},
        "lora": {"rank": 4, "alpha": 8}, "optim": {"lr": 0.01, "micro_batch_size": 4}, "grpo": {"batch_size": 8, "group_size": 4}}))
    code = main(["train", str(config), "--run.name=alpha", "--lora.alpha=1e20"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tinyr1:")]  # besides transformers' loading bars
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("tinyr1: error: step ") and " is nan" in lines[0] and "stopped before the optimizer step" in lines[0]
    assert not (tmp_path / "alpha" / "final").exists()
    assert all(_all_finite(c) for c in (tmp_path / "alpha").glob("checkpoint-*"))


def test_a_nan_loss_stops_reward_model_training(tiny_model_dir, responses_file, tmp_path, monkeypatch):
    from tinyr1.config import RMTrainJob, load_config
    from tinyr1.recipes import reward_model

    real, calls = reward_model.bce_loss, []

    def nan_on_second_step(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * math.nan if len(calls) > 1 else loss

    monkeypatch.setattr(reward_model, "bce_loss", nan_on_second_step)
    job = load_config(RMTrainJob, None, {"model": {"name": str(tiny_model_dir), "device": "cpu"}, "lora": {"rank": 0},
                                         "optim": {"micro_batch_size": 8},
                                         "train": {"data": str(responses_file), "out": str(tmp_path / "rm"), "max_steps": 3, "epochs": 5,
                                                   "batch_size": 8, "progress": False, "save_every": 1}})
    with pytest.raises(NonFiniteError, match=r"^step 2: loss/bce is nan"):
        reward_model.train_reward_model(job, "orm")
    assert _all_finite(tmp_path / "rm" / "checkpoint-1") and not (tmp_path / "rm" / "final").exists()


def test_the_guard_names_step_and_quantity_and_refuses_non_finite_weights():
    stop, skip = NonFiniteGuard("stop"), NonFiniteGuard("skip")
    assert stop.allows(5, {"loss/policy": 0.3}, torch.tensor(1.0))
    with pytest.raises(NonFiniteError, match=r"^step 5: loss/grad_norm is inf;"):
        stop.allows(5, {"loss/policy": 0.3}, torch.tensor(math.inf))
    assert not skip.allows(5, {"reward/total": math.nan}) and skip.skipped == 1
    with pytest.raises(NonFiniteError, match="step 7: the optimizer step made weights non-finite"):
        skip.check_weights(7, [torch.nn.Parameter(torch.tensor([1.0, math.inf]))])  # whatever the policy


def test_sft_update_skips_the_optimizer_step_on_a_nan_gradient(tiny_job):
    """Below the loop: the update leaves weights and optimizer state alone when told to skip."""
    from tinyr1.training.optim import build_optimizer
    from tinyr1.training.policy import build_policy, trainable_parameters

    job = tiny_job(optim__on_nonfinite="skip")
    job.algorithm = "sft"
    model, tokenizer = build_policy(job)
    params = trainable_parameters(model)
    optimizer, scheduler = build_optimizer(params, job.optim, 2)
    before = [p.detach().clone() for p in params]
    ids = torch.tensor([[tokenizer.eos_token_id] * 6])
    batch = sft.MicroBatch(ids, torch.ones_like(ids), torch.arange(6)[None], torch.ones(1, 6), packed=False)
    params[0].register_hook(lambda g: g * math.nan)
    metrics = sft.update(model, optimizer, scheduler, [batch], job, NonFiniteGuard("skip"), step=1)
    assert metrics["optim/skipped"] == 1 and not optimizer.state
    assert all(torch.equal(a, b) for a, b in zip(before, params))
