"""`tinyr1 rm ...` and `tinyr1 prm ...` as a user runs them: files written, and exit status 2 with one
clear line (no traceback) on bad input."""

import json

import pytest

from tinyr1.cli import main


@pytest.fixture
def files(tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(
        json.dumps({"id": f"q{a}#{k}", "problem_id": f"q{a}", "prompt": f"Calculate {a} + 1.", "answer": str(a + 1),
                    "completion": f"{a} + 1 = {a + 1 + k}\nThe answer is \\boxed{{{a + 1 + k}}}.", "extracted": str(a + 1 + k),
                    "label": k == 0}) + "\n" for a in range(3) for k in range(2)))
    return tmp_path, responses


def test_rm_and_prm_commands_end_to_end(tiny_model_dir, files, capsys):
    tmp, responses = files
    model = f"--model={tiny_model_dir}"
    problems = tmp / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Calculate {a} + 2.", "answer": a + 2}) + "\n" for a in range(6)))
    assert main(["rm", "collect", model, "--data", f"jsonl:{problems}", "--data.test_size=2",
                 "--limit", "2", "--samples", "2", "--sampling.max_new_tokens=4", f"--out={tmp / 'collected.jsonl'}"]) == 0
    rows = [json.loads(l) for l in (tmp / "collected.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"id", "problem_id", "prompt", "completion", "answer", "extracted", "label"} <= rows[0].keys()
    assert main(["rm", "train", model, f"--data={responses}", f"--out={tmp / 'rm'}", "--max-steps=2", "--train.progress=false"]) == 0
    assert main(["rm", "eval", f"--model={tmp / 'rm'}", f"--data={responses}"]) == 0
    summary = json.loads((tmp / "rm" / "eval" / "summary.json").read_text())
    assert summary["pass@1"] == 0.5 and summary["pass@2"] == 1.0 and summary["samples_per_problem"] == 2
    assert {"auc", "best_of_1", "best_of_2", "majority_of_2"} <= summary.keys()
    assert main(["prm", "label", model, f"--input={responses}", f"--out={tmp / 'steps.jsonl'}", "--completions=2",
                 "--sampling.max_new_tokens=4", "--label.progress=false"]) == 0
    steps = [json.loads(l) for l in (tmp / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 6 and all(len(s["labels"]) == len(s["completions"]) == len(s["soft_labels"]) == 2 for s in steps)
    assert main(["prm", "train", model, f"--data={tmp / 'steps.jsonl'}", f"--out={tmp / 'prm'}", "--max-steps=1", "--train.progress=false"]) == 0
    assert main(["prm", "eval", f"--model={tmp / 'prm'}", f"--data={responses}", f"--steps={tmp / 'steps.jsonl'}"]) == 0
    summary = json.loads((tmp / "prm" / "eval" / "summary.json").read_text())
    assert {"step_auc", "step_f1_correct", "step_f1_wrong", "min_best_of_2", "product_best_of_2", "last_best_of_2"} <= summary.keys()
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "rm collect: 100%" in captured.err and "scoring: 100%" in captured.err  # progress bars on the long commands


@pytest.mark.parametrize("args, message", [
    (["rm", "train", "--data=/no/such.jsonl"], "/no/such.jsonl: file not found"),
    (["rm", "train", "--train.colour=red"], "unknown config key 'train.colour'"),
    (["rm", "train", "--objective=hinge"], "config key 'train.objective': 'hinge' is not allowed"),
    (["rm", "eval", "--model=/no/such/rm", "--data={responses}"], "config key 'eval.reward_model': reward model '/no/such/rm' not found"),
    (["prm", "label", "--input=/no/such.jsonl"], "/no/such.jsonl: file not found"),
    (["prm", "label", "--completions=0"], "config key 'label.completions': expected an integer >= 1, got 0"),
    (["prm", "eval"], "prm eval needs eval.data"),
    (["rm", "eval"], "rm eval needs eval.data (--data)"),
    (["rm", "frobnicate"], "unknown command 'tinyr1 rm frobnicate'"),
    (["rm", "collect", "missing.yaml"], "missing.yaml: config file not found"),
    (["train", "--reward.weights.orm:/no/such/rm-1.0=0.5"], "config key 'reward.weights.orm:/no/such/rm-1.0': reward model '/no/such/rm-1.0' not found"),
    (["train", "--reward.process=prm:/no/such"], "config key 'reward.process': reward model '/no/such' not found"),
])
def test_bad_input_exits_2_with_one_clear_line(files, args, message, capsys):
    args = [a.format(responses=files[1]) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "q", "completion": oops}', "malformed JSON"),
    ('{"prompt": "q", "completion": "a"}', 'key "label" must be true or false'),
    ('["a list"]', "expected a JSON object"),
])
def test_a_bad_training_line_is_named_by_file_and_line(tmp_path, line, message, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "q", "completion": "a", "label": true}\n' + line + "\n")
    assert main(["rm", "train", f"--data={path}", f"--out={tmp_path / 'rm'}"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: " in err and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rm").exists()  # checked before any model loads or anything is written


@pytest.mark.parametrize("line, message", [
    ({"prompt": "q", "completions": ["a", "b"], "labels": [True]}, "2 completions but 1 labels"),
    ({"prompt": "q", "completions": ["a"], "labels": ["yes"]}, 'key "labels" must be a list of true/false'),
    ({"prompt": "q", "completions": ["a"], "labels": [True], "soft_labels": [1.5]}, 'key "soft_labels" must be a list of numbers in [0, 1]'),
])
def test_a_bad_stepwise_line_is_named(tmp_path, line, message, capsys):
    path = tmp_path / "steps.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert main(["prm", "train", f"--data={path}", f"--out={tmp_path / 'prm'}"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: " in err and message in err


def test_a_training_config_file_lends_its_sections_and_typos_still_fail(tmp_path, capsys):
    from tinyr1.cli.rm import load_rm_job
    from tinyr1.config import RMCollectJob

    cfg = tmp_path / "train.yaml"
    cfg.write_text("algorithm: grpo\nmodel: {name: m}\ndata: {source: 'synthetic:basic_arithmetic', size: 10}\n"
                   "reward: {weights: {correctness: 1.0}}\ngrpo: {group_size: 4}\n")
    job = load_rm_job(RMCollectJob, [str(cfg), "--samples=3"], {"samples": "collect.samples"})
    assert job.model.name == "m" and job.data.size == 10 and job.collect.samples == 3
    cfg.write_text("modle: {name: m}\n")
    assert main(["rm", "collect", str(cfg)]) == 2
    assert "unknown config key 'modle'" in capsys.readouterr().err


def test_help_lists_every_key_with_its_doc(capsys):
    assert main(["rm", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--train.objective='bce'" in out and "bradley_terry" in out and "--lora.rank=32" in out
    assert main(["prm", "--help"]) == 0
    assert "tinyr1 prm label" in capsys.readouterr().out


@pytest.mark.parametrize("rank", [0, 1])
def test_under_a_launcher_only_rank_zero_runs_collect_label_and_eval(files, monkeypatch, capsys, rank):
    from tinyr1.cli import rm as cli_rm

    tmp, responses = files
    ran = []
    job_type, aliases, _ = cli_rm.COMMANDS["rm"]["eval"]
    monkeypatch.setitem(cli_rm.COMMANDS["rm"], "eval", (job_type, aliases, lambda job: ran.append("orm") or "scored"))
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", str(rank))
    assert main(["rm", "eval", f"--model={tmp / 'rm'}", f"--data={responses}"]) == 0
    out = capsys.readouterr().out
    if rank == 0:  # rank 0 runs it alone, as one plain process, and says so
        assert ran == ["orm"] and "runs on one process (rank 0); the other 2 launched processes exit" in out and "scored" in out
    else:  # the others neither run nor print
        assert ran == [] and out == ""


def test_rm_train_resume_continues_the_saved_run(tiny_model_dir, files, capsys):
    tmp, responses = files
    out = tmp / "rm-resume"
    assert main(["rm", "train", f"--model={tiny_model_dir}", f"--data={responses}", f"--out={out}", "--epochs=5", "--max-steps=2",
                 "--train.save_every=1", "--train.progress=false"]) == 0
    assert main(["rm", "train", "--resume", str(out), "--max-steps=3"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert (out / "final" / "tinyr1_reward_model.json").is_file() and "3 steps" in capsys.readouterr().out
    assert main(["prm", "train", "--resume", str(tmp / "nowhere")]) == 2
    assert "no config.yaml there" in capsys.readouterr().err
