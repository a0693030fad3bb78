"""Training loops, one file per algorithm; `get_recipe(algorithm)` returns its `train` function.

Every loop has the signature `train(job: TrainJob, run_dir: Path, resume=False, rewards=None) -> dict`
and writes the same run folder (training/run.py, training/checkpoint.py).
"""

import importlib

RECIPES = {"grpo": "tinyr1.recipes.grpo", "sft": "tinyr1.recipes.sft", "ppo": "tinyr1.recipes.ppo"}


def get_recipe(algorithm: str):
    return importlib.import_module(RECIPES[algorithm]).train
