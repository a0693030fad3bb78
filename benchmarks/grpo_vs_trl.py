"""The same GRPO step in tinyr1 and in TRL's GRPOTrainer, side by side on this machine.

    pip install -e '.[bench]'                      # TRL, a benchmark-only dependency
    .venv/bin/python benchmarks/grpo_vs_trl.py --quick      # 64 new tokens, 1 warm-up + 3 steps, < 10 min
    .venv/bin/python benchmarks/grpo_vs_trl.py              # 128 and 256 new tokens, 1 warm-up + 5 steps each

What is the same for both tools: the embedded SmolLM2-135M-Instruct (the converted local folder),
the quickstart's problems (`configs/quickstart.yaml` data section) in the same order, rendered by
tinyr1's chat template and handed to TRL as finished prompt strings, 8 prompts x 8 samples per
step, temperature 1.0 (no top-p / top-k), LoRA rank 32 / alpha 64 on all linear layers, beta 0,
one update per rollout (num_iterations 1), token-level loss (DAPO), clip 0.2 / 0.28, lr 2e-4,
grad clip 1.0, micro-batches of 16 sequences (4 accumulated per optimizer step), and the reward:
tinyr1's correctness function, adapted to TRL's reward-function signature.

Each tool runs in the fastest configuration a user could pick here: tinyr1 with its quickstart
settings (bf16 autocast in the update, rollouts on a merged bf16 sampling copy); TRL with the
setting named in `--tools` (default `trl:bf16`: weights loaded in bfloat16 + `bf16=True`;
`trl:autocast`: fp32 weights + `bf16=True`, TRL's default; `trl:fp32`; `trl:bf16-cb`: bf16 with
transformers' continuous batching for generation), gradient checkpointing off (TRL turns it on by
default; it only costs time here). `--tools tinyr1 trl:bf16 trl:autocast trl:fp32` runs them all,
to check which TRL setting wins (benchmarks/RESULTS.md).

How it is measured: each tool lives in its own worker subprocess (so peak RSS is per tool), and
the driver steps them alternately (tinyr1 step, TRL step, tinyr1 step, ...) so that noise from
the machine hits both. A step's time splits into
  - sampling: tinyr1: refreshing the bf16 sampling copy + `grpo.collect` minus its reward time;
    TRL: its `_generate` (prompt tokenisation, `model.generate`, decoding), wrapped with a timer;
  - reward: the correctness function (tinyr1: `collect`'s own timer; TRL: `_calculate_rewards` wrapped);
  - update: the rest of the step: tinyr1: `rollout_from_rows`, `ADVANTAGES`, `grpo.update`
    (forward, backward, optimizer step); TRL: the step's wall time from `on_step_begin` to
    `on_step_end` (a TrainerCallback; it covers generation, scoring, the 4 micro-batch
    forward/backward passes and the optimizer step) minus sampling and reward.
The TRL worker's callback blocks in `on_step_end` until the driver asks for the next step, so
TRL's logging and data fetching happen while the other worker is idle, and are not counted.

Achieved GFLOP/s use the usual dense estimate with P = the base model's parameters (134.5M, tied
embedding counted once, since it is the LM head's matmul): sampling = 2 * P * generated tokens,
update = 6 * P * (prompt + response tokens, padding excluded), i.e. forward 2P, backward 4P per
token. With LoRA the frozen base weights need no weight gradient, so the true update cost is
nearer 4P per token: the update figure overstates the matrix units' work by up to 1.5x. Attention
score FLOPs and the LoRA branches are left out. The ceilings next to them are this machine's
measured matmul peaks (`benchmarks/ceilings.py`).

Below the tables, tinyr1's sampling at the full batch (prompts x samples rows, before any row
finishes): the median decode iteration (draw of the next tokens + the model's 1-token step, from
`rollout.engine.STEP_TIMES`) as 2 * P * rows GFLOP/s and as a share of the bf16 peak, measured in
the same run as the tables. The sampling column above averages over the whole rollout instead:
the refresh, the prefill and the tail where few rows are left.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TAG = "@@bench "  # worker -> driver messages on stdout start with this; everything else is log noise

# TRL settings a user can choose for speed: weights dtype, TrainingArguments bf16, generation engine
TRL_SETTINGS = {
    "fp32": dict(weights="float32", bf16=False),
    "autocast": dict(weights="float32", bf16=True),  # TRL's default precision
    "bf16": dict(weights="bfloat16", bf16=True),
    "bf16-cb": dict(weights="bfloat16", bf16=True, use_transformers_continuous_batching=True),
}


# ----------------------------------------------------------------------------- shared setup


def bench_job(cfg: dict):
    """The quickstart job with the benchmark's batch shape and response length."""
    from tinyr1.config import TrainJob, load_config
    from tinyr1.training.precision import resolve_bf16

    overrides = {
        "grpo": {"batch_size": cfg["prompts"] * cfg["samples"], "group_size": cfg["samples"], "num_iterations": 1, "beta": 0.0},
        "sampling": {"max_new_tokens": cfg["max_new_tokens"]},
        "run": {"seed": cfg["seed"], "progress": False},
    }
    return resolve_bf16(load_config(TrainJob, ROOT / "configs" / "quickstart.yaml", overrides))  # optim.bf16: auto -> a bool


