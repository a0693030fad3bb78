"""GRPO smoke runs on a tiny model: finite losses, every trainable parameter changes, files written."""

import json
import math
from pathlib import Path

import pytest
import torch

from tinyr1.config import validate
from tinyr1.recipes.grpo import train
from tinyr1.rewards.build import build_process_reward
from tinyr1.rollout.collect import build_rollout
from tinyr1.training.checkpoint import load_run_config, new_run_dir
from tinyr1.training.policy import build_policy
from tinyr1.training.problems import ProblemStream
from tinyr1.types import Rewards


def _trainable_snapshot(job):
    torch.manual_seed(job.run.seed)
    model, _ = build_policy(job)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _final_weights(run_dir):
    from safetensors.torch import load_file

    final = run_dir / "final"
    name = "adapter_model.safetensors" if (final / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(final / name)


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_two_steps_train_every_parameter_and_write_the_run(tiny_job, lora_rank):
    job = tiny_job(lora__rank=lora_rank)
    validate(job)
    run_dir = new_run_dir(job)
    before = _trainable_snapshot(job)
    summary = train(job, run_dir)
    after = _final_weights(run_dir)
    assert len(after) > 0
    for name, value in after.items():
        key = next(k for k in before if k.endswith(name.replace(".weight", ".default.weight")) or k == name)
        assert not torch.equal(before[key], value), f"{name} did not change"
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/policy" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert math.isfinite(r["loss/policy"]) and math.isfinite(r["loss/grad_norm"])
        for key in ("reward/total", "reward/length_parity", "reward/accuracy", "reward/equal_groups", "loss/approx_kl",
                    "loss/clip_frac_low", "loss/clip_frac_high", "loss/entropy", "rollout/response_length",
                    "rollout/truncated", "rollout/self_check", "timing/rollout", "timing/reward", "timing/update"):
            assert key in r
        assert 0.0 <= r["rollout/self_check"] <= 1.0
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2] and all(0.0 <= r["eval/self_check"] <= 1.0 for r in evals)
    assert set(summary) >= {"eval_before", "eval_after", "wall_time_s"}
    assert summary["eval_after"]["n"] == 4
    # every held-out evaluation's rows are saved, one per problem, and summary.json names the files
    assert (summary["eval_before"]["rows_file"], summary["eval_after"]["rows_file"]) == ("eval/step-0.jsonl", "eval/step-2.jsonl")
    for name in ("eval/step-0.jsonl", "eval/step-2.jsonl"):
        saved = [json.loads(l) for l in (run_dir / name).read_text().splitlines()]
        assert len(saved) == 4 and len({r["id"] for r in saved}) == 4
        assert set(saved[0]) >= {"id", "response", "extracted", "correct", "tokens", "finished", "self_check"}
        assert "prompt" not in saved[0]
    assert sum(r["correct"] for r in saved) / 4 == summary["eval_after"]["accuracy"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "samples.jsonl").is_file()
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {"reward.png", "accuracy.png", "response_length.png"}


def test_eval_before_false_skips_step_0_and_trains_the_same_weights(tiny_job):
    full_job = tiny_job(run__name="with")
    train(full_job, new_run_dir(full_job))
    job = tiny_job(run__name="without", run__eval_before=False)
    run_dir = new_run_dir(job)
    summary = train(job, run_dir)
    assert "eval_before" not in summary and summary["eval_after"]["rows_file"] == "eval/step-2.jsonl"
    assert json.loads((run_dir / "summary.json").read_text()).keys() == summary.keys()
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2]
    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == ["step-2.jsonl"]
    # the evaluation draws no random numbers: the weights are those of the run that evaluated first
    with_eval, without = _final_weights(Path(full_job.run.output_dir) / "with"), _final_weights(run_dir)
    assert with_eval.keys() == without.keys() and all(torch.equal(with_eval[k], without[k]) for k in with_eval)


