"""A plain copy of the policy for sampling: LoRA merged in, optionally in bfloat16.

Training keeps float32 master weights (and peft adapters); sampling does not need either. A
merged plain model skips the adapter branches in every linear layer, and on hardware with bf16
matrix units (recent x86 CPUs with AVX512-BF16/AMX, Ampere+ GPUs) bfloat16 decodes about 1.6x
faster than float32 on the 135M model (decode at batch 64: 102 vs 163 ms per step, measured
here with the engine of rollout/engine.py). The copy is refreshed from the
policy before each rollout: merged weights W + (alpha/r) B A are computed from the adapters,
never merged into the policy itself (merge/unmerge would drift the frozen base by rounding).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` picks bfloat16 where the hardware runs it natively, else float32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def merged_state_dict(policy) -> dict[str, torch.Tensor]:
    """The policy's weights with every LoRA delta added in, under the plain model's key names."""
    if not hasattr(policy, "peft_config"):
        return policy.state_dict()
    from peft.tuners.lora import LoraLayer

    base = policy.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                layer = module.get_base_layer()
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
                merged[f"{name}.weight"] = layer.weight + delta
                if getattr(layer, "bias", None) is not None:
                    merged[f"{name}.bias"] = layer.bias
        for name, tensor in base.state_dict().items():
            if "lora_" in name or ".base_layer." in name:
                continue
            merged.setdefault(name, tensor)
    return merged


class SamplingCopy:
    """Holds the sampling model; `refresh(policy)` copies the current weights into it."""

    def __init__(self, policy, model_cfg, dtype: str = "auto"):
        from tinyr1.models.load import load_model

        device = next(policy.parameters()).device
        self.dtype = resolve_dtype(dtype, device)
        plain = not hasattr(policy, "peft_config")
        if plain and self.dtype == torch.float32:
            self.model = None  # the policy itself samples: no copy needed
        else:
            name = "bfloat16" if self.dtype == torch.bfloat16 else "float32"
            self.model, _ = load_model(dataclasses.replace(model_cfg, dtype=name, device=device.type), merge_adapter=True)
            self.model.requires_grad_(False)

    def refresh(self, policy):
        """Copy the policy's current (merged) weights in; returns the model to sample with."""
        if self.model is None:
            return policy
        missing, unexpected = self.model.load_state_dict(merged_state_dict(policy), strict=False)
        tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"sampling copy out of sync with the policy: missing {missing}, unexpected {unexpected}")
        self.model.eval()
        return self.model
