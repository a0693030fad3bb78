"""Training scenarios that run unchanged on one process (inside pytest) and on two (under torchrun).

    torchrun --standalone --nproc_per_node 2 tests/distributed/scenarios.py MODEL_DIR PROBLEMS.jsonl OUT_DIR

Under torchrun, `main` runs every scenario on 2 gloo processes and rank 0 saves their results to
OUT_DIR/results.pt; each rank also lists the files it wrote under OUT_DIR/runs (an audit hook),
in OUT_DIR/writes-rank<r>.json. The tests in test_two_processes.py run the same functions in
the pytest process (1 process) and compare.

The update scenarios train on a fixed global batch (`fixed_rows`), so both layouts see the same
rollouts: 2 processes take one half of the groups each, 1 process takes them all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from tinyr1 import distributed as D
from tinyr1.config import TrainJob, load_config
from tinyr1.rewards import rules
from tinyr1.rollout.collect import build_rollout
from tinyr1.training.checkpoint import load_checkpoint, load_run_config, new_run_dir, save_checkpoint
from tinyr1.training.optim import build_optimizer
from tinyr1.training.policy import build_policy, frozen_copy, trainable_parameters
from tinyr1.training.problems import load_data
from tinyr1.types import Rewards

G = 4  # samples per prompt in the fixed batch
REWARDS = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.2, 0.8, 0.4, 0.0])  # 4 groups; the 2nd is flat

GRPO_CASES = {
    "batch-scale-kl-mu2": dict(grpo__scale_rewards="batch", grpo__beta=0.1, grpo__num_iterations=2, grpo__clip_high=0.4),
    "reinforce-pp-sequence": dict(grpo__advantage="reinforce_pp", grpo__loss_aggregation="sequence", optim__micro_batch_size=5),
    "full-ft-dr-grpo-kl": dict(lora__rank=0, grpo__loss_aggregation="dr_grpo", grpo__beta=0.05, grpo__kl_estimator="k1"),
}


def _length_parity(problems, responses, **_):
    return [float(len(r) % 2) for r in responses]


def _parity_on_rank_zero(problems, responses, **_):
    """Rank 0's groups get a signal, rank 1's never: dynamic sampling leaves rank 1 without groups."""
    return [float(len(r) % 2) if D.rank() == 0 else 0.0 for r in responses]


rules.REWARDS["length_parity"] = _length_parity
rules.REWARDS["parity_on_rank_zero"] = _parity_on_rank_zero


def make_job(model_dir, problems_file, runs, **overrides) -> TrainJob:
    """A tiny job; `section__key=value` overrides (`algorithm=...` at the top level)."""
    values = {
        "model": {"name": str(model_dir), "device": "cpu"},
        "data": {"source": f"jsonl:{problems_file}", "test_size": 4},
        "sampling": {"max_new_tokens": 8, "batch_size": 16},
        "reward": {"weights": {"length_parity": 1.0}},
        "run": {"output_dir": str(runs), "steps": 2, "eval_every": 0, "eval_size": 4, "progress": False},
        "lora": {"rank": 4, "alpha": 8},
        "optim": {"lr": 0.01, "micro_batch_size": 3},
        "grpo": {"batch_size": 16, "group_size": G},
    }
    for key, value in overrides.items():
        if "__" in key:
            section, name = key.split("__")
            values.setdefault(section, {})[name] = value
        else:
            values[key] = value
    return load_config(TrainJob, None, values)


def fixed_rows(job: TrainJob, tokenizer) -> dict[str, list]:
    """A fixed global batch of 4 prompts x G = 16 rows, the same in every process and layout."""
    from tinyr1.data import load_problems
    from tinyr1.data.prompts import render_prompt

    gen = torch.Generator().manual_seed(1234)
    rows: dict[str, list] = {k: [] for k in ("prompt_ids", "response_ids", "finished", "texts", "problems")}
    for p in load_problems(job.data, "train")[:4]:
        prompt = tokenizer(render_prompt(p, job.prompt, tokenizer, []), add_special_tokens=False)["input_ids"]
        for _ in range(G):
            n = int(torch.randint(1, 9, (1,), generator=gen))
            ids = torch.randint(5, len(tokenizer), (n,), generator=gen).tolist()
            for k, v in zip(rows, (prompt, ids, n % 2 == 1, tokenizer.decode(ids), p)):
                rows[k].append(v)
    return rows


def as_rollout(rows: dict[str, list], group_size: int, pad_id: int, rewards=None):
    """The rows (plain lists) as a Rollout, with `rewards` (N,) when given."""
    rollout = build_rollout(rows["prompt_ids"], rows["response_ids"], rows["finished"], rows["problems"], rows["texts"],
                            group_size, pad_id)
    if rewards is not None:
        rollout.rewards = Rewards(rewards, {}, 0.0)
    return rollout


def my_rows(rows: dict[str, list], group_size: int) -> tuple[dict[str, list], list[int]]:
    """This process's whole groups of the fixed batch (all of them in one process)."""
    groups = D.shard(range(len(rows["texts"]) // group_size))
    idx = [g * group_size + j for g in groups for j in range(group_size)]
    return {k: [v[i] for i in idx] for k, v in rows.items()}, idx


def trained(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in D.unwrap(model).named_parameters() if p.requires_grad}


def grpo_update(name: str, model_dir, problems_file, runs) -> dict:
    """One GRPO update on this process's share of the fixed batch: weights, every row's advantages, metrics."""
    from tinyr1.recipes.grpo import ADVANTAGES, update

    job = make_job(model_dir, problems_file, runs, **GRPO_CASES[name])
    torch.manual_seed(0)
    model, tokenizer = build_policy(job)
    ref_model = frozen_copy(model) if job.grpo.beta > 0 and job.lora.rank == 0 else None
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    before = trained(model)
    model, optimizer = D.prepare(model, optimizer)
    rows, idx = my_rows(fixed_rows(job, tokenizer), G)
    rollout = as_rollout(rows, G, tokenizer.pad_token_id, REWARDS[idx])
    advantages = ADVANTAGES[job.grpo.advantage](rollout, job, None, tokenizer)
    metrics = update(model, ref_model, optimizer, scheduler, rollout, advantages, job)
    first = advantages.gather(1, rollout.response_mask.argmax(-1, keepdim=True))[:, 0]  # (N,): every response token's
    return dict(before=before, after=trained(model), advantages=D.gather(first), metrics=metrics)


def ppo_update(model_dir, problems_file, runs) -> dict:
    """Experience (GAE, whitening) and a 2-epoch PPO update on this process's share of the fixed batch."""
    from tinyr1.recipes.ppo import build_critic, make_experience, update

    job = make_job(model_dir, problems_file, runs, algorithm="ppo", ppo__batch_size=16, ppo__mini_batch_size=16, ppo__epochs=2)
    torch.manual_seed(0)
    model, tokenizer = build_policy(job)
    critic = build_critic(model, job)
    optimizer, scheduler = build_optimizer([*trainable_parameters(model), *critic.parameters()], job.optim, job.run.steps)
    model, critic, optimizer = D.prepare(model, critic, optimizer)
    rows, idx = my_rows(fixed_rows(job, tokenizer), 1)
    rollout = as_rollout(rows, 1, tokenizer.pad_token_id)
    exp = make_experience(model, critic, None, rollout, REWARDS[idx], job, job.ppo.kl_coef)
    metrics = update(model, critic, optimizer, scheduler, rollout, exp, job)
    return dict(after=trained(model) | {f"critic.{k}": v for k, v in trained(critic).items()}, metrics=metrics,
                advantages=D.gather(exp.advantages[:, 0]))


def train_run(name: str, model_dir, problems_file, runs, resume_to: int | None = None, **overrides) -> Path:
    """A whole `tinyr1 train` run (rank 0 creates the folder); `resume_to` continues it to that step."""
    from tinyr1.config import parse_overrides
    from tinyr1.recipes import get_recipe

    job = make_job(model_dir, problems_file, runs, run__name=name, **overrides)
    run_dir = D.broadcast_object(new_run_dir(job) if D.is_main() else None)
    get_recipe(job.algorithm)(job, run_dir)
    if resume_to is not None:
        job = load_run_config(run_dir, parse_overrides([f"--run.steps={resume_to}"]))
        get_recipe(job.algorithm)(job, run_dir, resume=True)
    return run_dir


SFT_CASES = {"padded": dict(sft__packing=False), "packed": dict(sft__packing=True)}
SFT = dict(algorithm="sft", sft__batch_size=6, sft__max_length=64, optim__micro_batch_size=2, run__eval_size=3)


def sft_run(case: str, model_dir, problems_file, runs) -> Path:
    return train_run(f"sft-{case}", model_dir, problems_file, runs, **SFT, **SFT_CASES[case])


# ----------------------------------------------------------------------------- reward models and eval

RM_CASES = {  # name: (kind, train options); 2 steps, micro-batches of 2 sequences
    "orm-bce": ("orm", dict(batch_size=6)),  # 8 examples: steps of 6 then 2, i.e. 3 + 3 and 1 + 1 per process
    "orm-bradley-terry": ("orm", dict(objective="bradley_terry", batch_size=3)),  # 4 pairs: 3 then 1 (rank 0 has none)
    "prm-lora": ("prm", dict(lora_rank=4, lr=1e-2, batch_size=6)),
}


def write_rm_data(folder: Path) -> None:
    """responses.jsonl (a right and a wrong response to each of 4 problems) and steps.jsonl (8 two-step solutions)."""
    responses, steps = [], []
    for a in range(1, 5):
        for k, (b, ok) in enumerate([(a + 1, True), (a + 2, False)]):
            responses.append({"id": f"q{a}#{k}", "problem_id": f"q{a}", "prompt": f"Calculate {a} + 1.", "answer": str(a + 1),
                              "completion": f"{a} + 1 = {b}\nThe answer is \\boxed{{{b}}}.", "extracted": str(b), "label": ok})
            steps.append({"prompt": f"Calculate {a} + 1.", "completions": [f"{a} + 1 = {b}", f"The answer is {b}."],
                          "labels": [ok, ok]})
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in responses))
    (folder / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))


