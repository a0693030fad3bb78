"""Losses against hand-computed tensors (the arithmetic is in the comments)."""

import math

import pytest
import torch
from torch.testing import assert_close

from tinyr1.algorithms.losses import aggregate, kl_penalty, masked_mean, policy_loss, value_loss

# ----------------------------------------------------------------------------- aggregate

# Sequence 0 has 4 real tokens [1, 2, 3, 4]; sequence 1 has 2 real tokens [5, 6] and padding
# holding 100, which must never count.
X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, 100.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])


def test_token_mode_divides_by_the_token_count():
    # (1 + 2 + 3 + 4 + 5 + 6) / 6 = 21 / 6 = 3.5
    assert_close(aggregate(X, MASK, "token"), torch.tensor(3.5))


def test_sequence_mode_averages_each_sequence_then_the_sequences():
    # (10/4 + 11/2) / 2 = (2.5 + 5.5) / 2 = 4.0
    assert_close(aggregate(X, MASK, "sequence"), torch.tensor(4.0))


def test_dr_grpo_mode_divides_by_sequences_times_the_budget():
    # 21 / (2 sequences * max_len 4) = 2.625
    assert_close(aggregate(X, MASK, "dr_grpo", max_len=4), torch.tensor(2.625))


def test_explicit_counts_replace_the_local_ones():
    # token: 21 / 12 = 1.75;  sequence: 8 / 4 = 2.0;  dr_grpo: 21 / (4 * 4) = 1.3125
    assert_close(aggregate(X, MASK, "token", token_count=12), torch.tensor(1.75))
    assert_close(aggregate(X, MASK, "sequence", seq_count=4), torch.tensor(2.0))
    assert_close(aggregate(X, MASK, "dr_grpo", max_len=4, seq_count=4), torch.tensor(1.3125))


def test_dr_grpo_without_max_len_raises():
    with pytest.raises(ValueError, match="max_len"):
        aggregate(X, MASK, "dr_grpo")


def test_unknown_mode_names_the_allowed_values():
    with pytest.raises(ValueError, match="'token', 'sequence', 'dr_grpo'"):
        aggregate(X, MASK, "mean")


@pytest.mark.parametrize("mode", ["token", "sequence", "dr_grpo"])
def test_empty_mask_gives_zero_not_nan(mode):
    out = aggregate(torch.randn(2, 3), torch.zeros(2, 3), mode, max_len=3)
    assert_close(out, torch.tensor(0.0))


@pytest.mark.parametrize("mode", ["token", "sequence", "dr_grpo"])
def test_two_halves_with_global_counts_equal_the_full_batch(mode):
    # Gradient accumulation: each micro-batch divides by the whole batch's counts, so the
    # micro-batch losses (and their gradients) add up to the full-batch ones exactly.
    torch.manual_seed(0)
    n, length = 6, 5
    data = torch.randn(n, length)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2])  # ragged, one empty sequence
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    weight = torch.randn(length, requires_grad=True)
    counts = {"max_len": length, "token_count": mask.sum(), "seq_count": n}

    full = aggregate(data * weight, mask, mode, **counts)
    (full_grad,) = torch.autograd.grad(full, weight)

    halves = [
        aggregate(data[rows] * weight, mask[rows], mode, **counts)
        for rows in (slice(0, 2), slice(2, n))  # unequal halves: 2 and 4 sequences
    ]
    split = halves[0] + halves[1]
    (split_grad,) = torch.autograd.grad(split, weight)
    assert_close(split, full)
    assert_close(split_grad, full_grad)


# ----------------------------------------------------------------------------- policy loss

