"""Config loading: YAML + dotted overrides, and the errors that name the bad key."""

import pytest

from tinyr1.config import EvalJob, ModelConfig, help_text, load_config, parse_overrides
from tinyr1.config.load import field_docs
from tinyr1.errors import UserError


def test_yaml_then_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  dtype: bfloat16\ndata:\n  source: gsm8k:/x\n  levels: [1, 2]\neval:\n  limit: 5\n")
    cfg = load_config(EvalJob, path, parse_overrides(["--eval.limit=7", "--data.subjects", "algebra,geometry"]))
    assert cfg.model.dtype == "bfloat16"
    assert cfg.data.source == "gsm8k:/x"
    assert cfg.data.levels == [1, 2]
    assert cfg.eval.limit == 7
    assert cfg.data.subjects == ["algebra", "geometry"]


def test_override_values_are_typed():
    cfg = load_config(EvalJob, None, parse_overrides(["--sampling.temperature=1", "--grading.fallback=false", "--eval.limit=null"]))
    assert cfg.sampling.temperature == 1.0 and isinstance(cfg.sampling.temperature, float)
    assert cfg.grading.fallback is False
    assert cfg.eval.limit is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.dtype=float16"], "config key 'model.dtype': 'float16' is not allowed; expected one of 'float32', 'bfloat16'"),
        (["--model.colour=red"], "unknown config key 'model.colour'"),
        (["--nosuch.key=1"], "unknown config key 'nosuch'"),
        (["--eval.samples=many"], "config key 'eval.samples': expected an integer, got 'many'"),
        (["--grading.fallback=3"], "config key 'grading.fallback': expected true or false, got 3"),
        (["--data.levels=1,x"], "config key 'data.levels[1]': expected an integer, got 'x'"),
        (["--model=foo"], "config key 'model': expected a section"),
    ],
)
def test_bad_overrides_name_the_key(args, message):
    with pytest.raises(UserError) as e:
        load_config(EvalJob, None, parse_overrides(args))
    assert message in str(e.value)


def test_bad_yaml_file_names_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(UserError, match="missing.yaml: config file not found"):
        load_config(EvalJob, missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml:2: not valid YAML \(expected .,. or .\]., but got .<stream end>.\)$"):
        load_config(EvalJob, bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(EvalJob, top)


def test_override_without_value_is_an_error():
    with pytest.raises(UserError, match="has no value"):
        parse_overrides(["--eval.limit"])
    with pytest.raises(UserError, match="unexpected argument 'stray'"):
        parse_overrides(["stray"])


def test_every_field_is_documented():
    import dataclasses

    for section in dataclasses.fields(EvalJob):
        cls = type(section.default_factory())
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"
    assert "--model.dtype='float32'" in help_text(EvalJob)
    assert field_docs(ModelConfig)["trust_remote_code"].startswith("Allow custom modelling code")


def test_a_moved_key_names_its_new_place(tmp_path):
    from tinyr1.config import TrainJob

    with pytest.raises(UserError, match="^config key 'grpo.temperature' is now 'sampling.temperature'"):
        load_config(TrainJob, None, parse_overrides(["--grpo.temperature=0.7"]))
    old = tmp_path / "old.yaml"
    old.write_text("ppo:\n  temperature: 0.7\n")
    with pytest.raises(UserError, match=r"old.yaml: config key 'ppo.temperature' is now 'sampling.temperature'"):
        load_config(TrainJob, old)


@pytest.mark.parametrize("override, message", [
    ("--sampling.max_new_tokens=0", "config key 'sampling.max_new_tokens': expected an integer >= 1, got 0"),
    ("--sampling.max_new_tokens=-5", "config key 'sampling.max_new_tokens': expected an integer >= 1, got -5"),
    ("--sampling.temperature=-1", "config key 'sampling.temperature': expected a number >= 0, got -1.0"),
    ("--sampling.top_p=0", "config key 'sampling.top_p': expected a number in (0, 1], got 0.0"),
    ("--sampling.batch_size=0", "config key 'sampling.batch_size': expected an integer >= 1, got 0"),
    ("--grading.timeout=-1", "config key 'grading.timeout': expected a number of seconds > 0, got -1.0"),
    ("--prompt.few_shot=-1", "config key 'prompt.few_shot': expected an integer >= 0, got -1"),
    ("--eval.samples=0", "config key 'eval.samples': expected an integer >= 1, got 0"),
    ("--data.levels=0,6", "config key 'data.levels': expected levels between 1 and 5, got [0, 6]"),
])
def test_eval_job_ranges_are_validated(override, message):
    from tinyr1.config import validate

    job = load_config(EvalJob, None, parse_overrides([override]))
    with pytest.raises(UserError) as e:
        validate(job)
    assert str(e.value) == message


def test_training_needs_a_positive_temperature_while_eval_and_collect_allow_greedy():
    from tinyr1.config import RMCollectJob, TrainJob, validate

    validate(load_config(EvalJob, None, {"sampling": {"temperature": 0.0}}))
    validate(load_config(RMCollectJob, None, {"sampling": {"temperature": 0.0}}))
    with pytest.raises(UserError, match="config key 'sampling.temperature': expected a number > 0, got 0.0"):
        validate(load_config(TrainJob, None, {"sampling": {"temperature": 0.0}}))


def test_packaged_configs_are_found_from_any_folder(tmp_path, monkeypatch):
    from tinyr1.config import TrainJob
    from tinyr1.config.load import CONFIGS_DIR

    monkeypatch.chdir(tmp_path)  # no configs/ here
    for name in ("configs/sft_quickstart.yaml", "sft_quickstart.yaml"):
        assert load_config(TrainJob, name).algorithm == "sft"
    assert {p.name for p in CONFIGS_DIR.glob("*.yaml")} >= {"quickstart.yaml", "ppo_quickstart.yaml", "sft_quickstart.yaml"}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "sft_quickstart.yaml").write_text("algorithm: ppo\n")  # a local file of that name wins
    assert load_config(TrainJob, "configs/sft_quickstart.yaml").algorithm == "ppo"
    with pytest.raises(UserError, match="nothere.yaml: config file not found \\(the packaged ones: .*quickstart.yaml"):
        load_config(TrainJob, "nothere.yaml")


