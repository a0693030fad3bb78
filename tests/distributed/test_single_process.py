"""tinyr1.distributed in one process (a no-op that imports nothing), its arithmetic under a fake
process group, and the config checks that a batch splits over the processes."""

import subprocess
import sys

import pytest
import torch

from tinyr1 import distributed as D
from tinyr1.config import TrainJob, load_config, validate
from tinyr1.errors import UserError
from tinyr1.training.checkpoint import read_trainer_state, save_checkpoint, save_final
from tinyr1.training.optim import build_optimizer
from tinyr1.training.policy import trainable_parameters
from tinyr1.training.problems import ProblemStream, take_share
from tinyr1.types import Problem


def test_one_process_needs_neither_accelerate_nor_a_process_group():
    code = (
        "import sys; from tinyr1 import distributed as D; D.init(); D.barrier(); D.shutdown()\n"
        "assert (D.world_size(), D.rank(), D.is_main(), D.shard([1, 2, 3]), D.gather_objects(7)) == (1, 0, True, [1, 2, 3], [7])\n"
        "assert D.broadcast_object('x') == 'x' and D.all_reduce_sum(3) == 3 and D.reduce_dict({'a': 1.5}) == {'a': 1.5}\n"
        "import torch.distributed as dist\n"
        "print('accelerate' in sys.modules, dist.is_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_one_process_returns_its_inputs_unchanged():
    t = torch.tensor([1.0, 2.0])
    model, opt = torch.nn.Linear(2, 1), object()
    assert D.gather(t) is t and D.all_reduce_sum(t) is t and D.all_reduce_max(t) is t
    assert D.prepare(model, opt) == (model, opt) and D.prepare(model) is model and D.unwrap(model) is model
    assert list(D.sync_last(model, [1, 2, 3])) == [1, 2, 3]
    # the loss divisor is the local count, clamped at 1 as before: an empty batch gives loss 0
    assert D.loss_divisor(torch.tensor(12.0)) == 12.0 and D.loss_divisor(torch.tensor(0.0)) == 1.0 and D.loss_divisor(0) == 1


def test_loss_divisor_is_the_global_count_over_the_number_of_processes(monkeypatch):
    # 2 processes with 4 and 6 response tokens: each divides by (4 + 6) / 2 = 5. Per-token losses
    # l: process 0 sums 2.0, process 1 sums 3.0. Their losses 2/5 and 3/5, averaged by DDP:
    # (0.4 + 0.6) / 2 = 0.5 = (2 + 3) / 10, the mean over all 10 tokens of the batch.
    monkeypatch.setattr(D, "_accelerator", object())
    monkeypatch.setattr(D, "world_size", lambda: 2)
    monkeypatch.setattr(D, "all_reduce_sum", lambda x: x + 6.0)  # this is process 0: the other holds 6 tokens
    divisor = D.loss_divisor(torch.tensor(4.0))
    assert divisor == 5.0
    assert (2.0 / divisor + 3.0 / divisor) / 2 == (2.0 + 3.0) / 10


@pytest.mark.parametrize("world, expected", [(2, [[0, 1, 2], [3, 4, 5, 6]]), (3, [[0, 1], [2, 3], [4, 5, 6]])])
def test_shard_gives_each_process_a_contiguous_slice(monkeypatch, world, expected):
    monkeypatch.setattr(D, "world_size", lambda: world)
    slices = []
    for r in range(world):
        monkeypatch.setattr(D, "rank", lambda r=r: r)
        slices.append(list(D.shard(list(range(7)))))
    assert slices == expected


def test_take_share_keeps_every_stream_at_one_position(monkeypatch):
    problems = [Problem(str(i), f"q{i}", str(i)) for i in range(10)]
    alone = ProblemStream(problems, seed=3)
    expected = alone.take(6)
    # process 1 of 3 asking for 3 problems while the others ask for 2 and 1: it gets problems 2-4 of
    # the 6 the step takes, and its stream moves past all 6
    monkeypatch.setattr(D, "gather_objects", lambda k: [2, k, 1])
    monkeypatch.setattr(D, "rank", lambda: 1)
    stream = ProblemStream(problems, seed=3)
    assert take_share(stream, 3) == expected[2:5]
    assert stream.state_dict() == alone.state_dict()


@pytest.mark.parametrize(
    "values, world, message",
    [
        ({"grpo": {"batch_size": 24, "group_size": 8}}, 2,
         "config key 'grpo.batch_size': 24 sequences are 3 prompts x grpo.group_size=8, which do not split over 2 "
         "processes (each process samples whole groups); use a multiple of grpo.group_size x processes = 16"),
        ({"algorithm": "ppo", "ppo": {"batch_size": 32, "mini_batch_size": 6}}, 4,
         "config key 'ppo.mini_batch_size': 6 does not split over 4 processes; use a multiple of 4"),
        ({"algorithm": "ppo", "ppo": {"batch_size": 30, "mini_batch_size": 16}}, 4,
         "config key 'ppo.batch_size': 30 does not split over 4 processes; use a multiple of 4"),
        ({"algorithm": "sft", "sft": {"batch_size": 9}}, 2,
         "config key 'sft.batch_size': 9 examples do not split over 2 processes; use a multiple of 2"),
    ],
)
def test_a_batch_that_does_not_split_over_the_processes_is_refused(values, world, message):
    job = load_config(TrainJob, None, values)
    validate(job)  # fine on one process
    with pytest.raises(UserError) as e:
        validate(job, world_size=world)
    assert str(e.value) == message
    validate(job, world_size=1)


@pytest.mark.parametrize("name, engine", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED"),
                                          ("deepspeed_zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_are_read_by_accelerate(name, engine):
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type.name == engine and config.num_processes == 8 and config.mixed_precision == "no"
    if engine == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-1]) and config.deepspeed_config["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize("values, fits, misfits", [
    ({"grpo": {"batch_size": 32, "group_size": 8}}, [1, 2, 4], [3, 8]),  # 4 prompts split over 1, 2, 4 processes
    ({"algorithm": "sft", "sft": {"batch_size": 16}}, [1, 2, 8, 16], [3, 5]),
])
def test_batches_that_split_are_accepted_and_others_refused(values, fits, misfits):
    job = load_config(TrainJob, None, values)
    for w in fits:
        validate(job, world_size=w)
    for w in misfits:
        with pytest.raises(UserError, match=f"over {w} processes"):
            validate(job, world_size=w)


