"""Reward names from the config, parsed in this one place.

`reward.weights` names outcome reward functions: a rule of `rewards.rules.REWARDS`
(`correctness`, `format`), `orm:<folder>`, an outcome reward model written by `tinyr1 rm
train`, or `module:function`, a Python function of yours (`rewards.callables` adapts plain and
TRL-style signatures). `reward.process` names the step reward: `none`, a rule of `rewards.process.PROCESS_REWARDS`
(`arithmetic`, `reference`) or `prm:<folder>`, a process reward model from `tinyr1 prm train`.
Validation, the reward builders and the recipes all read these records; no other module looks
at the strings.

    >>> parse_reward("orm:runs/rm")
    RewardSpec(name='orm:runs/rm', kind='orm', target='runs/rm')
    >>> parse_reward("my_rewards:brevity")
    RewardSpec(name='my_rewards:brevity', kind='python', target='my_rewards:brevity')
    >>> parse_process("arithmetic")
    ProcessSpec(kind='rule', target='arithmetic')
    >>> parse_process("none") is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tinyr1.errors import UserError
from tinyr1.rewards.process import PROCESS_REWARDS
from tinyr1.rewards.rules import REWARDS

MODEL_PREFIXES = {"orm": "orm:", "prm": "prm:"}  # reward-model kind -> how the config names one


@dataclass(frozen=True)
class RewardSpec:
    """One outcome reward function of `reward.weights`."""

    name: str  # the key as written in the config ("correctness", "orm:runs/rm")
    kind: Literal["rule", "orm", "python"]
    target: str  # the rule's name, the reward model's folder, or `module:function`


@dataclass(frozen=True)
class ProcessSpec:
    """The step reward of `reward.process` (absent when it is `none`)."""

    kind: Literal["rule", "prm"]
    target: str  # the rule's name, or the reward model's folder


def parse_reward(name: str) -> RewardSpec:
    """The spec of one `reward.weights` key; `UserError` naming the key when it is neither a rule nor `orm:<folder>`."""
    if name.startswith(MODEL_PREFIXES["orm"]):
        folder = name[len(MODEL_PREFIXES["orm"]) :]
        if not folder:
            raise UserError(f"config key 'reward.weights.{name}': expected orm:<folder of a reward model>")
        return RewardSpec(name, "orm", folder)
    module, colon, function = name.partition(":")
    if colon and module and function and all(part.isidentifier() for part in [*module.split("."), *function.split(".")]):
        return RewardSpec(name, "python", name)
    if name not in REWARDS:
        raise UserError(f"config key 'reward.weights.{name}': unknown reward function; known: {', '.join(REWARDS)}, "
                        "orm:<folder>, module:function")
    return RewardSpec(name, "rule", name)


def parse_process(spec: str) -> ProcessSpec | None:
    """The spec of `reward.process` (None for `none`); `UserError` naming the key for anything else."""
    if spec == "none":
        return None
    if spec.startswith(MODEL_PREFIXES["prm"]) and spec[len(MODEL_PREFIXES["prm"]) :]:
        return ProcessSpec("prm", spec[len(MODEL_PREFIXES["prm"]) :])
    if spec in PROCESS_REWARDS:
        return ProcessSpec("rule", spec)
    raise UserError(f"config key 'reward.process': {spec!r} is not allowed; expected one of 'none', "
                    f"{', '.join(repr(k) for k in PROCESS_REWARDS)} or 'prm:<folder>'")
