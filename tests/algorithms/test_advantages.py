"""Advantage estimators against hand-computed tensors (the arithmetic is in the comments)."""

import math

import pytest
import torch
from torch.testing import assert_close

from tinyr1.algorithms.advantages import (
    equal_reward_group_share,
    gae,
    gae_loop,
    group_advantages,
    process_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    whiten,
)

# Two prompts, G = 4 samples each: group 0 = [1, 0, 0, 1], group 1 = [1, 1, 1, 0].
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
S3 = math.sqrt(3.0)


# ----------------------------------------------------------------------------- group_advantages


def test_group_scale_divides_by_each_groups_population_std():
    # group 0: mean 0.5, deviations +-0.5, population std 0.5 -> +-1
    # group 1: mean 0.75, deviations [.25, .25, .25, -.75],
    #          var = (3 * .0625 + .5625) / 4 = .1875, std = sqrt(3)/4 = .4330
    #          -> .25 / .4330 = 1/sqrt(3), -.75 / .4330 = -sqrt(3)
    expected = torch.tensor([1.0, -1.0, -1.0, 1.0, 1 / S3, 1 / S3, 1 / S3, -S3])
    assert_close(group_advantages(REWARDS, 4, "group", eps=0.0), expected)


def test_group_scale_default_eps_is_added_to_the_std():
    # group 0: 0.5 / (0.5 + 1e-4)
    adv = group_advantages(REWARDS, 4)
    assert_close(adv[0], torch.tensor(0.5 / 0.5001))


def test_batch_scale_divides_by_the_std_of_all_rewards():
    # all 8 rewards: mean 5/8, var = E[r^2] - mean^2 = 5/8 - 25/64 = 15/64, std = sqrt(15)/8
    # centred by group mean as before: [.5, -.5, -.5, .5, .25, .25, .25, -.75]
    std = math.sqrt(15) / 8
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    assert_close(group_advantages(REWARDS, 4, "batch", eps=0.0), centred / std)


def test_none_scale_is_reward_minus_group_mean_dr_grpo():
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    assert_close(group_advantages(REWARDS, 4, "none"), expected)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_with_equal_rewards_gets_zero_advantage_not_nan(scale):
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # G = 3: both groups constant
    adv = group_advantages(rewards, 3, scale)
    assert_close(adv, torch.zeros(6))


def test_unknown_scale_names_the_allowed_values():
    with pytest.raises(ValueError, match="'group', 'batch', 'none'"):
        group_advantages(REWARDS, 4, "grup")


def test_rewards_not_divisible_by_group_size_raise():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(REWARDS, 3)


def test_equal_reward_group_share_counts_constant_groups():
    # groups of 2: [1,0] [0,1] [1,1] [1,0] -> one of four is constant
    assert equal_reward_group_share(REWARDS, 2) == 0.25


# ----------------------------------------------------------------------------- RLOO


def test_rloo_subtracts_the_mean_of_the_other_samples():
    # group 0 [1,0,0,1]: a 1 sees others [0,0,1] mean 1/3 -> 2/3; a 0 sees [1,0,1] mean 2/3 -> -2/3
    # group 1 [1,1,1,0]: a 1 sees [1,1,0] mean 2/3 -> 1/3; the 0 sees [1,1,1] mean 1 -> -1
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, -1.0])
    assert_close(rloo_advantages(REWARDS, 4), expected)


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(REWARDS, 1)


# ----------------------------------------------------------------------------- REINFORCE++


def test_reinforce_pp_baseline_centres_by_group_then_whitens_over_the_batch():
    # group-centred: [.5, -.5, -.5, .5, .25, .25, .25, -.75], batch mean 0,
    # var = (4 * .25 + 3 * .0625 + .5625) / 8 = 1.75 / 8 = .21875, std = .46771
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    expected = centred / math.sqrt(0.21875)
    assert_close(reinforce_pp_advantages(REWARDS, group_size=4), expected)


def test_reinforce_pp_without_groups_is_plain_batch_whitening():
    # mean 5/8, std sqrt(15)/8 (see the batch-scale test)
    expected = (REWARDS - 5 / 8) / (math.sqrt(15) / 8)
    assert_close(reinforce_pp_advantages(REWARDS), expected)


def test_reinforce_pp_with_mask_weighs_statistics_by_tokens():
    # rewards [1, 0]; sequence 0 has 3 tokens, sequence 1 has 1 token.
    # token values [1, 1, 1, 0]: mean 3/4, var = 3/4 - 9/16 = 3/16, std = sqrt(3)/4
    # -> sequence 0 tokens: (1/4) / (sqrt3/4) = 1/sqrt3; sequence 1 token: -sqrt3; padding 0
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = reinforce_pp_advantages(torch.tensor([1.0, 0.0]), mask=mask)
    assert_close(adv, torch.tensor([[1 / S3, 1 / S3, 1 / S3], [-S3, 0.0, 0.0]]))


# ----------------------------------------------------------------------------- whiten


def test_whiten_ignores_masked_positions():
    # real [1, 2, 3]: mean 2, population var 2/3 -> (x - 2) / sqrt(2/3) = [-1.2247, 0, 1.2247];
    # the masked 100 neither moves the statistics nor survives in the output.
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    r = math.sqrt(1.5)
    assert_close(whiten(x, mask), torch.tensor([[-r, 0.0, r, 0.0]]))