def rm_job(case: str, model_dir, data_dir, runs):
    """(kind, RMTrainJob) of a reward-model case, writing to runs/rm-<case>."""
    from tinyr1.config import RMTrainJob

    kind, opts = RM_CASES[case]
    opts = dict(opts)
    lora, lr = opts.pop("lora_rank", 0), opts.pop("lr", 1e-3)
    data = Path(data_dir) / ("responses.jsonl" if kind == "orm" else "steps.jsonl")
    return kind, load_config(RMTrainJob, None, {
        "model": {"name": str(model_dir), "device": "cpu"}, "lora": {"rank": lora, "alpha": 2 * lora},
        "optim": {"lr": lr, "micro_batch_size": 2},
        "train": {"data": str(data), "out": str(Path(runs) / f"rm-{case}"), "epochs": 5, "max_steps": 2, "progress": False, **opts}})


def rm_train(case: str, model_dir, data_dir, runs) -> Path:
    """A whole `rm train` / `prm train` run (2 steps); returns its folder (written by rank 0)."""
    from tinyr1.recipes.reward_model import train_reward_model

    kind, job = rm_job(case, model_dir, data_dir, runs)
    train_reward_model(job, kind)
    return Path(job.train.out)


def sharded_eval(model_dir, problems_file, runs) -> dict:
    """`tinyr1 eval`'s evaluation of 5 problems, greedy and 2 samples each (2 + 3 problems per process)."""
    from tinyr1.config import ModelConfig
    from tinyr1.data import load_problems
    from tinyr1.evaluation import evaluate_sharded
    from tinyr1.models.load import load_model

    job = make_job(model_dir, problems_file, runs)
    model, tokenizer = load_model(ModelConfig(name=str(model_dir), device="cpu"))
    problems = load_problems(job.data, "train")[:5]
    r = evaluate_sharded(model, tokenizer, problems, job.prompt, job.sampling, job.grading, samples=2, progress=False)
    return dict(summary=r.summary, rows=[(row["id"], row["mode"]) for row in r.rows],
                greedy=[row["response"] for row in r.rows if row["mode"] == "greedy"])


