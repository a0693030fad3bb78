"""Reward names parsed in one place: rules, `orm:` and `prm:` folders, and what is refused."""

import pytest

from tinyr1.errors import UserError
from tinyr1.rewards.spec import ProcessSpec, RewardSpec, parse_process, parse_reward


def test_outcome_reward_names():
    assert parse_reward("correctness") == RewardSpec("correctness", "rule", "correctness")
    assert parse_reward("orm:runs/rm-1.5") == RewardSpec("orm:runs/rm-1.5", "orm", "runs/rm-1.5")
    with pytest.raises(UserError, match="config key 'reward.weights.speed': unknown reward function; known: correctness, format"):
        parse_reward("speed")
    with pytest.raises(UserError, match="config key 'reward.weights.orm:': expected orm:<folder"):
        parse_reward("orm:")


def test_process_reward_names():
    assert parse_process("none") is None
    assert parse_process("reference") == ProcessSpec("rule", "reference")
    assert parse_process("prm:runs/prm") == ProcessSpec("prm", "runs/prm")
    for bad in ("prm:", "orm:runs/rm", "lines"):
        with pytest.raises(UserError, match="config key 'reward.process'"):
            parse_process(bad)