def load_data(job):
    """The training stream (problems in the order tinyr1's loop takes them) and few-shot examples."""
    from tinyr1.training.optim import build_optimizer
    from tinyr1.training.policy import build_policy
    from tinyr1.training.problems import load_data

    return load_data(job)


def correctness_fn(job):
    from tinyr1.rewards.rules import build_reward_fns

    return build_reward_fns({"correctness": 1.0}, job.prompt.style, job.grading.fallback, job.grading.timeout)["correctness"][0]


def base_params(model) -> int:
    """Parameters of the base model (LoRA adapters excluded; a tied embedding counted once)."""
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def fingerprint(prompt_ids: list[list[int]]) -> str:
    """A short hash of a step's prompt token ids (N rows), to check both tools saw the same prompts."""
    import hashlib

    return hashlib.sha1(json.dumps(prompt_ids).encode()).hexdigest()[:12]


def send(msg: dict) -> None:
    print(TAG + json.dumps(msg), flush=True)


def receive() -> str:
    return sys.stdin.readline().strip() or "stop"  # EOF (driver gone) also stops


# ----------------------------------------------------------------------------- tinyr1 worker


def tinyr1_worker(cfg: dict) -> None:
    """Loads tinyr1's GRPO pieces, then runs one step per `step` command from the driver."""
    import torch

    from tinyr1.recipes import grpo
    from tinyr1.rollout import engine
    from tinyr1.rollout.policy_copy import SamplingCopy
    from tinyr1.training.optim import build_optimizer
    from tinyr1.training.policy import build_policy
    from tinyr1.training.problems import load_data

    torch.manual_seed(cfg["seed"])
    job = bench_job(cfg)
    data, reward_fns = load_data(job), {"correctness": (correctness_fn(job), 1.0)}
    model, tokenizer = build_policy(job)
    sampler = SamplingCopy(model, job.model, job.sampling.dtype)
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    send({"ready": True, "params": base_params(model), "threads": torch.get_num_threads(),
          "config": f"update bf16 autocast={job.optim.bf16}, sampling copy {sampler.dtype}, micro-batch {job.optim.micro_batch_size}"})
    while receive() == "step":
        t0 = time.perf_counter()
        timer: dict[str, float] = {}
        engine.STEP_TIMES = []  # each decode iteration's (rows, seconds)
        # 1-2. rollout and reward, on the refreshed sampling copy (the refresh is part of sampling)
        rows, rewards, _, _, _ = grpo.collect(sampler.refresh(model), tokenizer, data.stream, job, reward_fns, data.shots, timer)
        t1 = time.perf_counter()
        # 3. advantages, 4. update
        rollout = S.rollout_from_rows(rows, job.grpo.group_size, tokenizer.pad_token_id)
        advantages = grpo.ADVANTAGES[job.grpo.advantage](rewards, rows, rollout, job, tokenizer)
        metrics = grpo.update(model, None, optimizer, scheduler, rollout, advantages, job)
        t2 = time.perf_counter()
        send({"sampling": t1 - t0 - timer["reward"], "reward": timer["reward"], "update": t2 - t1, "step": t2 - t0,
              "logprob_diff": metrics.get("rollout/logprob_diff"),
              "generated_tokens": int(rollout.response_mask.sum()), "update_tokens": int(rollout.attention_mask.sum()),
              "prompts": fingerprint(rows["prompt_ids"]), "peak_rss_mb": peak_rss_mb(),
              "full_batch_rows": job.grpo.batch_size,
              "full_batch_steps": [t for r, t in engine.STEP_TIMES if r == job.grpo.batch_size]})


# ----------------------------------------------------------------------------- TRL worker


