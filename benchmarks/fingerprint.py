"""Behaviour fingerprint of every recipe: run each one briefly and record what it computed.

A refactor must change no behaviour. Runs are deterministic per seed, so two checkouts that
compute the same things write the same rewards, losses, held-out accuracies, samples and final
weights. This script runs a set of short jobs (the quickstart in full, then small GRPO variants,
PPO, SFT, reward-model collect / train / label / eval, and `tinyr1 eval`) on the embedded model
and writes one JSON file of everything they computed, timings and paths removed:

    python benchmarks/fingerprint.py --out /tmp/before.json            # on the old commit
    python benchmarks/fingerprint.py --out /tmp/after.json             # on the new one
    python benchmarks/fingerprint.py --compare /tmp/before.json /tmp/after.json

`--compare` prints every value that differs (none: the behaviour is unchanged). `--quick` skips
the full quickstart (about 5-10 minutes on a 2-core CPU); the small jobs take about as long again.
Run it from the repository root with the project's venv; it calls the `tinyr1` CLI of the
checkout it runs in (`python -m tinyr1.cli`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = ["--run.steps=2", "--run.eval_size=12", "--run.eval_every=0", "--sampling.max_new_tokens=40",
         "--run.progress=false", "--run.save_every=1"]
GRPO_SMALL = [*SMALL, "--grpo.batch_size=16", "--grpo.group_size=4"]

# name -> command-line arguments after `tinyr1`; {out} is the scratch folder
JOBS: dict[str, list[str]] = {
    "quickstart": ["train", "--run.name=quickstart", "--run.progress=false"],
    "grpo_variants": ["train", "--run.name=grpo_variants", *GRPO_SMALL, "--grpo.advantage=rloo", "--grpo.num_iterations=2",
                      "--grpo.beta=0.04", "--grpo.dynamic_sampling=true", "--grpo.max_refills=1",
                      "--reward.weights.format=0.2"],
    "grpo_process": ["train", "--run.name=grpo_process", *GRPO_SMALL, "--grpo.advantage=process", "--reward.process=arithmetic",
                     "--grpo.scale_rewards=none", "--grpo.loss_aggregation=dr_grpo"],
    "grpo_full_packed": ["train", "--run.name=grpo_full_packed", *GRPO_SMALL, "--lora.rank=0", "--optim.lr=1e-6",
                         "--optim.padding_free=true", "--grpo.beta=0.02", "--grpo.kl_estimator=k1",
                         "--grpo.loss_aggregation=sequence", "--grpo.mask_truncated=true"],
    "grpo_reinforce_pp": ["train", "--run.name=grpo_reinforce_pp", *GRPO_SMALL, "--grpo.advantage=reinforce_pp",
                          "--optim.share_prompt=false", "--grpo.scale_rewards=batch"],
    "ppo": ["train", "configs/ppo_quickstart.yaml", "--run.name=ppo", *SMALL, "--ppo.batch_size=8", "--ppo.mini_batch_size=4",
            "--ppo.adaptive_kl=true"],
    "ppo_process": ["train", "configs/ppo_quickstart.yaml", "--run.name=ppo_process", *SMALL, "--ppo.batch_size=8",
                    "--ppo.mini_batch_size=8", "--reward.process=arithmetic", "--ppo.critic=separate", "--ppo.kl_coef=0"],
    "sft": ["train", "configs/sft_quickstart.yaml", "--run.name=sft", *SMALL, "--sft.batch_size=8", "--optim.micro_batch_size=4"],
    "sft_packed": ["train", "configs/sft_quickstart.yaml", "--run.name=sft_packed", *SMALL, "--sft.batch_size=8",
                   "--sft.packing=true", "--optim.micro_batch_size=2"],
    "eval": ["eval", "--data=synthetic:basic_arithmetic", "--limit=12", "--samples=4", "--sampling.max_new_tokens=40",
             "--out={out}/eval"],
    "rm_collect": ["rm", "collect", "configs/quickstart.yaml", "--limit=6", "--samples=4", "--sampling.max_new_tokens=40",
                   "--out={out}/rm_data/responses.jsonl"],
    "rm_collect_test": ["rm", "collect", "configs/quickstart.yaml", "--split=test", "--limit=4", "--samples=4",
                        "--sampling.max_new_tokens=40", "--out={out}/rm_data/heldout.jsonl"],
    "rm_train": ["rm", "train", "--data={out}/rm_data/responses.jsonl", "--out={out}/orm", "--max-steps=3",
                 "--train.progress=false"],
    "rm_train_bt": ["rm", "train", "--data={out}/rm_data/responses.jsonl", "--out={out}/orm_bt", "--max-steps=2",
                    "--objective=bradley_terry", "--train.progress=false"],
    "rm_eval": ["rm", "eval", "--model={out}/orm", "--data={out}/rm_data/heldout.jsonl", "--out={out}/orm_eval"],
    "prm_label": ["prm", "label", "configs/quickstart.yaml", "--input={out}/rm_data/responses.jsonl", "--limit=3",
                  "--completions=2", "--sampling.max_new_tokens=32", "--out={out}/rm_data/steps.jsonl",
                  "--label.progress=false"],
    "prm_train": ["prm", "train", "--data={out}/rm_data/steps.jsonl", "--out={out}/prm", "--max-steps=2",
                  "--train.progress=false"],
    "grpo_orm": ["train", "--run.name=grpo_orm", *GRPO_SMALL, "--reward.weights.orm:{out}/orm=0.5"],
}

VOLATILE = ("timing/", "seconds", "elapsed", "wall_time", "time", "tokens_per_s", "per_second", "/s")


def clean(value):
    """Drop timings and machine-specific paths from a JSON value, recursively."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if not any(s in k for s in VOLATILE)}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str) and ("/tmp" in value or value.startswith("/")):
        return Path(value).name
    return value


