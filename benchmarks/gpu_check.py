"""The CUDA paths, checked on a GPU: sampling engines, GRPO / PPO / SFT steps, evaluation.

    python benchmarks/gpu_check.py --out gpu_check.json        # on a machine with a CUDA GPU

A tiny random Llama (2 layers, hidden 32, its own byte-level BPE tokenizer, as the tests build)
keeps the check offline and quick; what it checks is that every path runs on the GPU and agrees
with the reference, not model quality:
- greedy tokens of the fast engine (on GPUs: eager ops and the eager draw) equal transformers'
  `generate`, float32, 8 prompts x 24 tokens; sampled log-probs equal a forward's;
- 3 GRPO steps, 2 PPO steps and 3 SFT steps on `model.device=cuda` (bf16 autocast, bf16 sampling
  copy): finite losses, the trainable weights changed, held-out evaluation before and after;
- the wall time of each, and the decode speed of the fast engine and of `generate` on a random
  model of SmolLM2-135M's shape in bf16 (8 prompts x 8 samples x 128 tokens; the embedded model's
  weights are not on the GPU machine, and random weights decode every token of the budget).
Prints a JSON summary and writes it to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.conftest import build_tiny_model  # noqa: E402
from tinyr1.config import ModelConfig, TrainJob, load_config, validate  # noqa: E402
from tinyr1.models.load import load_model  # noqa: E402
from tinyr1.recipes import get_recipe  # noqa: E402
from tinyr1.rewards import rules  # noqa: E402
from tinyr1.rollout.sampler import SamplingParams, sample  # noqa: E402
from tinyr1.training.checkpoint import new_run_dir  # noqa: E402

DEVICE = "cuda"  # --device cpu tries the script here first
PROMPTS = [f"Calculate {a} + {b}." for a in range(1, 5) for b in range(1, 3)]


def engines_agree(model_dir: Path) -> dict:
    model, tok = load_model(ModelConfig(name=str(model_dir), device=DEVICE))
    params = SamplingParams(max_new_tokens=24, temperature=0.0, batch_size=8)
    t0 = time.perf_counter()
    fast = sample(model, tok, PROMPTS, params, engine="fast")
    t_fast = time.perf_counter() - t0
    hf = sample(model, tok, PROMPTS, params, engine="hf")
    torch.manual_seed(0)
    sampled = sample(model, tok, PROMPTS, SamplingParams(max_new_tokens=16, temperature=1.0, n=4, batch_size=32), engine="fast")
    diffs = []
    for i, (resp, lps) in enumerate(zip(sampled.response_ids, sampled.logprobs)):
        ids = torch.tensor([sampled.prompt_ids[i // 4] + resp], device=DEVICE)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float().log_softmax(-1)[0]
        p = len(sampled.prompt_ids[i // 4])
        ref = logits[p - 1 : p - 1 + len(resp)].gather(1, torch.tensor(resp, device=DEVICE)[:, None])[:, 0]
        diffs.append((ref.cpu() - torch.tensor(lps)).abs().max().item())
    return {"greedy_identical": fast.response_ids == hf.response_ids, "prompts": len(PROMPTS),
            "fast_greedy_seconds": round(t_fast, 2), "sampled_logprob_max_abs_diff": max(diffs),
            "device": str(next(model.parameters()).device)}


def decode_speed() -> dict:
    """Tokens per second of the fast engine and of `generate` on a random SmolLM2-135M-shaped model
    (bf16): 8 prompts of 64 tokens x 8 samples x 128 new tokens, as a GRPO rollout."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tinyr1.rollout.sampler import ENGINES

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=DEVICE, dtype=torch.bfloat16).eval()
    tok = type("Tok", (), {"pad_token_id": 2, "eos_token_id": 2})()
    prompts = torch.randint(3, 49152, (8, 64)).tolist()
    params = SamplingParams(max_new_tokens=128, temperature=1.0, n=8, batch_size=64)
    out = {}
    for name in ("fast", "hf", "fast"):  # fast twice: the first call warms up
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        raws, _ = ENGINES[name](model, tok, prompts, params, [2])
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        out[f"{name}_tokens_per_s"] = round(sum(len(r) for r in raws) / seconds, 1)
        out[f"{name}_seconds"] = round(seconds, 2)
    return out