# Six real tokens (old logprobs 0, so ratio = exp(logprobs)) and one padding token with a huge
# ratio. clip_low 0.2 -> floor 0.8; clip_high 0.28 -> ceiling 1.28.
RATIOS = torch.tensor([[1.5, 0.5, 1.1, 0.9, 1.5, 0.5, 50.0]])
ADV = torch.tensor([[1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0]])
PMASK = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
# token  ratio  A   ratio*A  clip(ratio)*A  -min(...)   clipped branch active?
#   0    1.5   +1    1.5       1.28          -1.28      yes (high side)
#   1    0.5   -1   -0.5      -0.8            0.8       yes (low side)
#   2    1.1   +1    1.1       1.1           -1.1       no  (inside the range)
#   3    0.9   -1   -0.9      -0.9            0.9       no  (inside the range)
#   4    1.5   -1   -1.5      -1.28           1.5       no  (unclipped is smaller: pessimistic)
#   5    0.5   +1    0.5       0.8           -0.5       no  (unclipped is smaller: pessimistic)
PER_TOKEN = [-1.28, 0.8, -1.1, 0.9, 1.5, -0.5]  # sum 0.32


def _policy_inputs():
    logprobs = RATIOS.log().requires_grad_(True)
    return logprobs, torch.zeros_like(logprobs)


def test_policy_loss_clips_each_side_only_when_the_clipped_branch_is_smaller():
    logprobs, old = _policy_inputs()
    loss, stats = policy_loss(logprobs, old, ADV, PMASK)
    assert_close(loss, torch.tensor(sum(PER_TOKEN) / 6))  # 0.32 / 6 = 0.05333
    assert stats["clip_frac_high"] == pytest.approx(1 / 6)  # token 0
    assert stats["clip_frac_low"] == pytest.approx(1 / 6)  # token 1
    # ratio mean over real tokens: (1.5 + .5 + 1.1 + .9 + 1.5 + .5) / 6 = 1.0
    assert stats["ratio_mean"] == pytest.approx(1.0)


def test_policy_loss_gradient_is_zero_on_clipped_tokens():
    # d(-ratio * A / 6) / d logprob = -A * ratio / 6 on unclipped tokens; 0 on clipped ones
    # (tokens 0 and 1) and on padding (token 6).
    logprobs, old = _policy_inputs()
    loss, _ = policy_loss(logprobs, old, ADV, PMASK)
    loss.backward()
    expected = torch.tensor([[0.0, 0.0, -1.1 / 6, 0.9 / 6, 1.5 / 6, -0.5 / 6, 0.0]])
    assert_close(logprobs.grad, expected)


def test_policy_loss_approx_kl_is_k3_with_r_the_ratio():
    # mean over real tokens of (r - 1) - log r:
    # 1.5: .5 - .405465 = .094535;  0.5: -.5 + .693147 = .193147
    # 1.1: .1 - .095310 = .004690;  0.9: -.1 + .105361 = .005361
    # (2 * .094535 + 2 * .193147 + .004690 + .005361) / 6 = .097569
    logprobs, old = _policy_inputs()
    _, stats = policy_loss(logprobs, old, ADV, PMASK)
    r = [1.5, 0.5, 1.1, 0.9, 1.5, 0.5]
    expected = sum((x - 1) - math.log(x) for x in r) / 6
    assert stats["approx_kl"] == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.097569, abs=1e-6)


def test_policy_loss_broadcasts_a_sequence_advantage_over_its_tokens():
    # One advantage per sequence (N,) equals the same value written on every token (N, L).
    torch.manual_seed(0)
    logprobs, old = torch.randn(3, 4), torch.randn(3, 4)
    adv = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.ones(3, 4)
    loss_seq, _ = policy_loss(logprobs, old, adv, mask)
    loss_tok, _ = policy_loss(logprobs, old, adv[:, None].expand(3, 4), mask)
    assert_close(loss_seq, loss_tok)


