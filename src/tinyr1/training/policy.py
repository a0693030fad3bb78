"""The trainable policy: a causal LM with LoRA adapters (any rank) or full fine-tuning.

    model, tokenizer = build_policy(job)          # float32 master weights, adapters or every weight trainable
    params = trainable_parameters(model)
    ref = frozen_copy(model)                      # full fine-tuning only: the KL reference

With LoRA the reference policy is the same model with its adapters disabled
(`training.forward.reference_logprobs`), never a second copy. A stage can start from an earlier
run folder: an adapter found there is merged into its base, and new adapters train on top.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from tinyr1 import distributed as D
from tinyr1.config import TrainJob
from tinyr1.errors import UserError
from tinyr1.models.load import load_model


def build_policy(job: TrainJob):
    """The trainable policy (float32 master weights) and its tokenizer.

    With `lora.rank > 0` the base weights are frozen and peft adapters train; the reference
    policy is then the same model with adapters disabled (`reference_logprobs`), never a copy.
    """
    # an adapter (e.g. a previous SFT run) is merged into its base, so new adapters train on top;
    # rank 0 loads first, so a model converted or downloaded once is cached before the others look
    with D.main_first():
        model, tokenizer = load_model(dataclasses.replace(job.model, dtype="float32"), merge_adapter=True)
    if job.lora.rank > 0:
        targets = job.lora.target_modules
        peft_cfg = LoraConfig(
            r=job.lora.rank, lora_alpha=job.lora.alpha, lora_dropout=job.lora.dropout,
            target_modules="all-linear" if targets == ["all-linear"] else targets, task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, peft_cfg)
        except ValueError as e:
            raise UserError(f"config key 'lora.target_modules': {e}") from None
        if job.optim.bf16:
            frozen_base_to_bf16(model)
    else:
        model.requires_grad_(True)
    if job.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if job.lora.rank > 0:
            model.enable_input_require_grads()
    model.config.use_cache = True
    return model, tokenizer


def frozen_base_to_bf16(model) -> int:
    """Store the frozen base weights under LoRA adapters in bfloat16, once; returns how many.

    Under bf16 autocast these weights are cast to bfloat16 anyway, but autocast does not cache
    casts of frozen weights: it recasts all of them in every forward of every micro-batch (~10%
    of an update step on the 135M model). The casts it would make are exactly these, so the
    results are identical, and the base takes half the memory. Outside autocast, hooks run these
    layers in bfloat16 and return the input's dtype, so every forward still works. The adapters,
    norms and embeddings stay float32.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            if isinstance(base, torch.nn.Linear) and base.weight.dtype == torch.float32:
                base.to(torch.bfloat16)
                base.register_forward_pre_hook(_cast_in)
                base.register_forward_hook(_cast_out)
                count += 1
    return count


def _cast_in(module, args):
    x = args[0]
    if torch.is_autocast_enabled(x.device.type) or x.dtype == module.weight.dtype:
        return None  # autocast makes exactly this cast itself
    module._input_dtype = x.dtype
    return (x.to(module.weight.dtype), *args[1:])


def _cast_out(module, args, out):
    dtype = module.__dict__.pop("_input_dtype", None)
    return out.to(dtype) if dtype is not None else None


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def frozen_copy(model):
    """A frozen copy of a fully fine-tuned policy, the KL reference when there are no adapters."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref
