"""ORM and PRM training on a tiny model: parameters change, the loss falls on a toy set; the saved
folder loads as a reward function; an interrupted run resumes exactly."""

import json

import pytest
import torch

from tinyr1.config import RMTrainJob, load_config
from tinyr1.errors import UserError
from tinyr1.models.heads import build_scorer, load_scorer
from tinyr1.recipes.reward_model import dataset_loss, train_reward_model
from tinyr1.rm.data import orm_examples, prm_examples
from tinyr1.types import Problem


def _job(tiny_model_dir, data, out, **train):
    lora = train.pop("lora_rank", 0)
    return load_config(RMTrainJob, None, {
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "lora": {"rank": lora, "alpha": 2 * lora},
        "optim": {"lr": train.pop("lr", 1e-3), "micro_batch_size": 4},
        "train": {"data": str(data), "out": str(out), "epochs": 50, "max_steps": 3, "batch_size": 8, "progress": False, **train}})


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind, lora_rank, extra", [
    ("orm", 0, {}), ("orm", 4, {"objective": "bradley_terry", "lr": 1e-2}), ("prm", 0, {}), ("prm", 4, {"target": "soft", "lr": 1e-2}),
], ids=["orm-full-bce", "orm-lora-bradley-terry", "prm-full-hard", "prm-lora-soft"])
def test_training_changes_the_weights_and_lowers_the_loss(tiny_model_dir, responses_file, steps_file, tmp_path, kind, lora_rank, extra):
    data = responses_file if kind == "orm" else steps_file
    job = _job(tiny_model_dir, data, tmp_path / kind, lora_rank=lora_rank, **extra)
    examples = orm_examples(data) if kind == "orm" else prm_examples(data, soft=job.train.target == "soft")
    torch.manual_seed(job.train.seed)  # the same initial scorer as training builds
    initial, tok = build_scorer(job.model, job.lora)
    loss_before, before = dataset_loss(initial, tok, examples), _weights(initial.merge_and_unload() if lora_rank else initial)
    summary = train_reward_model(job, kind)
    assert summary["steps"] == 3 and summary["kind"] == kind
    model, tok, meta = load_scorer(tmp_path / kind, kind, device="cpu")
    after = _weights(model)
    assert after.keys() == before.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert "score.weight" in changed and "score.bias" in changed
    if lora_rank == 0:
        assert changed == set(before)  # full fine-tuning: every weight moved
    else:
        assert any("q_proj" in n for n in changed)  # the merged LoRA deltas moved the backbone
    assert dataset_loss(model, tok, examples) < loss_before
    lines = (tmp_path / kind / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3]


def test_a_saved_reward_model_is_refused_as_the_other_kind_or_overwritten(tiny_model_dir, responses_file, tmp_path):
    job = _job(tiny_model_dir, responses_file, tmp_path / "rm", max_steps=1)
    train_reward_model(job, "orm")
    with pytest.raises(UserError, match="is a 'orm' reward model; expected a prm"):
        load_scorer(tmp_path / "rm", "prm")
    with pytest.raises(UserError, match="already holds a reward model"):
        train_reward_model(job, "orm")


def test_reward_functions_read_the_saved_models(tiny_model_dir, responses_file, steps_file, tmp_path):
    from tinyr1.rewards.build import build_process_reward
    from tinyr1.rewards.orm import OutcomeRewardModel
    from tinyr1.rewards.prm import ProcessRewardModel

    train_reward_model(_job(tiny_model_dir, responses_file, tmp_path / "rm", max_steps=1), "orm")
    train_reward_model(_job(tiny_model_dir, steps_file, tmp_path / "prm", max_steps=1), "prm")
    p = Problem("1", "Calculate 3 + 4.", "7")
    orm = OutcomeRewardModel(str(tmp_path / "rm"), device="cpu")
    scores = orm([p, p], ["3 + 4 = 7", "3 + 4 = 8"])
    logits = orm.logits([p.question] * 2, ["3 + 4 = 7", "3 + 4 = 8"])
    assert scores == pytest.approx(torch.sigmoid(torch.tensor(logits)).tolist())
    assert all(0 < s < 1 for s in scores)
    prm = ProcessRewardModel(str(tmp_path / "prm"), device="cpu")
    steps = prm([p, p], ["3 + 4 = 7\nso 7", ""], mode="lines")
    probs = prm.probabilities([p.question], [["3 + 4 = 7", "so 7"]])[0]
    assert len(steps[0]) == 2 and steps[1] == []
    assert steps[0] == pytest.approx([2 * q - 1 for q in probs])  # 2 P(ok) - 1, in [-1, 1]
    built = build_process_reward(f"prm:{tmp_path / 'prm'}", "cpu")
    assert isinstance(built, ProcessRewardModel) and built([p], ["3 + 4 = 7\nso 7"], mode="lines") == [steps[0]]


# ----------------------------------------------------------------------------- prm label


def test_reward_model_run_resumes_exactly_and_refuses_to_overwrite(tiny_model_dir, responses_file, steps_file, tmp_path):
    whole = train_reward_model(_job(tiny_model_dir, responses_file, tmp_path / "whole", max_steps=4, batch_size=3), "orm")
    job = _job(tiny_model_dir, responses_file, tmp_path / "cut", max_steps=4, batch_size=3, save_every=1)
    from tinyr1.recipes import reward_model

    real, calls = reward_model.out_of_time, []

    def stop_after_two(run, minutes):  # an interrupted run: stops after step 2, its checkpoint written
        calls.append(1)
        return len(calls) >= 2

    reward_model.out_of_time = stop_after_two
    try:
        train_reward_model(job, "orm")
    finally:
        reward_model.out_of_time = real
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    resumed = train_reward_model(job, "orm", resume=True)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["loss/bce"] for r in rows] == [r["loss/bce"] for r in want]
    assert resumed["steps"] == whole["steps"] == 4 and resumed["loss_first_step"] == whole["loss_first_step"]
    a, _, _ = load_scorer(tmp_path / "whole", "orm", device="cpu")
    b, _, _ = load_scorer(tmp_path / "cut", "orm", device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(UserError, match="already holds a reward model run; continue it with `tinyr1 rm train --resume"):
        train_reward_model(job, "orm")
    as_prm = _job(tiny_model_dir, steps_file, tmp_path / "cut", max_steps=4, batch_size=3)
    with pytest.raises(UserError, match="that run trains a orm reward model, not a prm"):
        train_reward_model(as_prm, "prm", resume=True)
