"""Typed configuration: the schema (one dataclass per concern), loading from YAML with dotted
overrides, and one validator for every job.

    from tinyr1.config import TrainJob, load_config, parse_overrides, validate
    job = load_config(TrainJob, "configs/quickstart.yaml", parse_overrides(["--grpo.beta=0.04"]))
    validate(job)

schema.py: the training and evaluation sections and jobs; rm.py: the reward-model jobs;
load.py: YAML, overrides, `--help` text; validate.py: ranges and cross-field rules.
"""

from tinyr1.config.load import MOVED, help_text, load_config, parse_overrides, read_yaml, to_dict
from tinyr1.config.rm import (
    CollectConfig,
    LabelConfig,
    PRMLabelJob,
    RMCollectJob,
    RMEvalConfig,
    RMEvalJob,
    RMTrainConfig,
    RMTrainJob,
    StepsConfig,
)
from tinyr1.config.schema import (
    DataConfig,
    EvalConfig,
    EvalJob,
    GradingConfig,
    GRPOConfig,
    LoraConfig,
    ModelConfig,
    OptimConfig,
    PPOConfig,
    PromptConfig,
    RewardConfig,
    RunConfig,
    SamplingConfig,
    SFTConfig,
    TrainJob,
)
from tinyr1.config.validate import validate, validate_resume

__all__ = [
    "MOVED", "CollectConfig", "DataConfig", "EvalConfig", "EvalJob", "GRPOConfig", "GradingConfig", "LabelConfig",
    "LoraConfig", "ModelConfig", "OptimConfig", "PPOConfig", "PRMLabelJob", "PromptConfig", "RMCollectJob",
    "RMEvalConfig", "RMEvalJob", "RMTrainConfig", "RMTrainJob", "RewardConfig", "RunConfig", "SFTConfig",
    "SamplingConfig", "StepsConfig", "TrainJob", "help_text", "load_config", "parse_overrides", "read_yaml", "to_dict",
    "validate", "validate_resume",
]
