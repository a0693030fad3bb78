"""optim.bf16=auto: bfloat16 autocast only where the hardware multiplies bfloat16 natively."""

import pytest
import yaml

from tinyr1.config import TrainJob, load_config, parse_overrides
from tinyr1.config.load import CONFIGS_DIR
from tinyr1.errors import UserError
from tinyr1.rollout import policy_copy
from tinyr1.training import precision


def _job(value: str) -> TrainJob:
    return load_config(TrainJob, None, parse_overrides([f"--optim.bf16={value}", "--model.device=cpu"]))


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_quietly(monkeypatch, capsys, native):
    monkeypatch.setattr(policy_copy, "cpu_has_bf16", lambda: native)
    job = _job("auto")
    resolved = precision.resolve_bf16(job)
    assert resolved.optim.bf16 is native and job.optim.bf16 == "auto"  # a copy: the job handed in is unchanged
    assert capsys.readouterr().err == ""  # config.yaml records the choice; bad input later stays one line


def test_an_explicit_true_is_kept_but_named_in_a_warning_where_bf16_is_emulated(monkeypatch, capsys):
    monkeypatch.setattr(policy_copy, "cpu_has_bf16", lambda: False)
    assert precision.resolve_bf16(_job("true")).optim.bf16 is True
    assert "warning: optim.bf16=true on a CPU without native bfloat16 units" in capsys.readouterr().err
    monkeypatch.setattr(policy_copy, "cpu_has_bf16", lambda: True)
    assert precision.resolve_bf16(_job("true")).optim.bf16 is True
    assert precision.resolve_bf16(_job("false")).optim.bf16 is False
    assert capsys.readouterr().err == ""


def test_a_value_other_than_true_false_auto_is_refused_naming_the_key():
    with pytest.raises(UserError, match=r"config key 'optim.bf16': expected bool or 'auto', got 'fast'"):
        _job("fast")


def test_every_shipped_config_leaves_the_choice_to_the_hardware():
    for path in sorted(CONFIGS_DIR.glob("*.yaml")):
        bf16 = (yaml.safe_load(path.read_text()).get("optim") or {}).get("bf16", False)
        assert bf16 in ("auto", False), f"{path.name}: optim.bf16={bf16!r} would emulate bfloat16 on CPUs without it"


def test_a_run_records_what_auto_chose(tiny_job, monkeypatch):
    from tinyr1.recipes.grpo import train
    from tinyr1.training.checkpoint import new_run_dir

    for native in (False, True):
        monkeypatch.setattr(policy_copy, "cpu_has_bf16", lambda: native)
        job = tiny_job(optim__bf16="auto", run__steps=1, run__name=f"native-{native}")
        run_dir = new_run_dir(job)
        train(job, run_dir)
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["bf16"] is native
