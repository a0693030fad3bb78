"""Two gloo processes (torchrun) against one: same updates, same advantages, rank-0-only files, resume.

One torchrun launch runs every scenario of scenarios.py on 2 processes (about 20 s on 2 cores);
each test then runs the same scenario in this process (1 process) where it compares the two.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tinyr1.training.checkpoint import read_trainer_state

from . import scenarios

SCRIPT = Path(scenarios.__file__)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small for threads: on a busy 2-core machine two threads spin
    against each other (an SFT run here takes 14 s instead of 2 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two(tiny_model_dir, tmp_path_factory):
    """The scenarios run on 2 processes: (out folder, rank 0's results)."""
    out = tmp_path_factory.mktemp("two-processes")
    problems = out / "problems.jsonl"
    rows = [{"question": f"Calculate {a} + {b}.", "answer": str(a + b)} for a in range(1, 7) for b in range(1, 5)]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scenarios.write_rm_data(out)
    # --standalone: a rendezvous on a free local port; one thread per process on the 2-core CI machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
           str(tiny_model_dir), str(problems), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    (out / "stdout.txt").write_text(proc.stdout)
    return out, torch.load(out / "results.pt", weights_only=False)


@pytest.fixture(scope="module")
def one_grpo(two, tiny_model_dir, tmp_path_factory):
    """GRPO update scenarios run here, on 1 process, once per case."""
    out, _ = two
    done = {}

    def run(case: str) -> dict:
        if case not in done:
            done[case] = scenarios.grpo_update(case, tiny_model_dir, out / "problems.jsonl", tmp_path_factory.mktemp("one"))
        return done[case]

    return run


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    final = run_dir / "final"
    return load_file(final / ("adapter_model.safetensors" if (final / "adapter_config.json").is_file() else "model.safetensors"))


def _step_rows(run_dir: Path, key: str) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if key in l]


def _assert_same_weights(a: dict, b: dict, before: dict | None = None):
    """Equal within float noise. AdamW's steps are about lr = 1e-2 per weight; summing the gradient in
    another order moves a few weights whose gradient nearly cancels by ~1e-6, hence atol 5e-5.
    Adam's first step ignores the gradient's overall scale, so callers also compare `loss/grad_norm`."""
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=5e-5, msg=lambda m: f"{name}: {m}")
    if before is not None:  # the update moved the weights by far more than the tolerance
        assert max(float((a[n] - before[n]).abs().max()) for n in a) > 1e-3


@pytest.mark.parametrize("case", list(scenarios.GRPO_CASES))
def test_grpo_update_on_two_processes_equals_one_process_on_the_same_batch(case, two, one_grpo):
    _, results = two
    one = one_grpo(case)
    two_ = results[f"grpo/{case}"]
    _assert_same_weights(two_["after"], one["after"], before=one["before"])
    for key in ("loss/policy", "loss/kl", "loss/entropy", "loss/approx_kl", "loss/grad_norm"):
        assert math.isclose(two_["metrics"][key], one["metrics"][key], rel_tol=1e-4, abs_tol=1e-6), key


@pytest.mark.parametrize("case", list(scenarios.GRPO_CASES))
def test_group_advantages_are_identical_on_one_and_two_processes(case, two, one_grpo, tiny_model_dir, tmp_path):
    from tinyr1.recipes.grpo import ADVANTAGES
    from tinyr1.types import Rewards

    out, results = two
    one = one_grpo(case)
    assert torch.equal(results[f"grpo/{case}"]["advantages"], one["advantages"])
    # the batch-wide estimators would differ if each process normalised its own half
    job = scenarios.make_job(tiny_model_dir, out / "problems.jsonl", tmp_path, **scenarios.GRPO_CASES[case])
    def alone(rewards):  # one half's rollout, its advantages computed as if it were the whole batch
        half = SimpleNamespace(rewards=Rewards(rewards, {}), group_size=scenarios.G, num_sequences=len(rewards),
                               response_mask=torch.ones(len(rewards), 1))
        return ADVANTAGES[job.grpo.advantage](half, job, None, None)[:, 0]

    halves = torch.cat([alone(r) for r in scenarios.REWARDS.split(8)])
    if job.grpo.scale_rewards == "batch" or job.grpo.advantage == "reinforce_pp":
        assert not torch.allclose(halves, one["advantages"], atol=1e-3)


