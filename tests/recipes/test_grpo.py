"""GRPO smoke runs on a tiny model: finite losses, every trainable parameter changes, files written."""

import json
import math

import pytest
import torch

from tinyr1.config import validate_train
from tinyr1.recipes import setup as S
from tinyr1.recipes.grpo import train


def _trainable_snapshot(job):
    torch.manual_seed(job.run.seed)
    model, _ = S.build_policy(job)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _final_weights(run_dir):
    from safetensors.torch import load_file

    final = run_dir / "final"
    name = "adapter_model.safetensors" if (final / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(final / name)


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_two_steps_train_every_parameter_and_write_the_run(tiny_job, lora_rank):
    job = tiny_job(lora__rank=lora_rank)
    validate_train(job)
    run_dir = S.new_run_dir(job)
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
                    "loss/clip_frac_low", "loss/clip_frac_high", "loss/entropy", "rollout/response_length", "timing/rollout"):
            assert key in r
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2]
    assert set(summary) >= {"eval_before", "eval_after", "wall_time_s"}
    assert summary["eval_after"]["n"] == 4
    assert (run_dir / "config.yaml").is_file() and (run_dir / "samples.jsonl").is_file()
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {"reward.png", "accuracy.png", "response_length.png"}


def test_resume_after_step_two_matches_an_uninterrupted_run(tiny_job, tmp_path):
    full_job = tiny_job(run__steps=4, run__name="full", run__save_every=2)
    full = S.new_run_dir(full_job)
    train(full_job, full)

    cut_job = tiny_job(run__steps=2, run__name="cut", run__save_every=2)
    cut = S.new_run_dir(cut_job)
    train(cut_job, cut)
    from tinyr1.config import parse_overrides

    resumed_job = S.load_run_config(cut, parse_overrides(["--run.steps=4"]))
    train(resumed_job, cut, resume=True)
    a, b = _final_weights(full), _final_weights(cut)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    steps = [json.loads(l)["step"] for l in (cut / "metrics.jsonl").read_text().splitlines() if "loss/policy" in l]
    assert steps == [1, 2, 3, 4]