def test_policy_loss_symmetric_clip_and_sequence_mode():
    # clip 0.2 both sides: token 0 ceiling 1.2 -> -1.2; token 4 -> 1.5 (unclipped still wins).
    # Two sequences: [token 0, token 4] and [token 2, padding].
    # sequence mode: ((-1.2 + 1.5) / 2 + (-1.1) / 1) / 2 = (0.15 - 1.1) / 2 = -0.475
    logprobs = torch.tensor([[1.5, 1.5], [1.1, 7.0]]).log()
    adv = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = policy_loss(
        logprobs, torch.zeros(2, 2), adv, mask, clip_low=0.2, clip_high=0.2, mode="sequence"
    )
    assert_close(loss, torch.tensor(-0.475))
    assert stats["clip_frac_high"] == pytest.approx(1 / 3)


def test_policy_loss_with_empty_mask_is_finite_zero():
    logprobs, old = torch.randn(2, 3), torch.randn(2, 3)
    loss, stats = policy_loss(logprobs, old, torch.ones(2), torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert all(math.isfinite(v) for v in stats.values())


# ----------------------------------------------------------------------------- KL penalty


def test_k1_and_k3_by_hand():
    # p = .5, ref = .25: k1 = log(.5/.25) = log 2 = .693147
    #                    k3 = exp(log .25 - log .5) - (log .25 - log .5) - 1
    #                       = .5 + .693147 - 1 = .193147
    # p = .25, ref = .5: k1 = -log 2 (k1 can be negative); k3 = 2 - .693147 - 1 = .306853
    # p = ref:           both 0
    logp = torch.tensor([[0.5, 0.25, 0.3]]).log()
    logref = torch.tensor([[0.25, 0.5, 0.3]]).log()
    ln2 = math.log(2)
    assert_close(kl_penalty(logp, logref, "k1"), torch.tensor([[ln2, -ln2, 0.0]]))
    assert_close(kl_penalty(logp, logref, "k3"), torch.tensor([[ln2 - 0.5, 1 - ln2, 0.0]]))


def test_k3_is_never_negative():
    torch.manual_seed(0)
    assert (kl_penalty(torch.randn(50, 7), torch.randn(50, 7), "k3") >= 0).all()


def test_unknown_kl_estimator_names_the_allowed_values():
    with pytest.raises(ValueError, match="'k1', 'k3'"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k2")


# ----------------------------------------------------------------------------- value loss


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_errors():
    # old values all 0.5, clip 0.2 -> clipped v lies in [0.3, 0.7]
    # token  v    R    (v-R)^2   clip(v)  (clip(v)-R)^2   0.5*max   clipped branch larger?
    #   0   1.0  2.0    1.0       0.7       1.69          0.845     yes
    #   1   0.0  0.0    0.0       0.3       0.09          0.045     yes
    #   2   0.5  0.0    0.25      0.5       0.25          0.125     no (equal)
    #   3   1.0  0.0    1.0       0.7       0.49          0.5       no
    # padding token 4 (error 10000) is ignored. token mean: 1.515 / 4 = 0.37875
    values = torch.tensor([[1.0, 0.0, 0.5, 1.0, 100.0]], requires_grad=True)
    old = torch.full((1, 5), 0.5)
    returns = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    assert_close(loss, torch.tensor(0.37875))
    assert stats["value_clip_frac"] == pytest.approx(0.5)
    # gradient (v - R) / 4 where the unclipped branch wins, 0 where the clipped one does;
    # token 2 sits inside the clip range, so both branches have gradient v - R = 0.5 and
    # torch.maximum's even split of a tie still gives 0.5 / 4.
    loss.backward()
    assert_close(values.grad, torch.tensor([[0.0, 0.0, 0.125, 0.25, 0.0]]))


def test_value_loss_with_empty_mask_is_finite_zero():
    values, old, returns = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    loss, stats = value_loss(values, old, returns, torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert stats["value_clip_frac"] == 0.0


def test_masked_mean_ignores_padding_and_survives_empty_masks():
    assert_close(masked_mean(X, MASK), torch.tensor(3.5))
    assert_close(masked_mean(X, torch.zeros_like(MASK)), torch.tensor(0.0))
