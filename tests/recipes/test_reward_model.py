"""ORM and PRM training on a tiny model: parameters change, the loss falls on a toy set; the saved
folder loads as a reward function; Math-Shepherd labels by hand and across an interrupted run."""

import json

import pytest
import torch

from tinyr1.config import load_config
from tinyr1.errors import UserError
from tinyr1.models.heads import build_scorer, load_scorer
from tinyr1.recipes import rm_data
from tinyr1.recipes.reward_model import dataset_loss, orm_examples, preference_pairs, prm_examples, train_reward_model
from tinyr1.rm_config import PRMLabelJob, RMTrainJob
from tinyr1.types import Problem


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def responses_file(tmp_path):
    """Two responses per problem, one right and one wrong (what `rm collect` writes)."""
    rows = []
    for a in range(1, 5):
        for k, (b, ok) in enumerate([(a + 1, True), (a + 2, False)]):
            rows.append({"id": f"q{a}#{k}", "problem_id": f"q{a}", "prompt": f"Calculate {a} + 1.", "answer": str(a + 1),
                         "completion": f"{a} + 1 = {b}\nThe answer is \\boxed{{{b}}}.", "extracted": str(b), "label": ok})
    return _write(tmp_path / "responses.jsonl", rows)


@pytest.fixture
def steps_file(tmp_path):
    rows = [{"prompt": f"Calculate {a} + 1.", "completions": [f"{a} + 1 = {a + 1 + w}", f"The answer is {a + 1 + w}."],
             "labels": [not w, not w], "soft_labels": [0.5 if w else 1.0, 0.0 if w else 1.0]} for a in range(1, 5) for w in (0, 1)]
    return _write(tmp_path / "steps.jsonl", rows)


def _job(tiny_model_dir, data, out, **train):
    lora = train.pop("lora_rank", 0)
    return load_config(RMTrainJob, None, {
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "lora": {"rank": lora, "alpha": 2 * lora},
        "optim": {"lr": train.pop("lr", 1e-3), "micro_batch_size": 4},
        "train": {"data": str(data), "out": str(out), "epochs": 50, "max_steps": 3, "batch_size": 8, "progress": False, **train}})


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind, lora_rank, extra", [
    ("orm", 0, {}), ("orm", 4, {"objective": "bradley_terry", "lr": 1e-2}), ("prm", 0, {}), ("prm", 4, {"target": "soft", "lr": 1e-2}),
], ids=["orm-full-bce", "orm-lora-bradley-terry", "prm-full-hard", "prm-lora-soft"])
def test_training_changes_the_weights_and_lowers_the_loss(tiny_model_dir, responses_file, steps_file, tmp_path, kind, lora_rank, extra):
    data = responses_file if kind == "orm" else steps_file
    job = _job(tiny_model_dir, data, tmp_path / kind, lora_rank=lora_rank, **extra)
    examples = orm_examples(data) if kind == "orm" else prm_examples(data, soft=job.train.target == "soft")
    torch.manual_seed(job.train.seed)  # the same initial scorer as training builds
    initial, tok = build_scorer(job.model, job.lora)
    loss_before, before = dataset_loss(initial, tok, examples), _weights(initial.merge_and_unload() if lora_rank else initial)
    summary = train_reward_model(job, kind)
    assert summary["steps"] == 3 and summary["kind"] == kind
    model, tok, meta = load_scorer(tmp_path / kind, kind, device="cpu")
    after = _weights(model)
    assert after.keys() == before.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert "score.weight" in changed and "score.bias" in changed
    if lora_rank == 0:
        assert changed == set(before)  # full fine-tuning: every weight moved
    else:
        assert any("q_proj" in n for n in changed)  # the merged LoRA deltas moved the backbone
    assert dataset_loss(model, tok, examples) < loss_before
    lines = (tmp_path / kind / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3]


def test_a_saved_reward_model_is_refused_as_the_other_kind_or_overwritten(tiny_model_dir, responses_file, tmp_path):
    job = _job(tiny_model_dir, responses_file, tmp_path / "rm", max_steps=1)
    train_reward_model(job, "orm")
    with pytest.raises(UserError, match="is a 'orm' reward model; expected a prm"):
        load_scorer(tmp_path / "rm", "prm")
    with pytest.raises(UserError, match="already holds a reward model"):
        train_reward_model(job, "orm")


def test_reward_functions_read_the_saved_models(tiny_model_dir, responses_file, steps_file, tmp_path):
    from tinyr1.rewards.orm import OutcomeRewardModel
    from tinyr1.rewards.prm import ProcessRewardModel, process_reward_fn

    train_reward_model(_job(tiny_model_dir, responses_file, tmp_path / "rm", max_steps=1), "orm")
    train_reward_model(_job(tiny_model_dir, steps_file, tmp_path / "prm", max_steps=1), "prm")
    p = Problem("1", "Calculate 3 + 4.", "7")
    orm = OutcomeRewardModel(str(tmp_path / "rm"), device="cpu")
    scores = orm([p, p], ["3 + 4 = 7", "3 + 4 = 8"])
    logits = orm.logits([p.question] * 2, ["3 + 4 = 7", "3 + 4 = 8"])
    assert scores == pytest.approx(torch.sigmoid(torch.tensor(logits)).tolist())
    assert all(0 < s < 1 for s in scores)
    prm = ProcessRewardModel(str(tmp_path / "prm"), device="cpu")
    steps = prm([p, p], ["3 + 4 = 7\nso 7", ""], mode="lines")
    probs = prm.probabilities([p.question], [["3 + 4 = 7", "so 7"]])[0]
    assert len(steps[0]) == 2 and steps[1] == []
    assert steps[0] == pytest.approx([2 * q - 1 for q in probs])  # 2 P(ok) - 1, in [-1, 1]
    assert process_reward_fn(f"prm:{tmp_path / 'prm'}", "cpu") is process_reward_fn(f"prm:{tmp_path / 'prm'}", "cpu")  # loaded once


