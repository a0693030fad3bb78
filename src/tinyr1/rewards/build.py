"""The config's reward names made into callables, in this one place (names parsed by `rewards.spec`).

    fns = build_reward_fns({"correctness": 1.0, "orm:runs/rm": 0.5}, style="gsm8k")   # {name: (fn, weight)}
    step_fn = build_process_reward("arithmetic", outcome=outcome_weight(weights))     # or None for "none"

    >>> from tinyr1.types import Problem
    >>> fns = build_reward_fns({"correctness": 1.0, "format": 0.5}, style="boxed")
    >>> fn, weight = fns["format"]
    >>> fn([Problem("1", "1+1?", "2")] * 2, ["so \\\\boxed{2}", "it is 2"]), weight
    ([1.0, 0.0], 0.5)

Reward models (`orm:` / `prm:` folders) are loaded here, once, on `device` in `dtype`; a folder
that is missing or of the wrong kind raises `UserError` naming the config key. Recipes build
their rewards before loading the policy, so a bad name or folder fails before any training.
"""

from __future__ import annotations

from functools import partial

from tinyr1.rewards.callables import as_reward_fn, import_function
from tinyr1.rewards.process import PROCESS_REWARDS
from tinyr1.rewards.rules import REWARDS, RewardFn
from tinyr1.rewards.spec import parse_process, parse_reward

# The most a response's rule-based step rewards add up to, as a share of the outcome weight (see
# `rewards.process`): at 1/2 a wrong answer farming steps (at most w/2) never out-earns a correct
# answer however sloppy its steps (at least w - w/2).
PROCESS_SHARE = 0.5


def outcome_weight(weights: dict[str, float]) -> float:
    """What a correct answer's outcome reward weighs: `correctness`'s weight, else the sum of the
    positive weights (every outcome function scores in [0, 1]).

    >>> outcome_weight({"correctness": 1.0, "format": 0.2}), outcome_weight({"orm:runs/rm": 0.5, "format": 0.25})
    (1.0, 0.75)
    """
    if weights.get("correctness", 0) > 0:
        return float(weights["correctness"])
    return float(sum(w for w in weights.values() if w > 0))


class ScaledRule:
    """A rule of `rewards.process.PROCESS_REWARDS` (cap 1 in its own units) with every step reward
    multiplied by `scale`, so its cap becomes `scale`: `fn(problems, responses, mode=...)`."""

    def __init__(self, rule, scale: float):
        self.rule, self.scale = rule, scale

    def __call__(self, problems, responses, mode: str = "lines") -> list[list[float]]:
        return [[self.scale * r for r in rs] for rs in self.rule(problems, responses, mode=mode)]


def build_reward_fns(weights: dict[str, float], style: str, fallback: bool = True, timeout: float = 5.0,
                     device: str = "auto", dtype: str = "float32", given: dict | None = None) -> dict[str, tuple[RewardFn, float]]:
    """Bind each named reward function to the answer style; returns `{name: (fn, weight)}`.

    `given`: callables for `module:function` names, handed in from Python (`tinyr1.train`), used
    instead of importing the name (a notebook's function has no module to import it from)."""
    fns = {}
    for name, weight in weights.items():
        spec = parse_reward(name)
        if spec.kind == "python":
            fns[name] = (as_reward_fn((given or {}).get(name) or import_function(name)), float(weight))
        elif spec.kind == "orm":
            # loads torch and transformers: only when asked for
            from tinyr1.rewards.orm import OutcomeRewardModel

            fns[name] = (OutcomeRewardModel(spec.target, device=device, dtype=dtype, key=f"reward.weights.{name}"), float(weight))
        else:
            fns[name] = (partial(REWARDS[spec.target], style=style, fallback=fallback, timeout=timeout), float(weight))
    return fns


def build_process_reward(process: str, device: str = "auto", dtype: str = "float32", outcome: float = 1.0):
    """The step reward function named by `reward.process`: a rule, a PRM loaded now, or None for `none`.

    It is called as `fn(problems, responses, mode=step_mode) -> list of per-step rewards`. A rule's
    rewards add up to at most `PROCESS_SHARE` x `outcome` per response (`outcome_weight(reward.weights)`);
    a PRM's are its own (2 P(step ok) - 1 per step).
    """
    spec = parse_process(process)
    if spec is None:
        return None
    if spec.kind == "prm":
        # loads torch and transformers: only when asked for
        from tinyr1.rewards.prm import ProcessRewardModel

        return ProcessRewardModel(spec.target, device=device, dtype=dtype, key="reward.process")
    return ScaledRule(PROCESS_REWARDS[spec.target], PROCESS_SHARE * outcome)