def test_ppo_update_with_whitening_on_two_processes_equals_one_process(two, tiny_model_dir, tmp_path):
    out, results = two
    one = scenarios.ppo_update(tiny_model_dir, out / "problems.jsonl", tmp_path)
    torch.testing.assert_close(results["ppo"]["advantages"], one["advantages"], rtol=1e-5, atol=1e-6)
    _assert_same_weights(results["ppo"]["after"], one["after"])
    for key in ("loss/policy", "loss/value", "loss/approx_kl", "loss/grad_norm"):
        assert math.isclose(results["ppo"]["metrics"][key], one["metrics"][key], rel_tol=1e-4, abs_tol=1e-6), key


@pytest.mark.parametrize("case", list(scenarios.SFT_CASES))
def test_sft_steps_on_two_processes_equal_one_process(case, two, tiny_model_dir, tmp_path):
    out, _ = two
    here = scenarios.sft_run(case, tiny_model_dir, out / "problems.jsonl", tmp_path)
    there = out / "runs" / f"sft-{case}"
    _assert_same_weights(_final_weights(there), _final_weights(here))
    a, b = _step_rows(there, "loss/sft"), _step_rows(here, "loss/sft")
    assert [r["step"] for r in a] == [1, 2]  # one line per step: rank 1 wrote none
    for ra, rb in zip(a, b):
        assert math.isclose(ra["loss/sft"], rb["loss/sft"], rel_tol=1e-5)
        assert math.isclose(ra["loss/grad_norm"], rb["loss/grad_norm"], rel_tol=1e-4)
        assert ra["train/tokens"] == rb["train/tokens"] and ra["train/response_length"] == rb["train/response_length"]
    assert [r["eval/n"] for r in _step_rows(there, "eval/n")] == [3, 3]  # the sharded eval (2 + 1) covers every problem


def test_only_rank_zero_writes_the_run_folders(two):
    out, _ = two
    rank0 = json.loads((out / "writes-rank0.json").read_text())
    rank1 = json.loads((out / "writes-rank1.json").read_text())
    assert rank1 == []
    run = str(out / "runs" / "grpo-full")
    for made in ("metrics.jsonl", "samples.jsonl", "summary.json", "config.yaml", ".lock", "plots"):
        assert any(w.endswith(f"{run}/{made}") or f"{run}/{made}/" in w for w in rank0), made
    for tmp in (".checkpoint-2.", ".final."):  # temporary folders, a name of their own per process
        assert any(f"{run}/{tmp}" in w and ".tmp" in w for w in rank0), tmp
    steps = [r["step"] for r in _step_rows(out / "runs" / "grpo-full", "loss/policy")]
    assert steps == [1, 2, 3, 4]


def test_resume_on_two_processes_matches_an_uninterrupted_run(two):
    out, _ = two
    full, cut = out / "runs" / "grpo-full", out / "runs" / "grpo-cut"
    _assert_same_weights(_final_weights(cut), _final_weights(full))
    assert [r["step"] for r in _step_rows(cut, "loss/policy")] == [1, 2, 3, 4]
    for a, b in zip(_step_rows(full, "loss/policy"), _step_rows(cut, "loss/policy")):
        assert a["reward/total"] == b["reward/total"] and a["rollout/tokens"] == b["rollout/tokens"]
    state = read_trainer_state(cut / "checkpoint-4")
    assert len(state["rng_ranks"]) == 2  # each process's sampling noise continues where it stopped
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])


def test_a_process_left_without_groups_still_joins_the_update(two):
    out, _ = two
    (row,) = _step_rows(out / "runs" / "grpo-dynamic", "loss/policy")
    # rank 1's groups never have a signal: after its one refill it trains on an empty row, rank 0 on its group
    assert row["rollout/refills"] == 1 and row["rollout/tokens"] == 4 * 8
    assert row["loss/grad_norm"] > 0 and math.isfinite(row["loss/policy"])


