"""Process reward model as a step reward function.

`ProcessRewardModel` is a callable like the rules of `rewards.process`, `(problems, responses,
mode=...) -> list of per-step rewards`. Each response is split into steps (`rewards.steps`,
`reward.step_mode`), the PRM (written by `tinyr1 prm train`) reads the question and the steps
(`rewards.scoring`) and its logit at each step's end is the log-odds that the solution is still
on track there (Math-Shepherd's label: some continuation from that step reaches the right
answer). The step reward is `2 p - 1` in [-1, 1]: +1 a step the PRM is sure of, -1 one it is sure
is wrong, 0 where it cannot tell, the scale of the `arithmetic` rule; centred so that steps the
PRM cannot judge neither add nor cost reward (matters for PPO's per-token rewards, which sum over
steps; GRPO's `process` advantage normalises per group anyway). The stepwise files PRMs train on
are read by `rm.data.read_stepwise`.

    reward:
      process: "prm:runs/prm"        # GRPO with advantage: process, or PPO per-token step rewards
      step_mode: lines
"""

from __future__ import annotations

import torch

from tinyr1.models.heads import load_scorer
from tinyr1.rewards.scoring import score_pieces
from tinyr1.rewards.steps import split_steps
from tinyr1.types import Problem


class ProcessRewardModel:
    """`(problems, responses, mode=...) -> list[list[float]]`: `2 P(step ok) - 1` per step."""

    def __init__(self, path: str, device: str = "auto", dtype: str = "float32", batch_size: int = 16, key: str | None = None,
                 progress: bool = False):
        self.model, self.tokenizer, self.meta = load_scorer(path, "prm", device=device, dtype=dtype, key=key)
        self.batch_size = batch_size
        self.progress = progress  # a bar while scoring (`rm eval`, `prm eval`); off inside training

    def probabilities(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        """P(step ok) at each step of each solution; steps given as strings."""
        logits = score_pieces(self.model, self.tokenizer, prompts, steps, self.batch_size, self.progress)
        return [torch.sigmoid(torch.tensor(row, dtype=torch.float32)).tolist() for row in logits]

    def __call__(self, problems: list[Problem], responses: list[str], *, mode: str = "lines", **_: object) -> list[list[float]]:
        if len(problems) != len(responses):
            raise ValueError(f"got {len(problems)} problems but {len(responses)} responses")
        steps = [[s.text for s in split_steps(r, mode)] for r in responses]
        probs = self.probabilities([p.question for p in problems], steps)
        return [[2.0 * p - 1.0 for p in row] for row in probs]

