"""SFT on a tiny model: the label mask, packed = padded loss, smoke runs, exact resume, SFT then GRPO."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from tinyr1.config import parse_overrides, validate
from tinyr1.errors import UserError
from tinyr1.recipes import sft
from tinyr1.training.checkpoint import load_run_config, new_run_dir
from tinyr1.training.policy import build_policy
from tinyr1.types import Problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sft_job(tiny_job):
    def make(**overrides):
        return dataclasses.replace(tiny_job(**{"sft__batch_size": 6, "sft__max_length": 256, **overrides}), algorithm="sft")

    return make


def _problems(n: int) -> list[Problem]:
    return [Problem(id=str(i), question=f"Calculate {i} + {'1' * (i + 1)}.", answer=str(i + int("1" * (i + 1)))) for i in range(n)]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _final_weights(run_dir):
    from safetensors.torch import load_file

    final = run_dir / "final"
    name = "adapter_model.safetensors" if (final / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(final / name)


def test_label_mask_covers_exactly_the_response_tokens_and_the_eos(sft_job, tiny_model):
    from tinyr1.data.prompts import render_prompt

    _, tok = tiny_model
    job = sft_job()
    short, long = Problem("a", "Calculate 12 + 7.", "19"), Problem("b", "Calculate 12 + 7 + 100 + 1000.", "1119")
    ex = sft.tokenize_examples([short, long], job, tok, [])
    prompt_ids, response_ids, cut = ex.prompt_ids, ex.response_ids, ex.cut
    # the prompt is exactly what the sampler feeds at evaluation; the response is the style's reference + EOS
    prompt = render_prompt(short, job.prompt, tok)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt_ids[0] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert response_ids[0] == tok("$\\boxed{19}$", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert cut == 0
    (mb,) = sft.micro_batches(ex, job, tok.pad_token_id)
    p, r = len(prompt_ids[0]), len(response_ids[0])
    width = len(prompt_ids[1]) + len(response_ids[1])
    row = 1  # micro-batches put the longest row first: the short example is row 1, padded by width - p - r
    assert mb.input_ids.shape == (2, width) and width > p + r
    # prompt: p zeros; response and EOS: r ones; padding: zeros
    assert mb.loss_mask[row].tolist() == [0.0] * p + [1.0] * r + [0.0] * (width - p - r)
    assert tok.decode(mb.input_ids[row][mb.loss_mask[row].bool()]) == "$\\boxed{19}$<|im_end|>"
    assert mb.attention_mask[row].tolist() == [1] * (p + r) + [0] * (width - p - r)
    assert not mb.packed


def test_examples_longer_than_max_length_are_cut_from_the_end(sft_job, tiny_model):
    _, tok = tiny_model
    whole = sft.tokenize_examples(_problems(1), sft_job(), tok, [])
    p = len(whole.prompt_ids[0])
    job = sft_job(sft__max_length=p + 2)
    cut = sft.tokenize_examples(_problems(1), job, tok, [])
    assert cut.cut == 1 and cut.prompt_ids == whole.prompt_ids and cut.response_ids[0] == whole.response_ids[0][:2]


def _loss_and_grads(model, batches):
    model.zero_grad(set_to_none=True)
    loss = sft.backward(model, batches)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_packed_and_micro_batched_losses_equal_the_padded_full_batch_loss(sft_job):
    job = sft_job(lora__rank=0, optim__micro_batch_size=8)
    torch.manual_seed(0)
    model, tok = build_policy(job)
    sft.check_packing(model)
    ex = sft.tokenize_examples(_problems(7), job, tok, [])
    lengths = [len(p) + len(r) for p, r in zip(ex.prompt_ids, ex.response_ids)]
    padded = sft.micro_batches(ex, job, tok.pad_token_id)
    micro = sft.micro_batches(ex, dataclasses.replace(job, optim=dataclasses.replace(job.optim, micro_batch_size=2)), tok.pad_token_id)
    pack_job = dataclasses.replace(job, sft=dataclasses.replace(job.sft, packing=True, max_length=3 * max(lengths)),
                                   optim=dataclasses.replace(job.optim, micro_batch_size=1))
    packed = sft.micro_batches(ex, pack_job, tok.pad_token_id)
    assert len(padded) == 1 and len(micro) == 4
    # 7 examples in rows of 3, 3 and 1: the row holding one example takes the padded forward
    assert [mb.packed for mb in packed] == [True, True, False]
    # packing computes on fewer positions than padding
    assert sum(mb.input_ids.numel() for mb in packed) < padded[0].input_ids.numel()
    model.train()
    ref_loss, ref_grads = _loss_and_grads(model, padded)
    for batches in (micro, packed):
        loss, grads = _loss_and_grads(model, batches)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packing_is_refused_for_a_model_that_ignores_position_ids(tiny_model):
    model, _ = tiny_model

    class IgnoresPositions(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, position_ids=None, use_cache=None):
            return self.inner(input_ids=input_ids, use_cache=False)

    sft.check_packing(model)
    with pytest.raises(UserError, match="sft.packing is unsupported"):
        sft.check_packing(IgnoresPositions())


@pytest.mark.parametrize("overrides", [{"lora__rank": 4, "sft__packing": True}, {"lora__rank": 0, "optim__bf16": True}], ids=["lora-packed", "full-bf16"])
def test_two_steps_train_every_parameter_and_write_the_run(sft_job, overrides):
    job = sft_job(**overrides)
    validate(job)
    run_dir = new_run_dir(job)
    torch.manual_seed(job.run.seed)
    model, _ = build_policy(job)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    summary = sft.train(job, run_dir)
    after = _final_weights(run_dir)
    assert len(after) > 0
    for name, value in after.items():
        key = next(k for k in before if k.endswith(name.replace(".weight", ".default.weight")) or k == name)
        assert not torch.equal(before[key], value), f"{name} did not change"
    rows = _metrics(run_dir)
    steps = [r for r in rows if "loss/sft" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert math.isfinite(r["loss/sft"]) and r["loss/sft"] > 0 and r["loss/grad_norm"] > 0
        assert r["train/tokens"] > 0 and 0 <= r["train/padding"] < 1
        for key in ("optim/lr", "train/response_length", "train/cut", "timing/step"):
            assert key in r
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2]
    assert summary["algorithm"] == "sft" and summary["steps"] == 2 and summary["eval_after"]["n"] == 4
    assert set(summary) >= {"eval_before", "eval_after", "wall_time_s", "model", "data"}
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {"accuracy.png"}


def test_resume_after_step_two_matches_an_uninterrupted_run(sft_job):
    full_job = sft_job(run__steps=4, run__name="full", run__save_every=2)
    full = new_run_dir(full_job)
    sft.train(full_job, full)

    cut_job = sft_job(run__steps=2, run__name="cut", run__save_every=2)
    cut = new_run_dir(cut_job)
    sft.train(cut_job, cut)
    resumed_job = load_run_config(cut, parse_overrides(["--run.steps=4"]))
    sft.train(resumed_job, cut, resume=True)
    a, b = _final_weights(full), _final_weights(cut)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert [r["step"] for r in _metrics(cut) if "loss/sft" in r] == [1, 2, 3, 4]
    losses = [r["loss/sft"] for r in _metrics(full) if "loss/sft" in r]
    assert [r["loss/sft"] for r in _metrics(cut) if "loss/sft" in r] == pytest.approx(losses, rel=1e-5)


def test_validate_names_bad_sft_keys(sft_job):
    with pytest.raises(UserError, match="sft.batch_size"):
        validate(sft_job(sft__batch_size=0))
    with pytest.raises(UserError, match="sft.max_length"):
        validate(sft_job(sft__max_length=8))


def test_sft_quickstart_then_grpo_on_the_sft_run(tiny_model_dir, problems_file, tmp_path):
    from tinyr1.cli import main

    small = [f"--model.name={tiny_model_dir}", "--model.device=cpu", f"--data.source=jsonl:{problems_file}", "--data.test_size=4",
             "--run.eval_size=4", "--run.eval_every=0", "--run.save_every=0", f"--run.output_dir={tmp_path}", "--run.progress=false",
             "--sampling.max_new_tokens=8", "--lora.rank=4", "--optim.micro_batch_size=4"]
    assert main(["train", str(ROOT / "configs" / "sft_quickstart.yaml"), *small, "--run.steps=2", "--run.name=sft", "--sft.batch_size=4"]) == 0
    sft_run = tmp_path / "sft"
    assert json.loads((sft_run / "summary.json").read_text())["algorithm"] == "sft"
    # GRPO (configs/quickstart.yaml) starting from the SFT run folder: its adapter is merged into the base
    grpo_args = [*small, f"--model.name={sft_run}", "--run.steps=1", "--run.name=grpo", "--grpo.batch_size=8", "--grpo.group_size=4"]
    assert main(["train", *grpo_args]) == 0
    summary = json.loads((tmp_path / "grpo" / "summary.json").read_text())
    assert summary["algorithm"] == "grpo" and summary["model"] == str(sft_run)
    assert (tmp_path / "grpo" / "final" / "adapter_model.safetensors").is_file()