def read_any(path: Path):
    if path.suffix == ".jsonl":
        return [clean(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return clean(json.loads(path.read_text()))


def tensor_digest(folder: Path) -> dict[str, str]:
    """sha256 of every tensor (name, dtype, shape, bytes) in the folder's safetensors / .pt files."""
    import torch
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".safetensors":
            tensors = load_file(f)
        elif f.suffix == ".pt" and f.name != "trainer_state.pt":
            tensors = torch.load(f, weights_only=True)
        else:
            continue
        h = hashlib.sha256()
        for name in sorted(tensors):
            t = tensors[name].contiguous()
            h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[str(f.relative_to(folder))] = h.hexdigest()[:16]
    return out


def fingerprint(out: Path, jobs: list[str]) -> dict:
    result = {}
    env = dict(os.environ, TINYR1_CACHE=os.environ.get("TINYR1_CACHE", str(Path.home() / ".cache" / "tinyr1")))
    for name in jobs:
        args = [a.replace("{out}", str(out)) for a in JOBS[name]]
        if args[0] == "train":
            args.append(f"--run.output_dir={out}")
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "tinyr1.cli", *args], capture_output=True, text=True, env=env)
        print(f"{name}: exit {proc.returncode} in {time.time() - t0:.0f} s", flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            result[name] = {"exit": proc.returncode, "stderr_tail": proc.stderr.strip().splitlines()[-1:]}
            continue
        record: dict = {"exit": 0}
        folder = out / name
        if folder.is_dir():
            for f in sorted(folder.rglob("*")):
                if f.suffix in (".json", ".jsonl") and "checkpoint-" not in str(f) and f.name != "adapter_config.json" \
                        and not f.name.startswith("tokenizer") and f.name not in ("config.json", "generation_config.json"):
                    record[str(f.relative_to(folder))] = read_any(f)
            if (folder / "final").is_dir():
                record["final_tensors"] = tensor_digest(folder / "final")
        result[name] = record
    for extra in ("eval", "rm_data", "orm", "orm_bt", "orm_eval", "prm"):
        d = out / extra
        if d.is_dir():
            result[f"files/{extra}"] = {str(f.relative_to(d)): read_any(f) for f in sorted(d.rglob("*"))
                                        if f.suffix in (".json", ".jsonl") and not f.name.startswith("tokenizer")
                                        and f.name not in ("config.json", "adapter_config.json", "generation_config.json")}
            if extra in ("orm", "orm_bt", "prm"):
                result[f"files/{extra}"]["tensors"] = tensor_digest(d)
    return result


def compare(a: dict, b: dict, path: str = "") -> list[str]:
    diffs = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'second' if k not in a else 'first'}")
            else:
                diffs += compare(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diffs += compare(x, y, f"{path}[{i}]")
    elif a != b:
        diffs.append(f"{path}: {str(a)[:120]} != {str(b)[:120]}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file to write the fingerprint to")
    ap.add_argument("--quick", action="store_true", help="skip the full quickstart run")
    ap.add_argument("--jobs", help="comma-separated subset of: " + ", ".join(JOBS))
    ap.add_argument("--keep", help="folder to keep the runs in (default: a temporary folder)")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ns = ap.parse_args()
    if ns.compare:
        diffs = compare(json.loads(Path(ns.compare[0]).read_text()), json.loads(Path(ns.compare[1]).read_text()))
        print("\n".join(diffs) if diffs else "identical")
        return 1 if diffs else 0
    jobs = ns.jobs.split(",") if ns.jobs else [j for j in JOBS if not (ns.quick and j == "quickstart")]
    out = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="tinyr1-fingerprint-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = fingerprint(out, jobs)
    Path(ns.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    failed = [k for k, v in result.items() if isinstance(v, dict) and v.get("exit")]
    print(f"wrote {ns.out} ({len(jobs)} jobs, {time.time() - t0:.0f} s){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