def test_bradley_terry_pairs_stay_within_a_problem(responses_file):
    import random

    examples = orm_examples(responses_file)
    pairs = preference_pairs(examples, max_pairs=16, rng=random.Random(0))
    assert sorted(pairs) == [(0, 1), (2, 3), (4, 5), (6, 7)]  # (right, wrong) of q1 .. q4


# ----------------------------------------------------------------------------- prm label


def _label_job(tiny_model_dir, solutions, out, **label):
    return load_config(PRMLabelJob, None, {
        "model": {"name": str(tiny_model_dir), "device": "cpu"}, "sampling": {"max_new_tokens": 6, "batch_size": 64},
        "label": {"input": str(solutions), "out": str(out), "completions": 2, "chunk": 2, "progress": False, **label}})


def test_math_shepherd_labels_from_canned_continuations(tiny_model_dir, tmp_path, monkeypatch):
    from tinyr1.rollout import sampler

    solution = {"id": "s1", "prompt": "Calculate 3 + 4.", "answer": "7",
                "completion": "3 + 4 = 8\nCheck: 3 + 4 = 7\nThe answer is \\boxed{8}."}
    seen = {}

    def canned(model, tokenizer, prompts, params, **_):
        seen["prompts"] = prompts
        # prefix 1 ("3 + 4 = 8"): one of two continuations reaches 7; prefix 2 (".. = 7"): both do
        texts = [" so \\boxed{7}", " so \\boxed{8}", " so \\boxed{7}", " \\boxed{7}"]
        return sampler.Samples([[1]] * len(prompts), [[1]] * len(texts), texts, [True] * len(texts), params.n)

    monkeypatch.setattr(sampler, "sample", canned)
    out = tmp_path / "steps.jsonl"
    summary = rm_data.label(_label_job(tiny_model_dir, _write(tmp_path / "s.jsonl", [solution]), out))
    (line,) = [json.loads(l) for l in out.read_text().splitlines()]
    assert line["completions"] == ["3 + 4 = 8", "Check: 3 + 4 = 7", "The answer is \\boxed{8}."]
    assert line["soft_labels"] == [0.5, 1.0, 0.0]  # the last step is the response's own grade (8: wrong)
    assert line["labels"] == [True, True, False]
    assert len(seen["prompts"]) == 2 and seen["prompts"][0].endswith("assistant\n3 + 4 = 8")
    assert seen["prompts"][1].endswith("assistant\n3 + 4 = 8\nCheck: 3 + 4 = 7")
    assert summary["steps"] == 3 and summary["new"] == 1


def test_an_interrupted_labeller_resumes_without_duplicates_and_gives_the_same_labels(tiny_model_dir, tmp_path, monkeypatch):
    solutions = [{"id": f"s{i}", "prompt": f"Calculate {i} + 1.", "answer": str(i + 1),
                  "completion": f"{i} + 1 = {i + 1}\nSo the answer is {i + 1}."} for i in range(5)]
    src = _write(tmp_path / "s.jsonl", solutions)
    whole = tmp_path / "whole.jsonl"
    rm_data.label(_label_job(tiny_model_dir, src, whole))

    cut = tmp_path / "cut.jsonl"
    real, calls = rm_data.label_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the second chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(rm_data, "label_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rm_data.label(_label_job(tiny_model_dir, src, cut))
    monkeypatch.setattr(rm_data, "label_chunk", real)
    assert [json.loads(l)["id"] for l in cut.read_text().splitlines()] == ["s0", "s1"]  # the first chunk survived
    with cut.open("a") as f:
        f.write('{"id": "s2", "prompt": "Calc')  # and a crash mid-line left half a line
    summary = rm_data.label(_label_job(tiny_model_dir, src, cut))
    assert summary["skipped_done"] == 2 and summary["new"] == 3
    ids = [json.loads(l)["id"] for l in cut.read_text().splitlines()]
    assert ids == ["s0", "s1", "s2", "s3", "s4"]  # no duplicates, the partial line gone
    assert cut.read_text() == whole.read_text()  # chunk i samples with seed + i: the same labels
    assert rm_data.label(_label_job(tiny_model_dir, src, cut))["new"] == 0  # a third run has nothing to do


def test_labeller_input_errors_name_the_line(tiny_model_dir, tmp_path):
    bad = _write(tmp_path / "s.jsonl", [{"id": "a", "prompt": "p", "completion": "c", "answer": "1"},
                                        {"id": "a", "prompt": "p", "completion": "c", "answer": "1"}])
    with pytest.raises(UserError, match=r"s\.jsonl:2: id 'a' already used on line 1"):
        rm_data.label(_label_job(tiny_model_dir, bad, tmp_path / "o.jsonl"))
