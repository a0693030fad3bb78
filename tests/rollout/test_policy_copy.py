"""The sampling copy holds exactly the policy's merged weights."""

import torch

from tinyr1.config import ModelConfig
from tinyr1.models.load import load_model
from tinyr1.rollout.policy_copy import SamplingCopy, merged_state_dict


def _lora_policy(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    base, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    torch.manual_seed(0)  # random adapters (init_lora_weights=False): the same whatever ran before
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return policy


def test_merged_copy_gives_the_policy_logits(tiny_model_dir):
    policy = _lora_policy(tiny_model_dir)
    copy = SamplingCopy(policy, ModelConfig(name=str(tiny_model_dir), device="cpu"), dtype="float32")
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    with torch.no_grad():
        expected = policy(ids).logits
        got = copy.refresh(policy)(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the policy's own frozen base weights are untouched by the merge
    name = next(n for n, _ in policy.named_parameters() if n.endswith("q_proj.base_layer.weight"))
    before = dict(policy.named_parameters())[name].clone()
    copy.refresh(policy)
    assert torch.equal(dict(policy.named_parameters())[name], before)


def test_refresh_follows_training_and_bf16_copy_is_close(tiny_model_dir):
    policy = _lora_policy(tiny_model_dir)
    copy = SamplingCopy(policy, ModelConfig(name=str(tiny_model_dir), device="cpu"), dtype="bfloat16")
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)  # an optimizer step, in effect
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    model = copy.refresh(policy)
    assert next(model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits.float(), policy(ids).logits, rtol=0.05, atol=0.05)


def test_plain_float32_policy_samples_itself(tiny_model_dir):
    base, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    copy = SamplingCopy(base, ModelConfig(name=str(tiny_model_dir), device="cpu"), dtype="float32")
    assert copy.refresh(base) is base
    assert set(merged_state_dict(base)) == set(base.state_dict())


def test_refresh_copies_every_weight_and_refuses_a_policy_out_of_sync(tiny_model_dir):
    """Every weight of the copy is rewritten by a refresh (each merged tensor copied in as it is
    made), and a policy with a weight the copy lacks, or lacking one it has, is an error naming it."""
    import pytest

    policy = _lora_policy(tiny_model_dir)
    copy = SamplingCopy(policy, ModelConfig(name=str(tiny_model_dir), device="cpu"), dtype="float32")
    model = copy.refresh(policy)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)  # garbage everywhere: a refresh must overwrite all of it
    model = copy.refresh(policy)
    expected = merged_state_dict(policy)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name] if name in expected else expected["model.embed_tokens.weight"])

    base = policy.get_base_model()
    base.register_buffer("extra_thing", torch.zeros(2))
    with pytest.raises(RuntimeError, match="extra_thing"):
        copy.refresh(policy)
    del base._buffers["extra_thing"]
    copy.model.register_buffer("only_in_copy", torch.zeros(2))
    with pytest.raises(RuntimeError, match="only_in_copy"):
        copy.refresh(policy)