# ----------------------------------------------------------------------------- FSDP2 (sharded weights)

FSDP2_CASES = {"full": dict(lora__rank=0), "lora": dict(lora__rank=4)}


def shard_policy(model):
    """FSDP2 as accelerate's fsdp.yaml applies it: each decoder layer, then the root (torch's own
    `fully_shard` on gloo, since accelerate runs FSDP on GPUs only). Unsharded in one process."""
    if D.world_size() > 1:
        from torch.distributed.fsdp import fully_shard

        for layer in getattr(model, "get_base_model", lambda: model)().model.layers:
            fully_shard(layer)
        fully_shard(model)
    return model


def fsdp2_step(model, optimizer, scheduler) -> None:
    """One optimizer step of next-token loss on this process's rows of a fixed batch (FSDP2 averages gradients)."""
    ids = torch.randint(5, 300, (4, 10), generator=torch.Generator().manual_seed(7))
    mine = ids[list(D.shard(range(len(ids))))]
    model(input_ids=mine, labels=mine).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def fsdp2_policy(job):

    torch.manual_seed(0)
    model, tokenizer = build_policy(job)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero adapters from the start, so that merging them shows
            torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(name)))
    return model, tokenizer


def fsdp2_run(case: str, model_dir, problems_file, runs) -> dict:
    """The tiny policy sharded by FSDP2 (2 processes) or whole (1 process): its gathered state dict,
    a checkpoint after step 1, step 2 straight and resumed from that checkpoint into a freshly
    sharded policy, and the sampling copy refreshed after step 2."""
    from tinyr1.rollout.policy_copy import SamplingCopy

    job = make_job(model_dir, problems_file, runs, run__name=f"fsdp2-{case}", **FSDP2_CASES[case])
    model, tokenizer = fsdp2_policy(job)
    whole = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = SamplingCopy(model, job.model, "float32")  # built before sharding, as the recipes do
    shard_policy(model)
    sharded = D.world_size() > 1 and all(type(p).__name__ == "DTensor" for p in model.parameters())
    full = D.full_state_dict(model)
    gathered_ok = full.keys() == whole.keys() and all(torch.equal(full[k], whole[k]) and type(full[k]) is torch.Tensor for k in whole)
    optimizer, scheduler = build_optimizer(trainable_parameters(model), job.optim, job.run.steps)
    run_dir = D.broadcast_object(new_run_dir(job) if D.is_main() else None)
    stream = load_data(job).stream
    fsdp2_step(model, optimizer, scheduler)
    ckpt = save_checkpoint(run_dir, 1, model, tokenizer, optimizer, scheduler, stream, 0.0)
    fsdp2_step(model, optimizer, scheduler)
    straight = D.full_state_dict(model)
    copy = {k: v.clone() for k, v in sampler.refresh(model).state_dict().items()}

    fresh, _ = fsdp2_policy(job)
    shard_policy(fresh)
    optimizer, scheduler = build_optimizer(trainable_parameters(fresh), job.optim, job.run.steps)
    load_checkpoint(ckpt, fresh, optimizer, scheduler, load_data(job).stream)
    restored = D.full_state_dict(fresh)
    fsdp2_step(fresh, optimizer, scheduler)
    return dict(whole=whole, sharded=D.gather_objects(sharded), gathered_ok=D.gather_objects(gathered_ok),
                checkpoint=ckpt, straight=straight, restored=restored, resumed=D.full_state_dict(fresh),
                copies=D.gather_objects(copy))