def test_whiten_without_mean_shift_keeps_the_mean():
    # (x - 2) / sqrt(2/3) + 2 = [0.7753, 2, 3.2247]
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    r = math.sqrt(1.5)
    assert_close(whiten(x, mask, shift_mean=False), torch.tensor([[2 - r, 2.0, 2 + r, 0.0]]))


def test_whiten_with_empty_mask_returns_zeros():
    out = whiten(torch.randn(2, 3), torch.zeros(2, 3))
    assert_close(out, torch.zeros(2, 3))


# ----------------------------------------------------------------------------- GAE


def test_gae_by_hand_three_tokens_gamma_09_lambda_095():
    # rewards [0, 0, 1], values [.5, .6, .7], a 4th padding token; c = gamma * lam = .855
    # t=2: delta = 1 + .9 * 0 - .7 = .3                  (V after the last token is 0)
    #      A = .3
    # t=1: delta = 0 + .9 * .7 - .6 = .03;  A = .03 + .855 * .3    = .2865
    # t=0: delta = 0 + .9 * .6 - .5 = .04;  A = .04 + .855 * .2865 = .2849575
    # returns = A + V = [.7849575, .8865, 1.0]; padding gets 0 in both.
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    adv_expected = torch.tensor([[0.2849575, 0.2865, 0.3, 0.0]], dtype=torch.float64)
    ret_expected = torch.tensor([[0.7849575, 0.8865, 1.0, 0.0]], dtype=torch.float64)
    for fn in (gae_loop, gae):
        adv, ret = fn(rewards, values, mask, gamma=0.9, lam=0.95)
        assert_close(adv, adv_expected)
        assert_close(ret, ret_expected)


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.9, 0.95), (0.99, 0.0)])
def test_vectorised_gae_equals_the_loop_on_ragged_right_padded_rows(gamma, lam):
    torch.manual_seed(0)
    n, length = 6, 13
    lengths = torch.tensor([13, 0, 1, 7, 12, 5])  # includes an empty and a full row
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    rewards, values = torch.randn(n, length), torch.randn(n, length)
    adv_loop, ret_loop = gae_loop(rewards, values, mask, gamma, lam)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    assert_close(adv, adv_loop, atol=1e-5, rtol=1e-5)
    assert_close(ret, ret_loop, atol=1e-5, rtol=1e-5)
    assert (adv[mask == 0] == 0).all()


def test_gae_rejects_a_mask_with_holes():
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="right-padded"):
        gae(torch.zeros(1, 3), torch.zeros(1, 3), mask, 1.0, 1.0)


def test_gae_with_empty_mask_is_zero_not_nan():
    adv, ret = gae(torch.randn(2, 4), torch.randn(2, 4), torch.zeros(2, 4), 0.9, 0.95)
    assert_close(adv, torch.zeros(2, 4))
    assert_close(ret, torch.zeros(2, 4))


# ----------------------------------------------------------------------------- process


def test_process_advantages_by_hand_one_group_of_two():
    # Sample 0: 5 real tokens, steps end at tokens 1 and 4 with rewards [1, 0].
    # Sample 1: 4 real tokens, one step ending at token 2, reward 1; its second step slot is
    #           padding (reward 5, end 0) and must be ignored.
    # Group's real step rewards [1, 0, 1]: mean 2/3, var = (1/9 + 4/9 + 1/9) / 3 = 2/9,
    # std = sqrt(2)/3 -> 1 becomes (1/3) / (sqrt2/3) = 1/sqrt2,
    #                   0 becomes (-2/3) / (sqrt2/3) = -sqrt2.
    # Token advantage = sum of normalised rewards of steps ending at or after the token:
    #   sample 0: t=0,1 -> 1/sqrt2 - sqrt2 = -1/sqrt2;  t=2..4 -> -sqrt2;  t=5 padding -> 0
    #   sample 1: t=0..2 -> 1/sqrt2;  t=3 after the last step -> 0;  t=4,5 padding -> 0
    step_rewards = torch.tensor([[1.0, 0.0], [1.0, 5.0]])
    step_mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    step_end = torch.tensor([[1, 4], [2, 0]])
    response_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    h, s2 = 1 / math.sqrt(2), math.sqrt(2)
    expected = torch.tensor([[-h, -h, -s2, -s2, -s2, 0.0], [h, h, h, 0.0, 0.0, 0.0]])
    adv = process_advantages(step_rewards, step_mask, step_end, response_mask, 2, eps=0.0)
    assert_close(adv, expected)


def test_process_advantages_groups_are_normalised_separately():
    # Two groups of one sample each, one step each: every group has a single reward, so its
    # std is 0 and the normalised reward is 0 / (0 + eps) = 0 everywhere, no NaN.
    adv = process_advantages(
        torch.tensor([[3.0], [-1.0]]),
        torch.ones(2, 1),
        torch.tensor([[2], [2]]),
        torch.ones(2, 3),
        group_size=1,
    )
    assert_close(adv, torch.zeros(2, 3))


def test_process_advantages_with_no_real_steps_is_zero_not_nan():
    adv = process_advantages(
        torch.full((2, 2), float("nan")),
        torch.zeros(2, 2),
        torch.zeros(2, 2, dtype=torch.long),
        torch.ones(2, 4),
        group_size=2,
    )
    assert_close(adv, torch.zeros(2, 4))


def test_process_advantages_rejects_a_step_end_past_the_response():
    with pytest.raises(ValueError, match="step_end"):
        process_advantages(
            torch.ones(1, 1), torch.ones(1, 1), torch.tensor([[4]]), torch.ones(1, 4), 1
        )