def trl_worker(cfg: dict) -> None:
    """Builds TRL's GRPOTrainer on the same model, prompts and reward, then trains; a callback
    hands control to the driver between optimizer steps and reports each step's timings."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tinyr1.data.prompts import render_prompt
    from tinyr1.models.load import load_tokenizer, resolve
    from tinyr1.types import Problem

    job = bench_job(cfg)
    tokenizer = load_tokenizer(job.model)
    data = load_data(job)
    problems = data.stream.take(cfg["prompts"] * cfg["steps_total"])
    dataset = Dataset.from_list([{"prompt": render_prompt(p, job.prompt, tokenizer, data.shots), "problem_id": p.id, "question": p.question,
                                  "answer": p.answer} for p in problems])
    fn = correctness_fn(job)

    def correctness(prompts, completions, problem_id, question, answer, **_):
        """tinyr1's correctness reward in TRL's signature (dataset columns arrive as keyword lists)."""
        return fn([Problem(i, q, a) for i, q, a in zip(problem_id, question, answer)], completions)

    setting = dict(TRL_SETTINGS[cfg["trl"]])
    weights, bf16 = setting.pop("weights"), setting.pop("bf16")
    micro = min(job.optim.micro_batch_size, job.grpo.batch_size)  # tinyr1 micro-batches the same way
    if job.grpo.batch_size % micro:
        raise SystemExit(f"prompts x samples ({job.grpo.batch_size}) must be a multiple of the micro-batch ({micro})")
    args = GRPOConfig(
        output_dir=cfg["workdir"], report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=cfg["seed"],
        max_steps=cfg["steps_total"], per_device_train_batch_size=micro,
        gradient_accumulation_steps=job.grpo.batch_size // micro, num_generations=job.grpo.group_size,
        max_completion_length=job.sampling.max_new_tokens, temperature=job.sampling.temperature, top_p=1.0, top_k=0,
        beta=0.0, num_iterations=1, loss_type="dapo", scale_rewards="group", epsilon=job.grpo.clip_low,
        epsilon_high=job.grpo.clip_high, learning_rate=job.optim.lr, lr_scheduler_type="constant", max_grad_norm=job.optim.grad_clip,
        bf16=bf16, use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False, shuffle_dataset=False, log_completions=False,
        model_init_kwargs={"dtype": weights}, **setting,
    )
    lora = LoraConfig(r=job.lora.rank, lora_alpha=job.lora.alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=str(resolve(job.model.name)), reward_funcs=correctness, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora)

    clock = {"sampling": 0.0, "reward": 0.0, "generated_tokens": 0, "update_tokens": 0, "prompts": ""}

    def timed(name, method, after=None):
        """`method` wrapped: its seconds are added to clock[name] (if named), `after` sees its result."""
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = method(*a, **k)
            if name:
                clock[name] += time.perf_counter() - t0
            if after:
                after(out)
            return out
        return wrapper

    def count_tokens(batch):
        completion, prompt = batch["completion_mask"], batch["prompt_mask"]
        clock["generated_tokens"] += int(completion.sum())
        clock["update_tokens"] += int(completion.sum() + prompt.sum())

    trainer._generate = timed("sampling", trainer._generate, lambda out: clock.update(prompts=fingerprint(out[0])))
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed(None, trainer._generate_and_score_completions, count_tokens)

    class StepGate(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            model = trainer.model
            base, adapter = (next(p.dtype for n, p in model.named_parameters() if ("lora_" in n) == lora) for lora in (False, True))
            send({"ready": True, "params": base_params(model), "threads": torch.get_num_threads(),
                  "config": f"weights {base} (LoRA {adapter}), bf16={bf16}, {setting or 'generate'}, gradient_checkpointing off, "
                            f"micro-batch {micro} x {args.gradient_accumulation_steps}"})
            if receive() != "step":
                control.should_training_stop = True

        def on_step_begin(self, args, state, control, **kwargs):
            clock.update(sampling=0.0, reward=0.0, generated_tokens=0, update_tokens=0, prompts="", t0=time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            step = time.perf_counter() - clock["t0"]
            send({"sampling": clock["sampling"], "reward": clock["reward"], "update": step - clock["sampling"] - clock["reward"],
                  "step": step, "generated_tokens": clock["generated_tokens"], "update_tokens": clock["update_tokens"],
                  "prompts": clock["prompts"], "peak_rss_mb": peak_rss_mb()})
            if receive() != "step":
                control.should_training_stop = True

    trainer.add_callback(StepGate())
    trainer.train()


# ----------------------------------------------------------------------------- driver


class Worker:
    """One tool in its own subprocess, driven step by step over stdin / stdout."""

    def __init__(self, tool: str, cfg: dict, logdir: Path):
        self.tool, self.log = tool, logdir / f"{tool.replace(':', '-')}-{cfg['max_new_tokens']}.log"
        name, _, trl = tool.partition(":")
        cfg = {**cfg, "trl": trl or "bf16", "workdir": str(logdir / f"out-{tool.replace(':', '-')}")}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-config", json.dumps(cfg)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
                                     cwd=ROOT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        self.info = self.read()

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        tail = "".join(self.log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{self.tool} worker ended without answering (exit {self.proc.wait()}); log {self.log}:\n{tail}")

    def step(self) -> dict:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=120)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


def run_setting(tools: list[str], cfg: dict, logdir: Path, verbose: bool) -> dict[str, dict]:
    """Start one worker per tool, step them alternately; returns per tool its info and step records."""
    workers = []
    try:
        for tool in tools:  # one at a time, so loading does not overlap
            workers.append(Worker(tool, cfg, logdir))
            print(f"  {tool} ready: {workers[-1].info['config']}, {workers[-1].info['threads']} torch threads", flush=True)
        records: dict[str, list[dict]] = {t: [] for t in tools}
        for i in range(cfg["steps_total"]):
            for w in workers:
                r = w.step()
                records[w.tool].append(r)
                if r["prompts"] != records[tools[0]][i]["prompts"]:
                    raise RuntimeError(f"step {i}: {w.tool} got other prompts than {tools[0]}: the comparison would be unfair")
                if verbose or i < cfg["warmup"]:
                    label = "warm-up" if i < cfg["warmup"] else f"step {i - cfg['warmup'] + 1}"
                    full = r.get("full_batch_steps") or []
                    full = f", {len(full)} full-batch decode iterations (median {1000 * statistics.median(full):.1f} ms)" if full else ""
                    print(f"  {label:8s} {w.tool:13s} step {r['step']:6.1f}s = sampling {r['sampling']:6.1f}s + reward "
                          f"{r['reward']:4.1f}s + update {r['update']:6.1f}s, {r['generated_tokens']} tokens generated{full}",
                          flush=True)
    finally:
        for w in workers:
            w.close()
    return {w.tool: {"info": w.info, "steps": records[w.tool][cfg["warmup"] :]} for w in workers}


def summarise(steps: list[dict], params: int) -> dict[str, float]:
    """Medians over the measured steps (each column its own median) and derived rates."""
    med = {k: statistics.median(s[k] for s in steps) for k in ("step", "sampling", "reward", "update", "generated_tokens", "update_tokens")}
    gen_rate = statistics.median(s["generated_tokens"] / s["sampling"] for s in steps)
    upd_rate = statistics.median(s["update_tokens"] / s["update"] for s in steps)
    return med | {"gen_tok_s": gen_rate, "upd_tok_s": upd_rate, "sampling_gflops": 2 * params * gen_rate / 1e9,
                  "update_gflops": 6 * params * upd_rate / 1e9, "peak_rss_gb": max(s["peak_rss_mb"] for s in steps) / 1024,
                  "steps_per_hour": 3600 / med["step"]}


def print_table(new_tokens: int, results: dict[str, dict], peaks: dict[str, float]) -> list[str]:
    ceiling = f"matmul peak: float32 {peaks['float32']:.0f}, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s" if peaks else "no ceilings measured"
    lines = [f"max new tokens {new_tokens}: medians over {len(next(iter(results.values()))['steps'])} steps ({ceiling})", "",
             "| tool | s/step | sampling s | reward s | update s | steps/hour | tokens generated | generated tok/s | update tok/s "
             "| sampling GFLOP/s (% bf16 peak) | update GFLOP/s (% bf16 peak) | peak RSS GB |",
             "| --- | " + " | ".join("---:" for _ in range(11)) + " |"]
    rows = {t: summarise(r["steps"], r["info"]["params"]) for t, r in results.items()}
    for tool, s in rows.items():
        pct = lambda g: f"{g:.0f}" + (f" ({100 * g / peaks['bfloat16']:.0f}%)" if peaks else "")  # noqa: E731
        lines.append(f"| {tool} | {s['step']:.1f} | {s['sampling']:.1f} | {s['reward']:.2f} | {s['update']:.1f} | {s['steps_per_hour']:.0f} "
                     f"| {s['generated_tokens']:.0f} | {s['gen_tok_s']:.0f} | {s['upd_tok_s']:.0f} | {pct(s['sampling_gflops'])} "
                     f"| {pct(s['update_gflops'])} | {s['peak_rss_gb']:.2f} |")
    if "tinyr1" in rows:
        for tool, s in rows.items():
            if tool.startswith("trl"):
                t = rows["tinyr1"]
                reward = f"{s['reward'] / t['reward']:.2f}x" if min(s["reward"], t["reward"]) >= 0.05 else ""  # no ratio of noise
                lines.append(f"| **{tool} / tinyr1** | **{s['step'] / t['step']:.2f}x** | {s['sampling'] / t['sampling']:.2f}x | "
                             f"{reward} | {s['update'] / t['update']:.2f}x | | | "
                             f"{s['gen_tok_s'] / t['gen_tok_s']:.2f}x | {s['upd_tok_s'] / t['upd_tok_s']:.2f}x | | | "
                             f"{s['peak_rss_gb'] / t['peak_rss_gb']:.2f}x |")
    for tool, r in results.items():
        full = [t for s in r["steps"] for t in s.get("full_batch_steps", [])]
        if full:  # decoding at the whole batch, before any row finished: draw + model step per iteration
            sec, rows = statistics.median(full), r["steps"][0]["full_batch_rows"]
            g = 2 * r["info"]["params"] * rows / sec / 1e9
            share = f" = {100 * g / peaks['bfloat16']:.0f}% of the bf16 peak" if peaks else ""
            lines += ["", f"{tool}: decode iterations at all {rows} rows (before any row finished): median {1000 * sec:.1f} ms "
                          f"over {len(full)} iterations = {g:.0f} GFLOP/s{share}"]
    for tool, r in results.items():
        diffs = [s["logprob_diff"] for s in r["steps"] if s.get("logprob_diff") is not None]
        if diffs:
            lines += ["", f"{tool}: sampler vs trainer log-probs, mean |difference| per response token: "
                          f"median {statistics.median(diffs):.4f} over {len(diffs)} steps (bf16 sampling copy vs float32 master + bf16 autocast)"]
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 new tokens, 1 warm-up + 3 measured steps (about 10 minutes)")
    ap.add_argument("--new-tokens", type=int, nargs="+", default=None, help="max new tokens settings (default 128 256; quick: 64)")
    ap.add_argument("--steps", type=int, default=None, help="measured steps per tool and setting (default 5; quick: 3)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up steps per tool, not measured")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step (B)")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt (G)")
    ap.add_argument("--tools", nargs="+", default=["tinyr1", "trl:bf16"],
                    help=f"tinyr1 and trl:<{'|'.join(TRL_SETTINGS)}>, stepped in this order (default: tinyr1 trl:bf16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in every worker (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ceilings", action="store_true", help="skip measuring the matmul peak (the GFLOP/s columns then lack a ceiling)")
    ap.add_argument("--out", type=Path, default=None, help="append the tables (markdown) to this file")
    ap.add_argument("--verbose", action="store_true", help="print every step of every tool")
    ap.add_argument("--worker", choices=["tinyr1", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        cfg = json.loads(args.worker_config)
        if cfg.get("threads"):
            import torch

            torch.set_num_threads(cfg["threads"])
        {"tinyr1": tinyr1_worker, "trl": trl_worker}[args.worker](cfg)
        return

    for tool in args.tools:
        if tool != "tinyr1" and not (tool.startswith("trl:") and tool[4:] in TRL_SETTINGS):
            ap.error(f"--tools: unknown tool {tool!r}; expected tinyr1 or trl:<{'|'.join(TRL_SETTINGS)}>")
    new_tokens = args.new_tokens or ([64] if args.quick else [128, 256])
    steps = args.steps or (3 if args.quick else 5)
    t_start = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
    peaks: dict[str, float] = {}
    if not args.no_ceilings:
        sys.path.insert(0, str(HERE))
        import torch
        from ceilings import matmul_peak

        if args.threads:
            torch.set_num_threads(args.threads)
        peaks = {name: matmul_peak(name, repeats=3) for name in ("float32", "bfloat16")}
        print(f"matmul peak: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s", flush=True)
    out_lines = []
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl-") as tmp:
        for n in new_tokens:
            cfg = dict(prompts=args.prompts, samples=args.samples, max_new_tokens=n, seed=args.seed, warmup=args.warmup,
                       steps_total=args.warmup + steps, threads=args.threads)
            print(f"\n{args.prompts} prompts x {args.samples} samples, max new tokens {n}: {', '.join(args.tools)}, "
                  f"{args.warmup} warm-up + {steps} measured steps each, alternating", flush=True)
            results = run_setting(args.tools, cfg, Path(tmp), args.verbose)
            print()
            out_lines += print_table(n, results, peaks) + [""]
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    if args.out:
        with args.out.open("a") as f:
            f.write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
