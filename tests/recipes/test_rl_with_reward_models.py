"""Reward models in RL: `orm:<folder>` weights in GRPO and PPO, `prm:<folder>` step rewards for GRPO's
process advantage, PPO's per-token step rewards (placed at step ends, through GAE), and clear errors."""

import json
import math

import pytest
import torch

from tinyr1.config import RMTrainJob, load_config, validate
from tinyr1.errors import UserError
from tinyr1.training.checkpoint import new_run_dir
from tinyr1.types import Problem


@pytest.fixture(scope="module")
def reward_models(tiny_model_dir, tmp_path_factory):
    """A tiny ORM and PRM trained for one step (their scores only need to vary)."""
    from tinyr1.recipes.reward_model import train_reward_model

    root = tmp_path_factory.mktemp("reward-models")
    orm_data, prm_data = root / "responses.jsonl", root / "steps.jsonl"
    orm_data.write_text("".join(json.dumps({"prompt": f"Calculate {a} + 1.", "completion": f"{a + d}", "label": d == 1}) + "\n"
                                for a in range(3) for d in (1, 2)))
    prm_data.write_text("".join(json.dumps({"prompt": "Calculate 3 + 4.", "completions": ["3 + 4 = 7", "so 7"], "labels": [ok, ok]}) + "\n"
                                for ok in (True, False)))
    for kind, data in (("orm", orm_data), ("prm", prm_data)):
        job = load_config(RMTrainJob, None, {"model": {"name": str(tiny_model_dir), "device": "cpu"}, "lora": {"rank": 0},
                                             "train": {"data": str(data), "out": str(root / kind), "max_steps": 1, "progress": False}})
        train_reward_model(job, kind)
    return root / "orm", root / "prm"


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l]


def test_grpo_trains_on_an_orm_mixed_with_the_grader(tiny_job, reward_models):
    from tinyr1.recipes.grpo import train

    orm, _ = reward_models
    job = tiny_job(run__steps=1, reward__weights={"correctness": 1.0, f"orm:{orm}": 0.5})
    validate(job)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    (row,) = _metrics(run_dir)
    orm_reward = row[f"reward/orm:{orm}"]
    assert 0 < orm_reward < 1  # P(correct) of a random-init-ish scorer
    assert row["reward/total"] == pytest.approx(row["reward/correctness"] + 0.5 * orm_reward, abs=1e-5)
    assert math.isfinite(row["loss/policy"]) and row["loss/grad_norm"] > 0


def test_grpo_process_advantage_with_a_prm_and_ppo_with_an_orm_alone(tiny_job, reward_models):
    from tinyr1.recipes import grpo, ppo

    orm, prm = reward_models
    job = tiny_job(run__steps=1, run__name="grpo-prm", grpo__advantage="process", reward__process=f"prm:{prm}")
    validate(job)
    run_dir = new_run_dir(job)
    grpo.train(job, run_dir)
    assert math.isfinite(_metrics(run_dir)[0]["loss/policy"])

    job = tiny_job(run__steps=1, run__name="ppo-orm", reward__weights={f"orm:{orm}": 1.0})
    job.algorithm, job.ppo.batch_size, job.ppo.mini_batch_size = "ppo", 4, 4
    validate(job)
    run_dir = new_run_dir(job)
    ppo.train(job, run_dir)
    (row,) = _metrics(run_dir)
    assert 0 < row["reward/total"] < 1 and math.isfinite(row["loss/value"])


def test_ppo_with_prm_step_rewards_trains_and_logs_them(tiny_job, reward_models):
    from tinyr1.recipes import ppo

    _, prm = reward_models
    job = tiny_job(run__steps=1, reward__process=f"prm:{prm}", ppo__process_coef=0.5)
    job.algorithm, job.ppo.batch_size, job.ppo.mini_batch_size = "ppo", 4, 4
    validate(job)
    run_dir = new_run_dir(job)
    ppo.train(job, run_dir)
    (row,) = _metrics(run_dir)
    assert "reward/process" in row and math.isfinite(row["loss/policy"])


