"""Randomized crash-resume check: SIGKILL training runs at random moments, resume, compare bitwise.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kill_resume.py [--kills 6] [--steps 8] [--seed 0] [--out DIR]

For each algorithm (GRPO, PPO, SFT, a reward model) an uninterrupted run of the tiny test model
is timed; then the same run is started in a process that another process SIGKILLs after a random
delay (uniform over the uninterrupted run's wall time, so kills land in start-up, sampling,
updates, checkpoint writes and the final save alike), resumed with `--resume`, killed again, ...,
`--kills` times, and finally resumed to the end. The run must end identical to the uninterrupted
one: metrics.jsonl and samples.jsonl (wall-clock keys aside), summary.json, final weights. Checkpoints
every 1-3 steps (drawn per algorithm). Prints one line per algorithm and a table for docs/reliability.md.

The CI version, with kills at chosen moments instead of random ones, is tests/training/test_crash_resume.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
DRIVER = ROOT / "tests" / "training" / "cli_with_test_reward.py"


def launch(args: list[str], kill_after: float | None) -> tuple[int, float]:
    """Run the command line; SIGKILL it after `kill_after` seconds if still running. (exit status, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("TINYR1_KILL_AT", None)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(DRIVER), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return proc.returncode, time.monotonic() - t0


def commands(algorithm: str, tmp: Path, model: Path, problems: Path, responses: Path, steps: int, save_every: int):
    """(start arguments for a run named `name`, resume arguments, run folder) as functions of the name."""
    if algorithm == "rm":
        def start(name):
            return ["rm", "train", f"--model={model}", f"--data={responses}", f"--out={tmp / name}", "--epochs=20",
                    f"--max-steps={steps}", "--train.batch_size=3", f"--train.save_every={save_every}", "--train.progress=false"]
        return start, lambda name: ["rm", "train", "--resume", str(tmp / name)], lambda name: tmp / name
    config = tmp / f"{algorithm}.json"
    config.write_text(json.dumps({
        "algorithm": algorithm, "model": {"name": str(model), "device": "cpu"},
        "data": {"source": f"jsonl:{problems}", "test_size": 4}, "sampling": {"max_new_tokens": 12, "batch_size": 16},
        "reward": {"weights": {"length_parity": 1.0, "correctness": 0.5}},
        "run": {"output_dir": str(tmp / "runs"), "steps": steps, "eval_every": 3, "eval_size": 4, "progress": False,
                "save_every": save_every},
        "lora": {"rank": 4, "alpha": 8}, "optim": {"lr": 0.01, "micro_batch_size": 4},
        "grpo": {"batch_size": 8, "group_size": 4}, "ppo": {"batch_size": 4, "mini_batch_size": 2}, "sft": {"batch_size": 4}}))
    yaml_path = config.with_suffix(".yaml")
    yaml_path.write_text(config.read_text())  # JSON is YAML
    return (lambda name: ["train", str(yaml_path), f"--run.name={name}"],
            lambda name: ["train", "--resume", str(tmp / "runs" / name)], lambda name: tmp / "runs" / name)


def same_run(a: Path, b: Path) -> list[str]:
    """What differs between two run folders (nothing: [])."""
    import torch
    from safetensors.torch import load_file

    def rows(path):
        lines = path.read_text().splitlines() if path.is_file() else []
        return [{k: v for k, v in json.loads(x).items() if not k.startswith(("time/", "timing/", "eval/seconds"))} for x in lines]

    diffs = [name for name in ("metrics.jsonl", "samples.jsonl") if rows(a / name) != rows(b / name)]
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        s.pop("wall_time_s", None), s.pop("train_seconds", None)
    diffs += ["summary.json"] if sa != sb else []
    wa = {f"{f.name}:{k}": v for f in (a / "final").glob("*.safetensors") for k, v in load_file(f).items()}
    wb = {f"{f.name}:{k}": v for f in (b / "final").glob("*.safetensors") for k, v in load_file(f).items()}
    diffs += ["final weights"] if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa) else []
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs per algorithm before the last resume")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithms", default="grpo,ppo,sft,rm")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    ns = parser.parse_args()
    from conftest import build_tiny_model  # tests/conftest.py: the tiny model and tokenizer of the test suite

    rng = random.Random(ns.seed)
    tmp = Path(ns.out or tempfile.mkdtemp(prefix="tinyr1-kill-"))
    tmp.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(tmp / "tiny-model")
    problems = tmp / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Calculate {a} + {b}.", "answer": str(a + b)}) + "\n"
                                for a in range(1, 9) for b in range(1, 6)))
    responses = tmp / "responses.jsonl"
    responses.write_text("".join(json.dumps({"prompt": f"Calculate {a} + 1.", "completion": f"\\boxed{{{a + 1 + k}}}", "label": k == 0,
                                             "problem_id": str(a)}) + "\n" for a in range(1, 9) for k in range(2)))
    table = ["| algorithm | checkpoint every | uninterrupted run | kills: seconds after the start (last step logged) | identical after resume |",
             "| --- | --- | --- | --- | --- |"]
    for algorithm in ns.algorithms.split(","):
        save_every = rng.randint(1, 3)
        start, resume, folder = commands(algorithm, tmp, model, problems, responses, ns.steps, save_every)
        whole, cut = f"{algorithm}-whole", f"{algorithm}-cut"
        _, whole_s = launch(start(whole), None)
        kills, args = [], start(cut)
        while len(kills) < ns.kills:
            delay = rng.uniform(0.2, whole_s)
            code, _ = launch(args, delay)
            if code == 0:  # it finished before the kill: start the killed run again from scratch
                import shutil

                shutil.rmtree(folder(cut))
                args = start(cut)
                continue
            metrics = folder(cut) / "metrics.jsonl"
            logged = max((json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.strip().endswith("}")),
                         default=None) if metrics.is_file() else None
            kills.append(f"{delay:.1f} s ({'start-up' if logged is None else f'after step {logged}'})")
            args = resume(cut) if (folder(cut) / "config.yaml").is_file() else start(cut)
        code, _ = launch(args, None)
        diffs = same_run(folder(cut), folder(whole))
        verdict = "yes" if not diffs else "NO: " + ", ".join(diffs)
        print(f"{algorithm}: {len(kills)} kills at {kills}, save_every {save_every}, identical: {verdict}", flush=True)
        table.append(f"| {algorithm} | {save_every} | {whole_s:.0f} s | {len(kills)}: {', '.join(kills)} | {verdict} |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
