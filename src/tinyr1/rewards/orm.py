"""Outcome reward model as a reward function: one probability of being correct per response.

A plain callable like the rule rewards of `rewards.rules`, so the config mixes it with them by
weight (DeepSeekMath's model-based reward, Shao et al. 2024):

    reward:
      weights: {"orm:runs/rm": 1.0}                       # the ORM alone
      weights: {correctness: 1.0, "orm:runs/rm": 0.5}     # mixed with the grader

    >>> orm = OutcomeRewardModel("runs/rm", device="cpu")      # doctest: +SKIP
    >>> orm([problem, problem], ["... \\\\boxed{7}", "... \\\\boxed{8}"])  # doctest: +SKIP
    [0.91, 0.12]

The model (written by `tinyr1 rm train`) reads the question and the response (layout in
`rewards.scoring`) and its logit at the response's last token is the log-odds that the response
is correct; the reward is its sigmoid, in [0, 1] like `correctness`. Scoring runs in batches,
without gradients, on the given device and dtype, loaded once when the function is built.
"""

from __future__ import annotations

import torch

from tinyr1.models.heads import load_scorer
from tinyr1.rewards.scoring import score_pieces
from tinyr1.types import Problem


class OutcomeRewardModel:
    """`(problems, responses) -> list[float]`: P(correct) per response from a saved ORM."""

    def __init__(self, path: str, device: str = "auto", dtype: str = "float32", batch_size: int = 16, key: str | None = None,
                 progress: bool = False):
        self.model, self.tokenizer, self.meta = load_scorer(path, "orm", device=device, dtype=dtype, key=key)
        self.batch_size = batch_size
        self.progress = progress  # a bar while scoring (`rm eval`, `prm eval`); off inside training

    def logits(self, prompts: list[str], responses: list[str]) -> list[float]:
        """The raw score (log-odds of correct) of each response to its prompt."""
        scores = score_pieces(self.model, self.tokenizer, prompts, [[r] for r in responses], self.batch_size, self.progress)
        return [s[0] for s in scores]

    def __call__(self, problems: list[Problem], responses: list[str], **_: object) -> list[float]:
        logits = self.logits([p.question for p in problems], responses)
        return torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).tolist()