def test_step_rewards_land_on_each_steps_last_token_and_flow_through_gae(tiny_model, tiny_job):
    from tinyr1.recipes.ppo import Critic, make_experience
    from tinyr1.rewards.build import build_process_reward
    from tinyr1.rollout.collect import build_rollout, step_rewards_per_token

    model, tok = tiny_model
    job = tiny_job(reward__process="arithmetic", ppo__gamma=1.0, ppo__lam=1.0, ppo__whiten_advantages=False,
                   ppo__process_coef=0.5, lora__rank=0)
    p = Problem("1", "What is 3 + 4?", "7")
    texts = ["3 + 4 = 7\nso 7", "3 + 4 = 8\nso 8"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    rows = {"prompt_ids": [[5, 6]] * 2, "response_ids": ids, "finished": [True, True], "texts": texts, "problems": [p, p]}
    rollout = build_rollout(rows["prompt_ids"], rows["response_ids"], rows["finished"], rows["problems"], rows["texts"], 1,
                            tok.pad_token_id)
    steps = step_rewards_per_token(rollout, build_process_reward("arithmetic"), "lines", tok)
    first_end = len(tok("3 + 4 = 7", add_special_tokens=False)["input_ids"]) - 1  # "so 7" has no equation: reward 0
    assert steps.shape == (2, max(len(i) for i in ids))
    # the rule's +-0.25 per step, scaled by half the outcome weight (1): a true new equation +0.125, a false one
    # -0.125 (changed with the capped rule, was +-1)
    assert steps[0].nonzero().flatten().tolist() == [first_end] and steps[0, first_end] == 0.125
    assert steps[1].nonzero().flatten().tolist() == [first_end] and steps[1, first_end] == -0.125

    critic = Critic(model.config.hidden_size)  # starts at V = 0: advantages are the returns, sums of the rewards from t on
    exp = make_experience(model, critic, None, rollout, torch.tensor([1.0, 0.0]), job, 0.0, steps)
    # row 0: 0.5 x (+0.125) at the first step's end, outcome 1 at the last token:
    # returns = 1.0625 up to and including the step end, then 1.0 to the end
    n0 = len(ids[0])
    expected0 = [1.0625] * (first_end + 1) + [1.0] * (n0 - first_end - 1)
    assert exp.returns[0, :n0].tolist() == pytest.approx(expected0)
    # row 1: 0.5 x (-0.125) at the step end, outcome 0
    n1 = len(ids[1])
    assert exp.returns[1, :n1].tolist() == pytest.approx([-0.0625] * (first_end + 1) + [0.0] * (n1 - first_end - 1))


@pytest.mark.parametrize("overrides, message", [
    ({"reward__weights": {"orm:/no/such/rm": 1.0}},
     "config key 'reward.weights.orm:/no/such/rm': reward model '/no/such/rm' not found (no such folder); expected a folder written by `tinyr1 rm train`"),
    ({"reward__process": "prm:/no/such/prm"}, "config key 'reward.process': reward model '/no/such/prm' not found"),
])
def test_reward_model_paths_are_checked_before_training(tiny_job, overrides, message, tmp_path):
    """A missing reward-model folder stops the run before any model loads or any folder is written."""
    from tinyr1.recipes import get_recipe

    job = tiny_job(**overrides)
    validate(job)  # the validator reads no folders: a name of the right shape passes
    with pytest.raises(UserError) as e:
        get_recipe(job.algorithm)(job, tmp_path / "run")
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


def test_unknown_process_rule_is_refused_by_the_validator(tiny_job):
    with pytest.raises(UserError, match="config key 'reward.process': 'rules' is not allowed; expected one of 'none', "
                                        "'arithmetic', 'reference' or 'prm:<folder>'"):
        validate(tiny_job(reward__process="rules"))


def test_an_orm_is_not_taken_for_a_prm(reward_models):
    from tinyr1.rewards.build import build_process_reward

    orm, _ = reward_models
    with pytest.raises(UserError, match="config key 'reward.process': .* is a 'orm' reward model; expected a prm"):
        build_process_reward(f"prm:{orm}", "cpu")
