"""Blocked logprobs and entropy against the naive torch.log_softmax reference."""

import math

import pytest
import torch
from torch.testing import assert_close

from tinyr1.algorithms.logprobs import entropy_from_logits, token_logprobs

N, T, V = 3, 5, 11
# Block budgets: 1 row of 11 logits at a time; 2 positions; all of one sequence plus more
# (several sequences per block); everything in one block.
CHUNKS = [1, 2 * V, T * V + 1, 10**9]


def _reference_logprobs(logits, labels):
    return torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None]).squeeze(-1)


def _reference_entropy(logits):
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


def _inputs(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(N, T, V, generator=g)).to(dtype)
    labels = torch.randint(0, V, (N, T), generator=g)
    return logits, labels


def test_token_logprobs_by_hand():
    # logits [0, log 3] -> softmax [1/4, 3/4] -> log-probs [log .25, log .75]
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    out = token_logprobs(logits, torch.tensor([[0, 1]]))
    assert_close(out, torch.tensor([[math.log(0.25), math.log(0.75)]]))


def test_entropy_by_hand():
    # softmax [1/4, 3/4]: H = -(.25 log .25 + .75 log .75) = .562335; uniform over 2: log 2
    logits = torch.tensor([[[0.0, math.log(3.0)], [1.0, 1.0]]])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert_close(entropy_from_logits(logits), torch.tensor([[expected, math.log(2.0)]]))


@pytest.mark.parametrize("chunk", CHUNKS)
def test_token_logprobs_and_gradient_match_log_softmax(chunk):
    logits, labels = _inputs()
    mine = logits.clone().requires_grad_(True)
    ref = logits.clone().requires_grad_(True)
    weights = torch.randn(N, T)  # a non-uniform upstream gradient
    out = token_logprobs(mine, labels, chunk_elems=chunk)
    expected = _reference_logprobs(ref, labels)
    assert_close(out, expected)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_close(mine.grad, ref.grad)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_entropy_and_gradient_match_the_reference(chunk):
    logits, _ = _inputs(1)
    mine = logits.clone().requires_grad_(True)
    ref = logits.clone().requires_grad_(True)
    weights = torch.randn(N, T)
    out = entropy_from_logits(mine, chunk_elems=chunk)
    expected = _reference_entropy(ref)
    assert_close(out, expected)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_close(mine.grad, ref.grad)


def test_bf16_logits_give_float32_results_equal_to_the_upcast_reference():
    logits, labels = _inputs(2, torch.bfloat16)
    logits.requires_grad_(True)
    out = token_logprobs(logits, labels, chunk_elems=2 * V)
    ent = entropy_from_logits(logits, chunk_elems=2 * V)
    assert out.dtype == torch.float32 and ent.dtype == torch.float32
    # Same bf16 values upcast, then float32 math: equal to float32 precision, not bf16's.
    assert_close(out, _reference_logprobs(logits.detach(), labels))
    assert_close(ent, _reference_entropy(logits.detach()))
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16  # gradient comes back in the logits' dtype
    ref = logits.detach().float().requires_grad_(True)
    _reference_logprobs(ref, labels).sum().backward()
    assert_close(logits.grad.float(), ref.grad, atol=1e-2, rtol=1e-2)


def test_non_contiguous_slice_of_logits_is_handled():
    # Response logits are usually a slice logits[:, P-1:-1] of the full (N, P+L, V) output.
    full, _ = _inputs(3)
    logits = full[:, 1:-1]
    labels = torch.randint(0, V, logits.shape[:2])
    assert not logits.is_contiguous()
    expected = _reference_logprobs(logits, labels)
    assert_close(token_logprobs(logits, labels, chunk_elems=2 * V), expected)
    assert_close(entropy_from_logits(logits, chunk_elems=2 * V), _reference_entropy(logits))


def test_float64_gradcheck():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (2, 3), generator=g)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, labels, chunk_elems=4), (logits,))
    assert torch.autograd.gradcheck(lambda z: entropy_from_logits(z, chunk_elems=8), (logits,))


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match="labels"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("chunk", CHUNKS)
def test_fused_logprobs_and_entropy_match_the_separate_functions(chunk):
    from tinyr1.algorithms.logprobs import token_logprobs_and_entropy

    logits, labels = _inputs(seed=3)
    mine = logits.clone().requires_grad_(True)
    ref = logits.clone().requires_grad_(True)
    out, ent = token_logprobs_and_entropy(mine, labels, chunk_elems=chunk)
    assert_close(ent, _reference_entropy(logits))
    assert not ent.requires_grad  # logged, never trained on
    expected = _reference_logprobs(ref, labels)
    assert_close(out, expected)
    weights = torch.randn(N, T)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_close(mine.grad, ref.grad)
