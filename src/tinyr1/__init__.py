"""tinyr1: teach small language models to reason on math with pure reinforcement learning.

    import tinyr1
    summary = tinyr1.train("configs/quickstart.yaml", reward_funcs=[my_reward])   # see tinyr1/api.py
    result = tinyr1.evaluate({"model": {"name": summary["run_dir"]}})

Importing the package stays light: `train` and `evaluate` load torch and transformers when first used.
"""

__version__ = "0.1.0"
__all__ = ["evaluate", "train"]


def __getattr__(name: str):
    if name in __all__:
        # the Python API imports torch and transformers: only when it is used, so `import tinyr1` stays light
        from tinyr1 import api

        return getattr(api, name)
    raise AttributeError(f"module 'tinyr1' has no attribute {name!r}")
