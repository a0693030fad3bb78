"""Token-scoring models: a small LM with one logit per token, the body of every reward model.

An outcome reward model (ORM) and a process reward model (PRM) are the same network read at
different positions: the ORM at the response's last token, the PRM at each step's last token
(`tinyr1.rewards.scoring`). Both are transformers' `AutoModelForTokenClassification` with
`num_labels=1` (a linear `score` layer on the last hidden state), built from any causal LM that
`models.load` can load (alias, .gguf, folder, adapter, run folder, hub id): the causal LM's
backbone weights are copied into the token classifier, whose `score` layer starts random.

    model, tokenizer = build_scorer(ModelConfig(name="smollm2-135m-instruct"), LoraConfig(rank=16))
    save_scorer(model, tokenizer, "runs/rm", {"kind": "orm", ...})
    model, tokenizer, meta = load_scorer("runs/rm", device="cpu")

A reward model folder is a standard `save_pretrained` folder (the full token classifier, or a peft
adapter whose saved modules include `score`), the tokenizer, and `tinyr1_reward_model.json`
(kind `orm` | `prm`, the base model it was built on, the training settings). With LoRA the
adapter is loaded onto the base named there and merged for scoring.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import AutoModelForTokenClassification

from tinyr1.config import LoraConfig, ModelConfig
from tinyr1.errors import UserError
from tinyr1.models.load import _corrupt_files_named, _from_pretrained, load_model, load_tokenizer, pick_device
from tinyr1.rollout.policy_copy import resolve_dtype

META_FILE = "tinyr1_reward_model.json"
KINDS = {"orm": "tinyr1 rm train", "prm": "tinyr1 prm train"}


def scorer_from_causal(causal):
    """A token classifier (one logit per token) whose backbone is `causal`'s, copied."""
    config = copy.deepcopy(causal.config)
    config.num_labels = 1
    config.classifier_dropout = 0.0  # the labels are few; dropout on the read-out only adds noise
    scorer = AutoModelForTokenClassification.from_config(config, dtype=next(causal.parameters()).dtype)
    scorer.base_model.load_state_dict(causal.base_model.state_dict())
    return scorer.to(next(causal.parameters()).device)


def build_scorer(model_cfg: ModelConfig, lora: LoraConfig):
    """A trainable token scorer (float32) on `model_cfg.name`'s backbone, and its tokenizer.

    `lora.rank > 0`: peft adapters on the backbone, the `score` layer trained in full; 0: every
    weight trains.
    """
    causal, tokenizer = load_model(dataclasses.replace(model_cfg, dtype="float32"), merge_adapter=True)
    model = scorer_from_causal(causal)
    del causal
    if lora.rank > 0:
        targets = lora.target_modules
        peft_cfg = PeftLoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="TOKEN_CLS",
            target_modules="all-linear" if targets == ["all-linear"] else targets,
            exclude_modules=["score"],  # the read-out is saved and trained whole (peft's modules_to_save)
        )
        try:
            model = get_peft_model(model, peft_cfg)
        except ValueError as e:
            raise UserError(f"config key 'lora.target_modules': {e}") from None
    else:
        model.requires_grad_(True)
    return model, tokenizer


def save_scorer(model, tokenizer, out: str | Path, meta: dict[str, Any], state_dict: dict | None = None) -> Path:
    """Write the model (or adapter), tokenizer and metadata to `out`, atomically (temp + rename).
    `state_dict`: the weights to write when the model's own are shards (`distributed.full_state_dict`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def model_dir(path: str | Path) -> Path:
    """The folder holding the reward model: `path` itself, or its `final/` when `path` is the run
    folder `tinyr1 rm train` / `prm train` wrote."""
    path = Path(path)
    return path / "final" if not (path / META_FILE).is_file() and (path / "final" / META_FILE).is_file() else path


def read_meta(path: str | Path, kind: str, key: str | None = None) -> dict[str, Any]:
    """The metadata of the reward model folder `path` (or of a run folder's final/), checked to be
    of `kind` (orm | prm).

    Raises `UserError` naming `key` (a config key) or the path when it is not such a folder.
    """
    where = f"config key '{key}': " if key else ""
    meta_path = model_dir(path) / META_FILE
    if not meta_path.is_file():
        what = "no such folder" if not Path(path).exists() else f"no {META_FILE} there"
        raise UserError(f"{where}reward model '{path}' not found ({what}); expected a folder written by `{KINDS[kind]}`")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{meta_path}: malformed JSON ({e.msg})") from None
    if meta.get("kind") != kind:
        raise UserError(f"{where}'{path}' is a {meta.get('kind')!r} reward model; expected a {kind} (written by `{KINDS[kind]}`)")
    return meta


def load_scorer(path: str | Path, kind: str, device: str = "auto", dtype: str = "float32", key: str | None = None):
    """`(model, tokenizer, meta)` of a saved reward model, in eval mode, adapters merged, no grad."""
    meta = read_meta(path, kind, key)
    path = model_dir(path)
    device = pick_device(device)
    torch_dtype = resolve_dtype(dtype, torch.device(device))
    if (path / "adapter_config.json").is_file():
        causal, _ = load_model(ModelConfig(name=meta["base"], device=device))
        with _corrupt_files_named(path):
            model = PeftModel.from_pretrained(scorer_from_causal(causal), path).merge_and_unload()
    else:
        model = _from_pretrained(AutoModelForTokenClassification, path)
    model = model.to(device=device, dtype=torch_dtype).eval()
    model.requires_grad_(False)
    return model, load_tokenizer(ModelConfig(name=str(path))), meta
