"""PPO smoke runs on a tiny model, and the experience arithmetic checked by hand."""

import json
import math

import pytest
import torch

from tinyr1.recipes.ppo import Critic, adapt_kl, make_experience, response_index, take, train
from tinyr1.rollout.collect import build_rollout
from tinyr1.training.checkpoint import load_run_config, new_run_dir, read_trainer_state
from tinyr1.types import Problem


def _rows(tiny_model):
    _, tok = tiny_model
    return build_rollout([[1, 2, 3], [4, 5]], [[7, 8], [9, 10, 11]], [True, False],
                           [Problem("a", "q", "1")] * 2, ["x", "y"], 1, tok.pad_token_id)


def test_response_index_gathers_each_rows_response(tiny_model):
    rollout = _rows(tiny_model)  # rows: [1 2 3 | 7 8], [4 5 | 9 10 11]
    idx, mask = response_index(rollout)
    assert idx.tolist() == [[3, 4, 4], [2, 3, 4]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert take(rollout.input_ids, idx, mask).tolist() == [[7, 8, 0], [9, 10, 11]]


def test_outcome_reward_lands_on_the_last_token_and_gae_uses_it(tiny_model, tiny_job):
    model, _ = tiny_model
    job = tiny_job(ppo__gamma=1.0, ppo__lam=1.0, ppo__whiten_advantages=False, lora__rank=0)
    rollout = _rows(tiny_model)

    critic = Critic(model.config.hidden_size)  # a fresh head is zero: V = 0 everywhere, advantages are the returns
    assert not critic.head.weight.any() and not critic.head.bias.any()
    exp = make_experience(model, critic, None, rollout, torch.tensor([1.0, 0.5]), job, kl_coef=0.0)
    # gamma = lambda = 1 and V = 0: every token's return is the outcome (rewards 0 ... 0, outcome)
    assert exp.returns.tolist() == [[1.0, 1.0, 0.0], [0.5, 0.5, 0.5]]
    assert exp.advantages.tolist() == exp.returns.tolist()


def test_adaptive_kl_moves_towards_the_target():
    assert adapt_kl(0.1, kl=2.0, target=1.0) == pytest.approx(0.1 * 1.02)  # error clipped to +0.2
    assert adapt_kl(0.1, kl=0.9, target=1.0) == pytest.approx(0.1 * (1 - 0.01))
    assert adapt_kl(0.1, kl=0.0, target=1.0) == pytest.approx(0.1 * 0.98)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"lora__rank": 0, "ppo__kl_coef": 0.1}, {"ppo__critic": "separate", "ppo__adaptive_kl": True, "ppo__early_stop_kl": 0.0}],
    ids=["lora-shared-critic", "full-kl", "separate-critic-adaptive"],
)
def test_two_ppo_steps_train_policy_and_value_head(tiny_job, tiny_model_dir, overrides):
    from safetensors.torch import load_file

    job = tiny_job(**overrides)
    job.algorithm = "ppo"
    job.ppo.batch_size, job.ppo.mini_batch_size, job.ppo.epochs = 4, 2, 2
    run_dir = new_run_dir(job)
    summary = train(job, run_dir)
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert math.isfinite(r["loss/policy"]) and math.isfinite(r["loss/value"]) and r["loss/grad_norm"] > 0
        assert 0.0 <= r["rollout/self_check"] <= 1.0 and 0.0 <= r["rollout/truncated"] <= 1.0
    critic = torch.load(run_dir / "final" / "critic.pt")
    assert critic["head.weight"].abs().sum() > 0  # the value head trained (it starts at zero)
    if job.lora.rank == 0:  # the policy: every weight of the full model moved
        before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(run_dir / "final" / "model.safetensors")
        assert after.keys() == before.keys() and all(not torch.equal(before[k], after[k]) for k in before if "norm" not in k)
    else:  # every adapter's B (zero at the start) moved
        lora_b = [v for k, v in load_file(run_dir / "final" / "adapter_model.safetensors").items() if "lora_B" in k]
        assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    if job.ppo.critic == "separate":  # its own backbone trained too
        assert any("backbone" in k for k in critic) and len(critic) > 2
    assert summary["eval_after"]["n"] == 4
    if job.ppo.early_stop_kl == 0.0:
        assert all(r["ppo/epochs_run"] == 1 for r in rows)  # any KL > 0 stops after the first epoch


def test_ppo_trains_every_adapter(tiny_job):
    from safetensors.torch import load_file

    job = tiny_job()
    job.algorithm = "ppo"
    job.ppo.batch_size, job.ppo.mini_batch_size = 4, 4
    run_dir = new_run_dir(job)
    train(job, run_dir)
    weights = load_file(run_dir / "final" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero in peft


def test_ppo_resume_restores_the_critic_and_matches_an_uninterrupted_run(tiny_job):
    """The critic's weights travel in the checkpoint (gathered by every process when sharded) and
    come back on resume: the final policy and critic equal those of a run that never stopped."""
    from tinyr1.config import parse_overrides

    def ppo_job(**kw):
        job = tiny_job(ppo__critic="separate", **kw)
        job.algorithm = "ppo"
        job.ppo.batch_size, job.ppo.mini_batch_size, job.ppo.epochs = 4, 2, 1
        return job

    full = new_run_dir(full_job := ppo_job(run__steps=4, run__name="full", run__save_every=2))
    train(full_job, full)
    cut = new_run_dir(cut_job := ppo_job(run__steps=2, run__name="cut", run__save_every=2))
    train(cut_job, cut)
    assert "critic" in read_trainer_state(cut / "checkpoint-2")["extra"]
    train(load_run_config(cut, parse_overrides(["--run.steps=4"])), cut, resume=True)
    a, b = torch.load(full / "final" / "critic.pt"), torch.load(cut / "final" / "critic.pt")
    assert a.keys() == b.keys() and len(a) > 2  # a separate critic: a whole model plus the value head
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