def test_ppo_runs_end_to_end_on_two_processes(two):
    out, _ = two
    run = out / "runs" / "ppo"
    (row,) = _step_rows(run, "loss/value")
    assert all(math.isfinite(row[k]) for k in ("loss/policy", "loss/value", "loss/kl", "value/mean", "ppo/kl_coef"))
    assert row["rollout/tokens"] > 0 and (run / "final" / "critic.pt").is_file()
    assert json.loads((run / "summary.json").read_text())["eval_after"]["n"] == 2


def _scorer_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("case", list(scenarios.RM_CASES))
def test_reward_model_steps_on_two_processes_equal_one_process(case, two, tiny_model_dir, tmp_path):
    from tinyr1.models.heads import build_scorer, load_scorer

    out, _ = two
    kind, job = scenarios.rm_job(case, tiny_model_dir, out, tmp_path)
    here = scenarios.rm_train(case, tiny_model_dir, out, tmp_path)
    there = out / "runs" / f"rm-{case}"
    torch.manual_seed(job.train.seed)  # the initial scorer, as training builds it
    initial, _ = build_scorer(job.model, job.lora)
    before = _scorer_weights(initial.merge_and_unload() if job.lora.rank else initial)
    _assert_same_weights(_scorer_weights(load_scorer(there, kind, device="cpu")[0]),
                         _scorer_weights(load_scorer(here, kind, device="cpu")[0]), before=before)
    a, b = [json.loads(l) for l in (there / "metrics.jsonl").read_text().splitlines()], \
        [json.loads(l) for l in (here / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [1, 2]  # one line per step: rank 1 wrote none
    loss = f"loss/{'bradley_terry' if 'bradley' in case else 'bce'}"
    for ra, rb in zip(a, b):  # the loss of the whole step, not of one process's share
        assert math.isclose(ra[loss], rb[loss], rel_tol=1e-5), (ra, rb)
        assert math.isclose(ra["loss/grad_norm"], rb["loss/grad_norm"], rel_tol=1e-4), (ra, rb)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (there, here))
    assert (sa["examples"], sa["items"], sa["steps"]) == (sb["examples"], sb["items"], sb["steps"])


def test_reward_model_cli_on_two_processes_prints_once_and_rank_one_writes_nothing(two):
    out, _ = two
    rank0 = json.loads((out / "writes-rank0.json").read_text())
    assert json.loads((out / "writes-rank1.json").read_text()) == []
    for name in [*(f"rm-{c}" for c in scenarios.RM_CASES), "rm-cli"]:
        assert any(f"/runs/{name}/.final.tmp" in w for w in rank0), name  # save_scorer's temporary folder, on rank 0
    assert json.loads((out / "runs" / "rm-cli" / "summary.json").read_text())["steps"] == 1
    stdout = (out / "stdout.txt").read_text()
    assert stdout.count("orm (bce) on 8 examples: 1 steps") == 1, stdout[-2000:]


def test_sharded_eval_gathers_every_problem_in_order(two, tiny_model_dir, tmp_path):
    out, results = two
    one = scenarios.sharded_eval(tiny_model_dir, out / "problems.jsonl", tmp_path)
    two_ = results["eval"]
    # greedy rows of the 5 problems in order, then their 2 samples each: as one process writes them
    assert two_["rows"] == one["rows"] and len(two_["rows"]) == 15
    assert two_["greedy"] == one["greedy"]
    for key in ("n", "correct", "accuracy", "parsed_rate", "mean_response_tokens"):
        assert two_["summary"][key] == one["summary"][key], key
    assert {"pass@1", "pass@2", "maj@2"} <= two_["summary"].keys()


# ----------------------------------------------------------------------------- FSDP2: sharded weights


@pytest.fixture(scope="module")
def one_fsdp2(two, tiny_model_dir, tmp_path_factory):
    """The FSDP2 scenario run here, on 1 process (whole weights), once per case."""
    out, _ = two
    done = {}

    def run(case: str) -> dict:
        if case not in done:
            done[case] = scenarios.fsdp2_run(case, tiny_model_dir, out / "problems.jsonl", tmp_path_factory.mktemp("one"))
        return done[case]

    return run


def _weights_file(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(ckpt / ("adapter_model.safetensors" if (ckpt / "adapter_config.json").is_file() else "model.safetensors"))


@pytest.mark.parametrize("case", list(scenarios.FSDP2_CASES))
def test_fsdp2_full_state_dict_gathers_the_unsharded_weights_on_every_process(case, two):
    _, results = two
    r = results[f"fsdp2/{case}"]
    assert r["sharded"] == [True, True]  # every parameter was a DTensor shard on both processes
    assert r["gathered_ok"] == [True, True]  # and both gathered exactly the weights before sharding, as plain tensors


@pytest.mark.parametrize("case", list(scenarios.FSDP2_CASES))
def test_fsdp2_checkpoint_holds_the_whole_weights_and_optimizer_state(case, two, one_fsdp2):
    _, results = two
    two_, one = results[f"fsdp2/{case}"], one_fsdp2(case)
    a, b = _weights_file(two_["checkpoint"]), _weights_file(one["checkpoint"])
    assert sorted(a) == sorted(b)  # the same keys (adapter keys only with LoRA; no untied lm_head)
    _assert_same_weights(a, b)
    sa, sb = (read_trainer_state(r["checkpoint"])["optimizer"] for r in (two_, one))
    assert sa["param_groups"] == sb["param_groups"] and sorted(sa["state"]) == sorted(sb["state"]) and sb["state"]
    for i, state in sb["state"].items():
        assert sorted(sa["state"][i]) == sorted(state)
        for key, value in state.items():  # whole tensors (a shard would have half the rows), plain and equal
            assert type(sa["state"][i][key]) is torch.Tensor and sa["state"][i][key].shape == value.shape, (i, key)
            torch.testing.assert_close(sa["state"][i][key], value, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("case", list(scenarios.FSDP2_CASES))
def test_fsdp2_resume_into_a_freshly_sharded_policy_continues_exactly(case, two, one_fsdp2):
    _, results = two
    r = results[f"fsdp2/{case}"]
    trained = [k for k in r["whole"] if "lora_" in k or case == "full"]
    # step 2 moves the weights far more than the tolerance, so equal results need the restored Adam moments
    assert max(float((r["straight"][k] - r["restored"][k]).abs().max()) for k in trained) > 1e-3
    for k in r["straight"]:
        torch.testing.assert_close(r["resumed"][k], r["straight"][k], rtol=1e-6, atol=1e-7, msg=lambda m: f"{k}: {m}")
    _assert_same_weights(r["straight"], one_fsdp2(case)["straight"])  # and the 1-process run's two steps


@pytest.mark.parametrize("case", list(scenarios.FSDP2_CASES))
def test_fsdp2_sampling_copy_gets_the_whole_merged_weights(case, two, tiny_model_dir):
    from tinyr1.rollout.policy_copy import SamplingCopy

    out, results = two
    r = results[f"fsdp2/{case}"]
    rank0, rank1 = r["copies"]
    # the same weights in an unsharded policy, refreshed in this process
    job = scenarios.make_job(tiny_model_dir, out / "problems.jsonl", out, **scenarios.FSDP2_CASES[case])
    policy, _ = scenarios.fsdp2_policy(job)
    policy.load_state_dict(r["straight"])
    here = SamplingCopy(policy, job.model, "float32").refresh(policy).state_dict()
    assert rank0.keys() == rank1.keys() == here.keys()
    for k in here:
        assert torch.equal(rank0[k], rank1[k]), k
        torch.testing.assert_close(rank0[k], here[k], rtol=1e-6, atol=1e-7, msg=lambda m: f"{k}: {m}")
    if case == "lora":  # the adapters were merged in: q_proj differs from its frozen base weight
        name = "model.layers.0.self_attn.q_proj"
        assert float((rank0[f"{name}.weight"] - r["whole"][f"base_model.model.{name}.base_layer.weight"]).abs().max()) > 1e-3
