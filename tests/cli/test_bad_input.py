"""Bad input, every command: one table of cases over train, eval, grade, report, rm, prm and push. Each
must exit with status 2, print one `tinyr1: error:` line naming the file, line or key (no
traceback), and leave every file already there untouched and create none.

A case is `(command line, text the error line must hold)`; `{tmp}` and the other `{names}` are
filled in from the files `bad_files` writes (a good problem file, a good config, and one file per
kind of damage).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tinyr1.cli import main
from tinyr1.config import RMTrainJob, TrainJob, to_dict

MATH = Path(__file__).resolve().parents[1] / "fixtures" / "MATH"
GOOD_ROWS = [{"question": f"Calculate {a} + 1.", "answer": str(a + 1)} for a in range(12)]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_model_dir):
    """Every file the cases name, written once: {name: path}."""
    tmp = tmp_path_factory.mktemp("bad-input")
    good = tmp / "problems.jsonl"
    good.write_text(_jsonl(GOOD_ROWS))
    files = {"tmp": tmp, "good": good, "model": tiny_model_dir}

    def write(name: str, content: str | bytes) -> Path:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        files[name.split(".")[0]] = path
        return path

    write("empty.jsonl", "")
    write("middle.jsonl", _jsonl(GOOD_ROWS[:3]) + '{"question": "1+1?", "answer": oops}\n' + _jsonl(GOOD_ROWS[3:]))
    write("fields.jsonl", _jsonl([{"q": "Calculate 1 + 1.", "a": "2"}]))
    write("latin1.jsonl", '{"question": "Calculate 1 + 1 in \u00e9t\u00e9.", "answer": "2"}\n'.encode("latin-1"))
    write("surrogate.jsonl", '{"question": "Calculate \\ud800 + 1.", "answer": "2", "response": "\\\\boxed{2}"}\n')
    write("graded.jsonl", _jsonl([{"response": "\\boxed{2}", "answer": "2"}] * 2))
    write("graded_middle.jsonl", _jsonl([{"response": "2", "answer": "2"}]) + "{not json}\n" + _jsonl([{"response": "2", "answer": "2"}]))
    write("graded_fields.jsonl", _jsonl([{"response": "2"}]))
    write("graded_latin1.jsonl", '{"response": "caf\u00e9 \\\\boxed{2}", "answer": "2"}\n'.encode("latin-1"))
    write("rm_good.jsonl", _jsonl([{"prompt": f"Calculate {a} + 1.", "completion": f"\\boxed{{{a + 1 + k}}}", "label": k == 0}
                                   for a in range(4) for k in range(2)]))
    write("rm_fields.jsonl", _jsonl([{"prompt": "p", "completion": "c", "label": "yes"}]))
    write("rm_middle.jsonl", _jsonl([{"prompt": "p", "completion": "c", "label": True}]) + "[1, 2]\n")
    write("rm_latin1.jsonl", '{"prompt": "\u00e9", "completion": "c", "label": true}\n'.encode("latin-1"))
    write("prm_fields.jsonl", _jsonl([{"prompt": "p", "completions": ["a", "b"], "labels": [True]}]))
    write("prm_middle.jsonl", _jsonl([{"prompt": "p", "completions": ["a"], "labels": [True]}]) + '{"prompt": \n')
    write("bench_latin1.json", '[{"problem": "caf\u00e9", "answer": "2"}]'.encode("latin-1"))
    write("bench_broken.json", '[{"problem": "1 + 1",\n "answer": }]')
    (tmp / "adir").mkdir()
    (tmp / "cfgdir.yaml").mkdir()
    files["adir"] = tmp / "adir"
    config = {"model": {"name": str(tiny_model_dir), "device": "cpu"}, "data": {"source": f"jsonl:{good}", "test_size": 2},
              "sampling": {"max_new_tokens": 4}, "run": {"output_dir": str(tmp / "runs"), "steps": 1, "eval_size": 2,
                                                         "progress": False}}
    files["config"] = write("config.yaml", yaml.safe_dump(config))
    write("unknown_key.yaml", yaml.safe_dump(config | {"grpo": {"colour": "red"}}))
    write("malformed.yaml", "model:\n  name: [unclosed\nrun: {steps: 1}\n")
    write("latin1_config.yaml", "run:\n  name: \u00e9t\u00e9\n".encode("latin-1"))
    # damaged models: weights cut in half, an adapter whose weights are cut, an adapter whose config is not JSON
    corrupt = shutil.copytree(tiny_model_dir, tmp / "corrupt_model")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    files["corrupt_model"] = corrupt
    adapter = _adapter(tiny_model_dir, tmp / "corrupt_adapter")
    data = (adapter / "adapter_model.safetensors").read_bytes()
    (adapter / "adapter_model.safetensors").write_bytes(data[:100])
    files["corrupt_adapter"] = adapter
    bad_config = _adapter(tiny_model_dir, tmp / "adapter_bad_config")
    (bad_config / "adapter_config.json").write_text('{"base_model_name_or_path": ')
    files["adapter_bad_config"] = bad_config
    (tmp / "garbage.gguf").write_bytes(b"not a gguf file at all" * 10)
    files["garbage"] = tmp / "garbage.gguf"
    # run folders: a policy run and a reward-model run (their config.yaml is all `--resume` reads first)
    for name, job in (("policy_run", TrainJob()), ("rm_run", RMTrainJob())):
        (tmp / name).mkdir()
        (tmp / name / "config.yaml").write_text(yaml.safe_dump(to_dict(job)))
        (tmp / name / "summary.json").write_text('{"eval_before": {"accuracy": 0.5}}\n')
        files[name] = tmp / name
    (tmp / "report_bad").mkdir()
    (tmp / "report_bad" / "config.yaml").write_bytes("algorithm: grpo\nrun: {name: \u00e9}\n".encode("latin-1"))
    (tmp / "report_bad" / "summary.json").write_text('{"eval_after": ')
    files["report_bad"] = tmp / "report_bad"
    return files


def _adapter(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(out)
    return out


TRAIN = ["train", "{config}"]
EVAL = ["eval", "--model={model}", "--data=jsonl:{good}", "--data.test_size=2", "--limit=2", "--sampling.max_new_tokens=4",
        "--out={tmp}/eval-out"]
BENCH = ["eval", "--model={model}", "--limit=2", "--out={tmp}/eval-out"]
RM = ["rm", "train", "--model={model}", "--out={tmp}/rm-out", "--train.progress=false"]
PRM = ["prm", "train", "--model={model}", "--out={tmp}/prm-out", "--train.progress=false"]

CASES = {
    # train: files
    "train-missing-file": (TRAIN + ["--data.source=jsonl:{tmp}/nope.jsonl"], "nope.jsonl does not exist"),
    "train-folder-not-file": (TRAIN + ["--data.source=jsonl:{adir}"], "adir is a folder"),
    "train-empty-file": (TRAIN + ["--data.source=jsonl:{empty}"], "empty.jsonl: the file holds no problems"),
    "train-malformed-line-in-the-middle": (TRAIN + ["--data.source=jsonl:{middle}"], "middle.jsonl:4: malformed JSON"),
    "train-wrong-fields": (TRAIN + ["--data.source=jsonl:{fields}"], "fields.jsonl:1: key 'question' is missing"),
    "train-non-utf8-data": (TRAIN + ["--data.source=jsonl:{latin1}"], "latin1.jsonl:1: not UTF-8 text"),
    "train-lone-surrogate": (TRAIN + ["--data.source=jsonl:{surrogate}"], "surrogate.jsonl:1: a string holds a lone surrogate"),
    "train-missing-config": (["train", "{tmp}/nope.yaml"], "nope.yaml: config file not found"),
    "train-config-is-a-folder": (["train", "{tmp}/cfgdir.yaml"], "cfgdir.yaml: config file not found (a folder)"),
    "train-non-utf8-config": (["train", "{latin1_config}"], "latin1_config.yaml: not UTF-8 text"),
    "train-malformed-yaml": (["train", "{malformed}"], "malformed.yaml:3: not valid YAML"),
    "train-unknown-key-in-file": (["train", "{unknown_key}"], "unknown_key.yaml: unknown config key 'grpo.colour'"),
    "train-unknown-key": (TRAIN + ["--grpo.colour=red"], "unknown config key 'grpo.colour'"),
    "train-wrong-type": (TRAIN + ["--optim.lr=fast"], "config key 'optim.lr': expected a number, got 'fast'"),
    "train-lr-zero": (TRAIN + ["--optim.lr=0"], "config key 'optim.lr': expected a number in (0, 1], got 0.0"),
    "train-lr-absurd": (TRAIN + ["--optim.lr=1e38"], "config key 'optim.lr': expected a number in (0, 1]"),
    "train-group-size-1": (TRAIN + ["--grpo.group_size=1"], "config key 'grpo.group_size': expected an integer >= 2"),
    "train-max-new-tokens-0": (TRAIN + ["--sampling.max_new_tokens=0"], "config key 'sampling.max_new_tokens'"),
    "train-temperature-0": (TRAIN + ["--sampling.temperature=0"], "config key 'sampling.temperature': expected a number > 0"),
    "train-run-name-escapes": (TRAIN + ["--run.name=../../x"], "config key 'run.name': expected a folder name inside"),
    "train-run-name-absolute": (TRAIN + ["--run.name={tmp}/abs"], "config key 'run.name'"),
    "train-no-problems-after-filtering": (TRAIN + ["--data.source=math:{math}", "--data.subjects=geometry", "--data.levels=[1]"],
                                          "no problems left in the train split"),
    "train-truncated-model": (TRAIN + ["--model.name={corrupt_model}"], "could not load it, a file there is missing, truncated"),
    "train-truncated-adapter": (TRAIN + ["--model.name={corrupt_adapter}"], "could not load it, a file there is missing, truncated"),
    "train-malformed-adapter-config": (TRAIN + ["--model.name={adapter_bad_config}"], "adapter_config.json: malformed"),
    "train-garbage-gguf": (TRAIN + ["--model.name={garbage}"], "garbage.gguf"),
    "train-missing-local-model": (TRAIN + ["--model.name={tmp}/runs_typo"], "not found"),
    "train-resume-a-reward-model-run": (["train", "--resume", "{rm_run}"], "holds a reward-model run; continue it with `tinyr1 rm"),
    "train-resume-nowhere": (["train", "--resume", "{tmp}/nowhere"], "no config.yaml there"),
    # eval
    "eval-missing-file": (EVAL[:2] + ["--data=jsonl:{tmp}/nope.jsonl"], "nope.jsonl does not exist"),
    "eval-malformed-line": (EVAL[:2] + ["--data=jsonl:{middle}", "--data.test_size=2"], "middle.jsonl:4: malformed JSON"),
    "eval-non-utf8-data": (EVAL[:2] + ["--data=jsonl:{latin1}"], "latin1.jsonl:1: not UTF-8 text"),
    "eval-lone-surrogate": (EVAL[:2] + ["--data=jsonl:{surrogate}"], "lone surrogate"),
    "eval-max-new-tokens-0": (EVAL + ["--sampling.max_new_tokens=0"], "config key 'sampling.max_new_tokens'"),
    "eval-max-new-tokens-negative": (EVAL + ["--sampling.max_new_tokens=-5"], "config key 'sampling.max_new_tokens'"),
    "eval-temperature-negative": (EVAL + ["--temperature=-1"], "config key 'sampling.temperature': expected a number >= 0"),
    "eval-top-p-0": (EVAL + ["--sampling.top_p=0"], "config key 'sampling.top_p'"),
    "eval-timeout-negative": (EVAL + ["--grading.timeout=-1"], "config key 'grading.timeout'"),
    "eval-batch-size-0": (EVAL + ["--sampling.batch_size=0"], "config key 'sampling.batch_size'"),
    "eval-few-shot-negative": (EVAL + ["--prompt.few_shot=-1"], "config key 'prompt.few_shot'"),
    "eval-unknown-key": (EVAL + ["--eval.colour=red"], "unknown config key 'eval.colour'"),
    "eval-out-is-a-run-folder": (EVAL[:-1] + ["--out={policy_run}"], "holds a training run (config.yaml)"),
    "eval-out-is-the-model": (EVAL[:-1] + ["--out={model}"], "holds a model (config.json)"),
    "eval-out-is-a-file": (EVAL[:-1] + ["--out={good}"], "a file; expected a folder"),
    "eval-truncated-model": (["eval", "--model={corrupt_model}"] + EVAL[2:], "could not load it"),
    "eval-bench-missing-file": (BENCH + ["--bench=gsm8k", "--data={tmp}/nope.jsonl"], "--bench gsm8k: {tmp}/nope.jsonl does not exist"),
    "eval-bench-non-utf8": (BENCH + ["--bench=math500", "--data={bench_latin1}"], "bench_latin1.json: not UTF-8 text"),
    "eval-bench-malformed-json": (BENCH + ["--bench=math500", "--data={bench_broken}"], "bench_broken.json:2: not valid JSON"),
    "eval-bench-folder-without-its-files": (BENCH + ["--bench=aime24", "--data={adir}"], "adir holds none of"),
    "eval-bench-unknown": (BENCH + ["--bench=mmlu"], "config key 'eval.bench': expected 'gsm8k'"),
    # push
    "push-missing-folder": (["push", "{tmp}/nowhere", "you/x", "--to-dir={tmp}/pushed"], "nowhere: no such run folder"),
    "push-not-a-run": (["push", "{adir}", "you/x", "--to-dir={tmp}/pushed"], "adir/summary.json: not found"),
    "push-unfinished-run": (["push", "{policy_run}", "you/x", "--to-dir={tmp}/pushed"], "policy_run/summary.json: key 'eval_before' is missing or lacks"),
    "push-bad-repo-id": (["push", "{policy_run}", "not a repo", "--to-dir={tmp}/pushed"], "REPO_ID 'not a repo': expected owner/name"),
    # grade
    "grade-missing-file": (["grade", "{tmp}/nope.jsonl"], "nope.jsonl: file not found"),
    "grade-folder-not-file": (["grade", "{adir}"], "adir: a folder, expected a JSON Lines file"),
    "grade-empty-file": (["grade", "{empty}"], "empty.jsonl: no records"),
    "grade-malformed-line-in-the-middle": (["grade", "{graded_middle}"], "graded_middle.jsonl:2: malformed JSON"),
    "grade-wrong-fields": (["grade", "{graded_fields}"], 'graded_fields.jsonl:1: missing key "answer"'),
    "grade-non-utf8": (["grade", "{graded_latin1}"], "graded_latin1.jsonl:1: not UTF-8 text"),
    "grade-lone-surrogate": (["grade", "{surrogate}"], "surrogate.jsonl:1: a string holds a lone surrogate"),
    "grade-out-is-the-input": (["grade", "{graded}", "--out={graded}"], "is the input file"),
    "grade-out-is-a-folder": (["grade", "{graded}", "--out={adir}"], "adir: a folder; expected the path of a file"),
    "grade-unknown-option": (["grade", "{graded}", "--colour=red"], "tinyr1 grade: unrecognized arguments: --colour=red"),
    "grade-bad-timeout": (["grade", "{graded}", "--timeout=-1"], "--timeout: expected a number of seconds > 0"),
    # report
    "report-missing-folder": (["report", "{tmp}/nowhere", "--out={tmp}/report"], "nowhere: no such run folder"),
    "report-not-a-run": (["report", "{adir}", "--out={tmp}/report"], "adir: not a training run folder"),
    "report-non-utf8-config": (["report", "{report_bad}", "--out={tmp}/report"], "report_bad/config.yaml: not UTF-8 text"),
    "report-out-is-a-file": (["report", "{policy_run}", "--out={good}"], "a file; expected a folder"),
    "report-unknown-option": (["report", "{policy_run}", "--colour"], "tinyr1 report: unrecognized arguments"),
    # rm (outcome reward model)
    "rm-missing-file": (RM + ["--data={tmp}/nope.jsonl"], "nope.jsonl: file not found"),
    "rm-folder-not-file": (RM + ["--data={adir}"], "adir: a folder"),
    "rm-empty-file": (RM + ["--data={empty}"], "empty.jsonl: no lines"),
    "rm-malformed-line-in-the-middle": (RM + ["--data={rm_middle}"], "rm_middle.jsonl:2: expected a JSON object, got list"),
    "rm-wrong-fields": (RM + ["--data={rm_fields}"], 'rm_fields.jsonl:1: key "label" must be true or false'),
    "rm-non-utf8": (RM + ["--data={rm_latin1}"], "rm_latin1.jsonl:1: not UTF-8 text"),
    "rm-unknown-key": (RM + ["--train.colour=red"], "unknown config key 'train.colour'"),
    "rm-wrong-type": (RM + ["--train.batch_size=two"], "config key 'train.batch_size': expected an integer"),
    "rm-lr-zero": (RM + ["--lr=0"], "config key 'optim.lr'"),
    "rm-truncated-model": (RM + ["--data={rm_good}", "--model={corrupt_model}"], "could not load it, a file there is missing"),
    "rm-resume-a-policy-run": (["rm", "train", "--resume", "{policy_run}"], "holds a `tinyr1 train` run; continue it with `tinyr1 train"),
    "rm-collect-out-is-a-folder": (["rm", "collect", "--model={model}", "--data=jsonl:{good}", "--out={adir}"], "collect.out"),
    "rm-eval-out-is-a-run": (["rm", "eval", "--model={rm_run}", "--data={graded}", "--out={policy_run}"], "eval.out"),
    # prm (process reward model)
    "prm-missing-file": (PRM + ["--data={tmp}/nope.jsonl"], "nope.jsonl: file not found"),
    "prm-malformed-line-in-the-middle": (PRM + ["--data={prm_middle}"], "prm_middle.jsonl:2: malformed JSON"),
    "prm-wrong-fields": (PRM + ["--data={prm_fields}"], "prm_fields.jsonl:1: 2 completions but 1 labels"),
    "prm-non-utf8": (PRM + ["--data={rm_latin1}"], "rm_latin1.jsonl:1: not UTF-8 text"),
    "prm-label-out-is-the-input": (["prm", "label", "--model={model}", "--input={graded}", "--out={graded}"], "is the input file"),
    "prm-label-unknown-key": (["prm", "label", "--label.colour=red"], "unknown config key 'label.colour'"),
}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, bad_files, capsys, monkeypatch):
    args, message = CASES[case]
    names = {k: str(v) for k, v in bad_files.items()} | {"math": str(MATH)}
    args = [a.format(**names) for a in args]
    monkeypatch.chdir(bad_files["tmp"])  # default outputs (runs/...) would land here
    before = _snapshot(bad_files["tmp"])
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tinyr1:")]  # beside transformers' loading bars
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("tinyr1: error: "), err[-2000:]
    assert message.format(**names) in lines[0]
    assert _snapshot(bad_files["tmp"]) == before


def test_an_evaluation_folder_holding_only_test_jsonl_serves_split_test(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "GSM8K").mkdir()
    (tmp_path / "GSM8K" / "test.jsonl").write_text(_jsonl([{"question": q["question"], "answer": f"so #### {q['answer']}"}
                                                           for q in GOOD_ROWS]))
    code = main(["eval", f"--model={tiny_model_dir}", f"--data=gsm8k:{tmp_path / 'GSM8K'}", "--split=test", "--limit=2",
                 "--sampling.max_new_tokens=4", f"--out={tmp_path / 'out'}"])
    assert code == 0 and json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 2