# ----------------------------------------------------------------------------- sharded weights: one process


def test_check_engine_refuses_fsdp1_and_accepts_fsdp2_and_ddp():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    def fake(kind, version=None):
        return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=version)))

    with pytest.raises(UserError, match="fsdp_version: 2"):
        D.check_engine(fake(DistributedType.FSDP, 1))
    D.check_engine(fake(DistributedType.FSDP, 2))
    D.check_engine(fake(DistributedType.MULTI_CPU))


def _trained_policy(tiny_model_dir, tmp_path, lora: int):
    """A policy and optimizer after one step (non-zero adapters), as the FSDP2 scenario makes them."""
    from . import scenarios

    job = scenarios.make_job(tiny_model_dir, tmp_path / "problems.jsonl", tmp_path, lora__rank=lora)
    model, tokenizer = scenarios.fsdp2_policy(job)
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    scenarios.fsdp2_step(model, optimizer, scheduler)
    return job, model, tokenizer, optimizer, scheduler


@pytest.mark.parametrize("lora", [0, 4])
def test_one_process_checkpoints_and_final_are_what_save_pretrained_wrote_before(lora, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    _, model, tokenizer, optimizer, scheduler = _trained_policy(tiny_model_dir, tmp_path, lora)
    full = D.full_state_dict(model)
    assert not D.is_sharded(model) and full.keys() == model.state_dict().keys()
    assert all(full[k].data_ptr() == v.data_ptr() for k, v in model.state_dict().items())  # the plain state dict: no copies
    stream = ProblemStream([Problem(str(i), f"q{i}", str(i)) for i in range(4)], seed=0)
    ckpt = save_checkpoint(tmp_path, 1, model, tokenizer, optimizer, scheduler, stream, 0.0)
    final = save_final(tmp_path, model, tokenizer)
    model.save_pretrained(tmp_path / "before")  # how both were written before
    name = "adapter_model.safetensors" if lora else "model.safetensors"
    expected = load_file(tmp_path / "before" / name)
    assert len(expected) == (28 if lora else 20)  # adapter keys only / no untied lm_head
    for folder in (ckpt, final):
        got = load_file(folder / name)
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    saved = read_trainer_state(ckpt)["optimizer"]
    state = optimizer.state_dict()
    assert saved["param_groups"] == state["param_groups"] and saved["state"].keys() == state["state"].keys()
    assert all(torch.equal(saved["state"][i][k], v) for i, s in state["state"].items() for k, v in s.items())


def test_one_process_resume_restores_the_optimizer_as_load_state_dict(tiny_model_dir, tmp_path):
    _, model, _, optimizer, _ = _trained_policy(tiny_model_dir, tmp_path, 4)
    state = D.full_optimizer_state(optimizer)
    fresh = torch.optim.AdamW(trainable_parameters(model), lr=0.01)
    D.load_optimizer_state(fresh, state)
    with D.loading_full(model):  # nothing to do in one process
        pass
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    for i, s in optimizer.state_dict()["state"].items():
        assert all(torch.equal(fresh.state_dict()["state"][i][k], v) for k, v in s.items())


def test_merged_state_dict_equals_peft_merging_the_adapters_in(tiny_model_dir, tmp_path):
    import copy

    from peft.tuners.lora import LoraLayer

    from tinyr1.rollout.policy_copy import SamplingCopy, merged_state_dict

    _, model, *_ = _trained_policy(tiny_model_dir, tmp_path, 4)
    merged = merged_state_dict(model)
    base = model.get_base_model()
    n = 0
    for name, module in base.named_modules():  # the computation before: peft's deltas from the module's own weights
        if isinstance(module, LoraLayer):
            old = module.get_base_layer().weight + sum(module.get_delta_weight(a) for a in module.active_adapters)
            assert torch.equal(merged[f"{name}.weight"], old), name
            n += 1
    assert n == 14 and not any("lora_" in k or "base_layer" in k for k in merged)
    plain = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == plain.keys()
    for k in plain:
        torch.testing.assert_close(merged[k], plain[k], rtol=1e-6, atol=1e-7)
    q = "model.layers.0.self_attn.q_proj"
    assert not torch.allclose(merged[f"{q}.weight"], base.state_dict()[f"{q}.base_layer.weight"], atol=1e-3)
    # a whole float32 model samples itself, as before
    full_job, full_model, *_ = _trained_policy(tiny_model_dir, tmp_path / "full", 0)
    sampler = SamplingCopy(full_model, full_job.model, "float32")
    assert sampler.model is None and sampler.refresh(full_model) is full_model
