"""The Python API as a notebook uses it: a datasets.Dataset, a TRL-style reward callable, two steps."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import tinyr1
from tinyr1.errors import UserError


def _config(tiny_model_dir, tmp_path, **over):
    config = {
        "model": {"name": str(tiny_model_dir), "device": "cpu"},
        "data": {"test_size": 4},
        "sampling": {"max_new_tokens": 8, "batch_size": 16},
        "reward": {"weights": {}},
        "run": {"output_dir": str(tmp_path / "runs"), "steps": 2, "eval_every": 0, "eval_size": 4, "progress": False},
        "lora": {"rank": 4, "alpha": 8},
        "optim": {"lr": 0.01, "micro_batch_size": 4},
        "grpo": {"batch_size": 8, "group_size": 4},
    }
    for section, values in over.items():
        config.setdefault(section, {}).update(values)
    return config


def test_train_two_steps_from_python_with_a_dataset_and_a_trl_style_reward(tiny_model_dir, tmp_path):
    import datasets

    rows = datasets.Dataset.from_list([{"q": f"Calculate {i} + 1.", "a": i + 1} for i in range(20)])
    seen = []

    def parity(completions, prompts, answer, **kwargs):  # TRL's reward_funcs signature
        seen.append((len(completions), prompts[0], answer[0], sorted(kwargs)))
        return [float(len(c) % 2) for c in completions]

    summary = tinyr1.train(_config(tiny_model_dir, tmp_path), dataset=rows, question_field="q", answer_field="a",
                           reward_funcs=[parity])
    run = Path(summary["run_dir"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss/policy" in m]
    assert [m["step"] for m in steps] == [1, 2] and all(m["loss/grad_norm"] > 0 for m in steps)
    assert "reward/test_api:parity" in steps[0]  # the callable's own reward curve
    assert len(seen) == 2 and seen[0][0] == 8 and seen[0][1].startswith("Calculate ") and seen[0][2].isdigit()
    assert {"solution", "id"} <= set(seen[0][3])
    config = (run / "config.yaml").read_text()
    assert f"hf:{run / 'data'}" in config and "test_api:parity" in config  # config.yaml says what ran
    lora_b = [v for k, v in load_file(run / "final" / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # every adapter trained
    assert summary["eval_after"]["n"] == 4  # the held-out 4 of the 20 rows


def test_train_takes_a_model_object_and_a_plain_reward(tiny_model, tmp_path):
    model, tokenizer = tiny_model

    def short(problems, responses):  # tinyr1's own signature
        return [1.0 if len(r) < 12 else 0.0 for r in responses]

    config = _config("unused", tmp_path, data={"source": "synthetic:basic_arithmetic", "size": 40},
                     run={"steps": 1}, reward={"weights": {"correctness": 1.0}})
    summary = tinyr1.train(config, model=model, tokenizer=tokenizer, reward_funcs={"short": (short, 0.5)})
    run = Path(summary["run_dir"])
    assert (run / "given-model" / "config.json").is_file()
    job = (run / "config.yaml").read_text()
    assert str(run / "given-model") in job and "test_api:short: 0.5" in job and "correctness: 1.0" in job


def test_evaluate_from_python_on_rows_with_a_loaded_model(tiny_model):
    model, tokenizer = tiny_model
    rows = [{"question": f"Calculate {i} + 2.", "answer": i + 2} for i in range(3)]
    result = tinyr1.evaluate({"sampling": {"max_new_tokens": 6}, "eval": {"samples": 2}}, model=model, tokenizer=tokenizer,
                             dataset=rows)
    assert result.summary["n"] == 3 and "pass@2" in result.summary and len(result.rows) == 3 + 3 * 2
    assert [r["reference"] for r in result.rows[:3]] == ["2", "3", "4"]


def test_bad_api_input_is_a_user_error(tiny_model):
    model, _ = tiny_model
    with pytest.raises(UserError, match="hand in its tokenizer too"):
        tinyr1.evaluate(model=model, dataset=[{"question": "q", "answer": 1}])
    with pytest.raises(UserError, match="config: expected a TrainJob, a dict of sections or a YAML path, got int"):
        tinyr1.train(3)
    with pytest.raises(UserError, match=r"reward_funcs\['x'\]: expected a callable"):
        tinyr1.train(reward_funcs={"x": 3})