RM_CLI = ["rm", "train", "--max-steps=1", "--model.device=cpu", "--lora.rank=0", "--train.batch_size=4", "--train.progress=false"]


def install_write_audit(root: Path) -> list[str]:
    """Record every file-system write under `root` made by this process (open for writing, mkdir,
    rename, remove, rmtree) through Python's audit hooks; returns the list that fills up."""
    root = os.path.abspath(root)
    seen: list[str] = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & write_flags)
            paths = [path] if writes else []
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = [args[0]]
        elif event == "os.rename":
            paths = [args[0], args[1]]
        else:
            return
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)):
                p = os.path.abspath(os.fsdecode(p))
                if p.startswith(root):
                    seen.append(f"{event} {p}")

    sys.addaudithook(hook)
    return seen


def main(model_dir: str, problems_file: str, out: str) -> None:
    D.init(cpu=True)
    out_dir = Path(out)
    runs = out_dir / "runs"
    writes = install_write_audit(runs)
    results = {f"grpo/{name}": grpo_update(name, model_dir, problems_file, runs) for name in GRPO_CASES}
    results["ppo"] = ppo_update(model_dir, problems_file, runs)
    for case in SFT_CASES:
        sft_run(case, model_dir, problems_file, runs)
    # GRPO end to end: 4 steps straight, and 2 steps then resumed to 4 (checkpoint at step 2)
    train_run("grpo-full", model_dir, problems_file, runs, run__steps=4, run__save_every=2, grpo__batch_size=8)
    train_run("grpo-cut", model_dir, problems_file, runs, resume_to=4, run__steps=2, run__save_every=2, grpo__batch_size=8)
    # dynamic sampling leaves rank 1 without groups after its one refill: it must still join the update
    train_run("grpo-dynamic", model_dir, problems_file, runs, run__steps=1, reward__weights={"parity_on_rank_zero": 1.0},
              grpo__batch_size=8, grpo__dynamic_sampling=True, grpo__max_refills=1)
    train_run("ppo", model_dir, problems_file, runs, algorithm="ppo", run__steps=1, run__eval_size=2, ppo__batch_size=4,
              ppo__mini_batch_size=2, ppo__adaptive_kl=True, ppo__early_stop_kl=10.0)
    data_dir = Path(problems_file).parent  # the test wrote the reward-model data there (write_rm_data)
    for case in RM_CASES:
        rm_train(case, model_dir, data_dir, runs)
    results["eval"] = sharded_eval(model_dir, problems_file, runs)
    for case in FSDP2_CASES:  # last of the training scenarios: nothing after it prepares models with DDP
        results[f"fsdp2/{case}"] = fsdp2_run(case, model_dir, problems_file, runs)
    if D.is_main():
        torch.save(results, out_dir / "results.pt")
    rank = D.rank()
    # last, since the command leaves the process group at its end: `tinyr1 rm train` through the CLI
    from tinyr1.cli import main as cli_main

    code = cli_main([*RM_CLI, f"--data={data_dir / 'responses.jsonl'}", f"--model={model_dir}", f"--out={runs / 'rm-cli'}"])
    assert code == 0, f"tinyr1 rm train exited with {code} on rank {rank}"
    (out_dir / f"writes-rank{rank}.json").write_text(json.dumps(list(writes)))
    D.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
