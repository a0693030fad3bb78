"""Training loops, one file per algorithm; `RECIPES` maps `algorithm:` to its `train` function."""

from tinyr1.recipes.grpo import train as train_grpo

RECIPES = {"grpo": train_grpo}