def train_job(model_dir: Path, problems: Path, runs: Path, **sections) -> TrainJob:
    values = {
        "model": {"name": str(model_dir), "device": DEVICE},
        "data": {"source": f"jsonl:{problems}", "test_size": 8},
        "sampling": {"max_new_tokens": 16, "batch_size": 64, "dtype": "auto"},
        "reward": {"weights": {"length_parity": 1.0, "correctness": 0.5}},
        "run": {"output_dir": str(runs), "steps": 3, "eval_every": 0, "eval_size": 8, "progress": False},
        "lora": {"rank": 4, "alpha": 8},
        "optim": {"lr": 0.01, "micro_batch_size": 8, "bf16": True},
        "grpo": {"batch_size": 16, "group_size": 4},
    }
    for section, options in sections.items():
        if isinstance(options, dict):
            values.setdefault(section, {}).update(options)
        else:
            values[section] = options
    job = load_config(TrainJob, None, values)
    validate(job)
    return job


def run_recipe(job: TrainJob) -> dict:
    run_dir = new_run_dir(job)
    t0 = time.perf_counter()
    summary = get_recipe(job.algorithm)(job, run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if any(k.startswith("loss/") for k in r)]
    losses = [v for r in steps for k, v in r.items() if k.startswith("loss/") and isinstance(v, (int, float))]
    return {"steps": len(steps), "seconds": round(time.perf_counter() - t0, 1),
            "losses_finite": all(v == v and abs(v) != float("inf") for v in losses),
            "grad_norms": [round(r.get("loss/grad_norm", 0.0), 4) for r in steps],
            "eval_before": summary["eval_before"]["accuracy"], "eval_after": summary["eval_after"]["accuracy"],
            "final": sorted(p.name for p in (run_dir / "final").iterdir())[:4]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--device", default="cuda", help="cpu: try the script without a GPU")
    ns = ap.parse_args()
    global DEVICE
    DEVICE = ns.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    rules.REWARDS["length_parity"] = lambda problems, responses, **_: [float(len(r) % 2) for r in responses]
    tmp = Path(tempfile.mkdtemp(prefix="tinyr1-gpu-"))
    model_dir = build_tiny_model(tmp / "tiny")
    problems = tmp / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Calculate {a} + {b}.", "answer": str(a + b)}) + "\n"
                                for a in range(1, 9) for b in range(1, 5)))
    result = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (cpu)", "torch": torch.__version__}
    import transformers

    result["transformers"] = transformers.__version__
    checks = {
        "engines": lambda: engines_agree(model_dir),
        "decode_speed": decode_speed,
        "grpo": lambda: run_recipe(train_job(model_dir, problems, tmp / "runs")),
        "grpo_full_hf_engine": lambda: run_recipe(train_job(model_dir, problems, tmp / "runs", lora={"rank": 0},
                                                            optim={"lr": 1e-4}, sampling={"engine": "hf"})),
        "ppo": lambda: run_recipe(train_job(model_dir, problems, tmp / "runs", algorithm="ppo",
                                            ppo={"batch_size": 8, "mini_batch_size": 4}, run={"steps": 2})),
        "sft": lambda: run_recipe(train_job(model_dir, problems, tmp / "runs", algorithm="sft", sft={"batch_size": 8})),
    }
    for name, check in checks.items():
        try:
            result[name] = check()
        except Exception as e:  # report every check, whatever fails
            result[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
        print(name, json.dumps(result[name]), flush=True)
    Path(ns.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