def test_resume_after_step_two_matches_an_uninterrupted_run(tiny_job, tmp_path):
    full_job = tiny_job(run__steps=4, run__name="full", run__save_every=2)
    full = new_run_dir(full_job)
    train(full_job, full)

    cut_job = tiny_job(run__steps=2, run__name="cut", run__save_every=2)
    cut = new_run_dir(cut_job)
    train(cut_job, cut)
    from tinyr1.config import parse_overrides

    resumed_job = load_run_config(cut, parse_overrides(["--run.steps=4"]))
    train(resumed_job, cut, resume=True)
    a, b = _final_weights(full), _final_weights(cut)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    steps = [json.loads(l)["step"] for l in (cut / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l]
    assert steps == [1, 2, 3, 4]


def test_a_curriculum_with_extra_problems_resumes_exactly(tiny_job):
    """The stream's phase and position travel through the checkpoint: the resumed run trains on the
    problems an uninterrupted one does, and the phase widens at step 3 in both."""
    from tinyr1.config import parse_overrides
    from tinyr1.data.difficulty import calculation_steps
    from tinyr1.data.gsm8k import read_file

    steps_fixture = Path(__file__).resolve().parents[1] / "fixtures" / "GSM8K_steps"
    data = {"data__source": f"gsm8k:{steps_fixture}", "data__test_size": 4, "data__curriculum": [[0, 1], [3, None]],
            "data__extra": {"synthetic:chain_sum": {"share": 0.25, "size": 20}}, "run__log_samples": 8}
    full = new_run_dir(job := tiny_job(run__steps=4, run__name="full", **data))
    validate(job)
    train(job, full)
    cut = new_run_dir(job := tiny_job(run__steps=2, run__name="cut", run__save_every=2, **data))
    train(job, cut)
    train(load_run_config(cut, parse_overrides(["--run.steps=4"])), cut, resume=True)

    def drawn(run_dir):  # problem ids per step, one per group (G = 4 rows each)
        rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        return {s: [r["id"] for r in rows if r["step"] == s][::4] for s in (1, 2, 3, 4)}

    assert drawn(full) == drawn(cut)
    steps = {f"gsm8k/train/{i}": calculation_steps(p) for i, p in enumerate(read_file(steps_fixture / "train.jsonl", "train"), 1)}
    early = [steps[i] for s in (1, 2) for i in drawn(full)[s] if i in steps]
    assert early and max(early) <= 1  # phase 0: at most 1 calculation step (chain_sum problems have none to count)
    late = [steps[i] for s in (3, 4) for i in drawn(full)[s] if i in steps]
    assert max(late) > 1  # phase 1 from step 3: any number (these seeds draw a longer one)
    assert any(not i.startswith("gsm8k/") for s in (1, 2, 3, 4) for i in drawn(full)[s])  # chain_sum mixed in


@pytest.mark.parametrize(
    "overrides",
    [
        {"grpo__num_iterations": 2, "grpo__clip_high": 0.4},
        {"grpo__beta": 0.1, "grpo__kl_estimator": "k1"},
        {"grpo__beta": 0.1, "lora__rank": 0},  # full fine-tuning: the reference is a frozen copy
        {"grpo__loss_aggregation": "dr_grpo", "grpo__scale_rewards": "none"},
        {"grpo__advantage": "rloo"},
        {"grpo__advantage": "reinforce_pp"},
        {"grpo__loss_aggregation": "sequence", "grpo__scale_rewards": "batch", "optim__schedule": "cosine", "optim__warmup_steps": 1},
        {"grpo__dynamic_sampling": True, "optim__bf16": True, "optim__gradient_checkpointing": True},
        {"grpo__skip_zero_advantage": True, "optim__share_prompt": True},
    ],
    ids=["mu2", "kl-k1-lora", "kl-full", "dr-grpo", "rloo", "reinforce-pp", "sequence-batch-cosine", "dynamic-bf16-ckpt",
         "skip-zero-advantage"],
)
def test_grpo_options_train_with_finite_losses(tiny_job, overrides):
    job = tiny_job(run__steps=2, **overrides)
    validate(job)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert math.isfinite(row["loss/policy"]) and math.isfinite(row["loss/kl"]) and row["loss/grad_norm"] > 0
    if job.grpo.beta > 0:
        # before its first update the policy is its reference (LoRA B = 0, or the frozen copy): KL 0 up to
        # rounding; after one update it has moved, and k3 is positive by construction
        assert abs(rows[0]["loss/kl"]) < 1e-5
        assert rows[1]["loss/kl"] > 1e-6 if job.grpo.kl_estimator == "k3" else abs(rows[1]["loss/kl"]) > 1e-6
    else:
        assert all(r["loss/kl"] == 0.0 for r in rows)  # no reference pass at all


def test_masking_truncated_responses_removes_them_from_the_loss(tiny_job, monkeypatch):
    # no token ends a response: every response is truncated, so nothing trains
    from tinyr1.rollout import sampler as sampler_mod

    monkeypatch.setattr(sampler_mod, "stop_token_ids", lambda model, tokenizer: [10**6])
    job = tiny_job(run__steps=1, grpo__mask_truncated=True)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    row = next(json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l)
    assert row["rollout/truncated"] == 1.0
    assert row["loss/grad_norm"] == 0.0 and row["loss/policy"] == 0.0


FLAT = ("Calculate 4 ", "Calculate 5 ", "Calculate 6 ")


def test_dynamic_sampling_keeps_only_groups_with_a_signal(tiny_job, tiny_model, monkeypatch):
    from tinyr1.recipes.grpo import collect
    from tinyr1.rewards import rules

    def half_flat(problems, responses, **_):
        # problems starting "Calculate 4|5|6 + ..." always earn 0: their groups carry no signal
        return [0.0 if p.question.startswith(FLAT) else float(len(r) % 2) for p, r in zip(problems, responses)]

    monkeypatch.setitem(rules.REWARDS, "half_flat", half_flat)
    job = tiny_job(grpo__dynamic_sampling=True, grpo__max_refills=8, grpo__batch_size=16)
    from tinyr1.rewards.build import build_reward_fns

    fns = build_reward_fns({"half_flat": 1.0}, "boxed")
    model, tok = tiny_model
    from tinyr1.data import load_problems

    stream = ProblemStream(load_problems(job.data, "train"), seed=0)
    torch.manual_seed(0)
    batch = collect(model, tok, stream, job, fns, [])
    rollout = batch.rollout
    assert rollout.num_sequences == len(rollout.texts) == 16  # exactly B groups of G
    groups = rollout.rewards.total.view(-1, 4)
    assert (groups.std(-1) > 0).all()
    assert not any(p.question.startswith(FLAT) for p in rollout.problems)
    assert batch.refills >= 1 and 0 < batch.equal_share <= 1 and rollout.rewards.seconds > 0
    # refilled rows keep the layout of a fresh build: no column of padding only
    assert int(rollout.attention_mask.sum(-1).max()) == rollout.input_ids.shape[1]


def test_process_supervision_gives_per_token_advantages_from_step_rewards(tiny_job, tiny_model):
    from tinyr1.recipes.grpo import process_token_advantages
    from tinyr1.types import Problem

    _, tok = tiny_model
    job = tiny_job(grpo__advantage="process", reward__process="arithmetic", grpo__group_size=2, grpo__batch_size=2)
    p = Problem("1", "What is 3 + 4?", "7")
    texts = ["3 + 4 = 7\nso 7", "3 + 4 = 8\nso 8"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    rows = {"prompt_ids": [[5, 6]] * 2, "response_ids": ids, "finished": [True, True], "texts": texts, "problems": [p, p]}
    rollout = build_rollout(rows["prompt_ids"], rows["response_ids"], rows["finished"], rows["problems"], rows["texts"], 2,
                            tok.pad_token_id)
    rollout.rewards = Rewards(torch.tensor([1.0, 0.0]), {})  # the outcomes
    adv = process_token_advantages(rollout, job, build_process_reward("arithmetic"), tok)
    # step rewards (the capped rule: +-0.25 a step, scaled by half the outcome weight 1; was +-1):
    # row 0 = [+0.125 (a true, new equation), 0 (no equation), outcome 1]; row 1 = [-0.125, 0, outcome 0]
    # all six step rewards of the group are normalised together: z = (r - mean) / (population std + 1e-4),
    # mean = 1/6, std = sqrt((0.125^2 + 1 + 0.125^2) / 6 - 1/36) = sqrt(0.1719 - 0.0278) = 0.3796
    r = torch.tensor([0.125, 0.0, 1.0, -0.125, 0.0, 0.0])
    z = (r - r.mean()) / (r.std(unbiased=False) + 1e-4)
    first = rollout.response_mask.argmax(-1)
    # the first response token precedes every step end: its advantage sums all three steps of its row
    assert adv[0, first[0]].item() == pytest.approx(z[:3].sum().item(), abs=1e-4)
    assert adv[1, first[1]].item() == pytest.approx(z[3:].sum().item(), abs=1e-4)
    # the last (EOS) token is after the two line steps: only the outcome step counts there
    last0 = int(first[0] + len(ids[0]) - 1)
    assert adv[0, last0].item() == pytest.approx(z[2].item(), abs=1e-4)
    assert (adv[0, : first[0]] == 0).all()  # prompt tokens carry no advantage


def test_process_supervision_trains(tiny_job):
    job = tiny_job(run__steps=1, grpo__advantage="process", reward__process="arithmetic")
    validate(job)
    run_dir = new_run_dir(job)
    train(job, run_dir)
    row = next(json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l)
    assert math.isfinite(row["loss/policy"]) and row["loss/grad_norm"] > 0


def test_process_advantage_needs_a_step_rule(tiny_job):
    from tinyr1.errors import UserError

    with pytest.raises(UserError, match="config key 'reward.process'"):
        validate(tiny_job(grpo__advantage="process"))