@pytest.mark.parametrize("values, message", [
    ({"reward": {"weights": {"correctness": 0.0}, "process": "arithmetic"}},
     "config key 'reward.weights': expected a positive weight when reward.process is the rule 'arithmetic'"),
])
def test_train_job_rules_are_validated(values, message):
    from tinyr1.config import TrainJob, validate

    with pytest.raises(UserError) as e:
        validate(load_config(TrainJob, None, values))
    assert str(e.value).startswith(message)


def test_every_packaged_config_validates():
    from tinyr1.config import TrainJob, validate
    from tinyr1.config.load import CONFIGS_DIR

    names = sorted(p.name for p in CONFIGS_DIR.glob("*.yaml"))
    assert "gsm8k_sft.yaml" in names and "gsm8k_grpo.yaml" in names
    for name in names:
        validate(load_config(TrainJob, CONFIGS_DIR / name))


@pytest.mark.parametrize("recipe, style", [("gsm8k", "gsm8k"), ("math", "boxed")])
def test_the_recipe_stages_hold_out_the_same_problems(recipe, style):
    # the held-out split is a function of the data section alone (tests/training/test_problems.py:
    # same section -> same split, whatever the filters on the training split); both stages must share it
    from tinyr1.config import TrainJob
    from tinyr1.config.load import CONFIGS_DIR

    sft, grpo = (load_config(TrainJob, CONFIGS_DIR / f"{recipe}_{stage}.yaml") for stage in ("sft", "grpo"))
    assert sft.data == grpo.data and sft.run.eval_size == grpo.run.eval_size == 500
    assert sft.prompt == grpo.prompt and sft.prompt.style == style
    assert sft.grading.fallback is False and grpo.grading.fallback is False  # strict, the headline number
    assert grpo.model.name == f"runs/{recipe}-sft" and sft.lora.rank == 0
    # the two recipes differ in their data and answer style only
    for stage, job in (("sft", sft), ("grpo", grpo)):
        gsm8k = load_config(TrainJob, CONFIGS_DIR / f"gsm8k_{stage}.yaml")
        assert (job.sft, job.grpo, job.optim, job.run, job.lora, job.sampling) == \
            (gsm8k.sft, gsm8k.grpo, gsm8k.optim, gsm8k.run, gsm8k.lora, gsm8k.sampling)
