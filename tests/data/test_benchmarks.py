"""Benchmark presets: each dataset's published files read offline into exact Problems, the hub
path through a fake `datasets`, bad files named by file and line, and the preset settings.

Fixtures: tests/fixtures/benchmarks/ (JSON lines as published); parquet files are written here
with the published columns (pyarrow), so their content stays readable in this file.

Run: .venv/bin/python -m pytest tests/data/test_benchmarks.py -q
"""

from __future__ import annotations

import json
import shutil
import sys
import types

import pytest

from tinyr1.data.benchmarks import BENCHMARKS, load_benchmark, preset
from tinyr1.errors import UserError

from .conftest import FIXTURES

BENCH = FIXTURES / "benchmarks"
TOM = ("Tom's hens lay 20 eggs a day. He eats 4 and gives 7 to his sister. He sells the rest for $2 each. "
       "How many dollars does he make a day?")


def _parquet(path, columns: dict, types_: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(name, types_[name]) for name in columns])
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


# ----------------------------------------------------------------------------- local files, as published


def test_gsm8k_from_its_test_jsonl_or_a_seed_layout_folder():
    from_file = load_benchmark("gsm8k", BENCH / "gsm8k" / "test.jsonl")
    assert load_benchmark("gsm8k", BENCH / "gsm8k") == from_file
    assert [(p.id, p.answer) for p in from_file] == [("gsm8k/test/1", "18"), ("gsm8k/test/2", "3")]
    assert from_file[0].question == TOM
    assert from_file[1].solution.endswith("#### 3") and from_file[1].meta == {"source": "gsm8k", "benchmark": "gsm8k"}


def test_gsm8k_from_the_hub_parquet_layout_matches_the_jsonl(tmp_path):
    import pyarrow as pa

    rows = [json.loads(line) for line in (BENCH / "gsm8k" / "test.jsonl").read_text().splitlines()]
    _parquet(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet",
             {"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]},
             {"question": pa.string(), "answer": pa.string()})
    assert load_benchmark("gsm8k", tmp_path / "gsm8k") == load_benchmark("gsm8k", BENCH / "gsm8k")


def test_math500_keeps_its_published_answers_ids_and_levels():
    first, second = load_benchmark("math500", BENCH / "math500")
    assert first.id == "math500/precalculus/807"
    assert first.question.startswith("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.")
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.meta == {"source": "math", "subject": "precalculus", "type": "Precalculus", "level": 2,
                          "benchmark": "math500", "unique_id": "test/precalculus/807.json"}
    assert (second.id, second.answer, second.meta["level"]) == ("math500/algebra/2584", "\\frac{14}{3}", 3)


def test_aime24_from_maxwell_jia_parquet_with_integer_answers(tmp_path):
    import pyarrow as pa

    path = _parquet(tmp_path / "aime_2024_problems.parquet",
                    {"ID": ["2024-II-4", "2024-I-1"], "Problem": ["Let $x,y$ and $z$ ...", "Every morning Aya ..."],
                     "Solution": ["... so $m+n=33$", "... $204$"], "Answer": [33, 204]},
                    {"ID": pa.string(), "Problem": pa.string(), "Solution": pa.string(), "Answer": pa.int64()})
    problems = load_benchmark("aime24", tmp_path)  # the folder: its published file is found by name
    assert load_benchmark("aime24", path) == problems
    assert [(p.id, p.question, p.answer, p.solution) for p in problems] == [
        ("aime24/2024-II-4", "Let $x,y$ and $z$ ...", "33", "... so $m+n=33$"),
        ("aime24/2024-I-1", "Every morning Aya ...", "204", "... $204$"),
    ]


def test_aime24_from_huggingfaceh4_parquet_takes_ids_from_the_aops_url(tmp_path):
    import pyarrow as pa

    url = "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_{}"
    _parquet(tmp_path / "data" / "train-00000-of-00001.parquet",
             {"id": [60, 61], "problem": ["Every morning Aya ...", "There exist real numbers $x$ and $y$ ..."],
              "solution": ["$\\boxed{204}$", "$\\boxed{025}$"], "answer": ["204", "025"],
              "url": [url.format(1), url.format(2)], "year": ["2024", "2024"]},
             {"id": pa.int64(), "problem": pa.string(), "solution": pa.string(), "answer": pa.string(),
              "url": pa.string(), "year": pa.string()})
    problems = load_benchmark("aime24", tmp_path)
    assert [(p.id, p.answer) for p in problems] == [("aime24/2024-I-1", "204"), ("aime24/2024-I-2", "25")]
    assert problems[1].meta["published_answer"] == "025"  # leading zero dropped, the original kept


def test_aime25_reads_both_opencompass_files_in_exam_order():
    problems = load_benchmark("aime25", BENCH / "aime25")
    assert [(p.id, p.answer) for p in problems] == [("aime25/2025-I-1", "70"), ("aime25/2025-I-2", "588"),
                                                   ("aime25/2025-II-1", "468")]
    assert problems[0].question == "Find the sum of all integer bases $b>9$ for which $17_{b}$ is a divisor of $97_{b}$."
    assert problems[0].solution is None and problems[0].meta == {"source": "aime25", "benchmark": "aime25"}
    assert load_benchmark("aime25", BENCH / "aime25" / "aime2025-II.jsonl")[0].id == "aime25/2025-II-1"


def test_aime_answer_in_degrees_becomes_its_integer(tmp_path):
    path = tmp_path / "aime2025-II.jsonl"
    path.write_text('{"question": "Find the angle.", "answer": "336^\\\\circ"}\n')
    (problem,) = load_benchmark("aime25", path)
    assert (problem.answer, problem.meta["published_answer"]) == ("336", "336^\\circ")


# ----------------------------------------------------------------------------- bad files


def test_bad_records_name_the_file_and_line(tmp_path):
    folder = tmp_path / "aime25"
    shutil.copytree(BENCH / "aime25", folder)
    bad = folder / "aime2025-II.jsonl"
    bad.write_text(bad.read_text() + '{"prompt": "Find N.", "answer": "7"}\n')
    with pytest.raises(UserError, match=r"aime2025-II\.jsonl:2: no non-empty 'problem' / 'Problem' / 'question' key; "
                                        r"this record has keys \['answer', 'prompt'\]"):
        load_benchmark("aime25", folder)
    bad.write_text('{"question": "Find N.", "answer": "seventy"}\n')
    with pytest.raises(UserError, match=r"aime2025-II\.jsonl:1: the answer 'seventy' is not an integer from 0 to 999"):
        load_benchmark("aime25", folder)
    bad.write_text('{"question": "Find N.", "answer": "7"}\n\n{"question": "oops"\n')
    with pytest.raises(UserError, match=r"aime2025-II\.jsonl:3: malformed JSON"):
        load_benchmark("aime25", folder)


def test_bad_gsm8k_and_math500_records_name_the_file_and_line(tmp_path):
    gsm = tmp_path / "test.jsonl"
    gsm.write_text('{"question": "How many?", "answer": "It is 3."}\n')
    with pytest.raises(UserError, match=r"test\.jsonl:1: key 'answer' has no final answer after '#### '"):
        load_benchmark("gsm8k", gsm)
    math500 = tmp_path / "math500.jsonl"
    record = json.loads((BENCH / "math500" / "test.jsonl").read_text().splitlines()[0])
    math500.write_text(json.dumps(record) + "\n" + json.dumps({k: v for k, v in record.items() if k != "answer"}) + "\n")
    with pytest.raises(UserError, match=r"math500\.jsonl:2: no non-empty 'answer' key"):
        load_benchmark("math500", math500)


def test_bad_parquet_row_names_the_row(tmp_path):
    import pyarrow as pa

    path = _parquet(tmp_path / "aime_2024_problems.parquet", {"ID": ["2024-I-1", "2024-I-2"], "Problem": ["p1", ""],
                    "Answer": [1, 2]}, {"ID": pa.string(), "Problem": pa.string(), "Answer": pa.int64()})
    with pytest.raises(UserError, match=r"aime_2024_problems\.parquet \(row 1\): no non-empty 'problem'"):
        load_benchmark("aime24", path)
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(UserError, match=r"broken\.parquet: not a readable parquet file"):
        load_benchmark("aime24", tmp_path / "broken.parquet")


def test_unknown_bench_missing_path_and_folder_without_its_files(tmp_path):
    with pytest.raises(UserError, match=r"eval\.bench: unknown benchmark 'aime23'; known: gsm8k, math500, aime24, aime25"):
        load_benchmark("aime23", tmp_path)
    with pytest.raises(UserError, match=r"--bench math500: \./nowhere does not exist"):
        load_benchmark("math500", "./nowhere")
    with pytest.raises(UserError, match=r"--bench math500: .* holds none of test\.jsonl, data/test-\*\.parquet"):
        load_benchmark("math500", tmp_path)


# ----------------------------------------------------------------------------- the hub


def test_hub_reads_each_config_in_turn_and_names_rows(monkeypatch):
    seen = []

    def load_dataset(path, name=None, split=None):
        seen.append((path, name, split))
        return [{"question": f"{name} problem {i}", "answer": str(i)} for i in (1, 2)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = load_benchmark("aime25")  # the default hub id
    assert seen == [("opencompass/AIME2025", "AIME2025-I", "test"), ("opencompass/AIME2025", "AIME2025-II", "test")]
    assert [p.id for p in problems] == ["aime25/2025-I-1", "aime25/2025-I-2", "aime25/2025-II-1", "aime25/2025-II-2"]
    assert problems[2].question == "AIME2025-II problem 1"


def test_hub_unreachable_says_how_to_pass_local_files(monkeypatch):
    def load_dataset(path, name=None, split=None):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(UserError, match=r"--bench math500: could not read HuggingFaceH4/MATH-500 .*Offline\? Pass the "
                                        r"benchmark's files as published, e\.g\. --bench math500 --data\.source="):
        load_benchmark("math500")


# ----------------------------------------------------------------------------- presets


def test_presets_give_the_published_prompt_strict_grading_and_sampling():
    boxed = "Please reason step by step, and put your final answer within \\boxed{}."
    assert preset("math500") == {
        "hub_id": "HuggingFaceH4/MATH-500", "style": "boxed", "instruction": boxed, "system_prompt": None,
        "few_shot": 0, "fallback": False, "samples": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 2048,
        "metric": "pass@1 (greedy)",
    }
    aime = preset("aime25")
    assert (aime["samples"], aime["temperature"], aime["top_p"], aime["fallback"]) == (64, 0.6, 0.95, False)
    assert aime["metric"] == "avg@64 (pass@1 from 64 samples)"
    assert set(BENCHMARKS) == {"gsm8k", "math500", "aime24", "aime25"}


def test_strict_grading_needs_the_box():
    from tinyr1.rewards.answers import grade

    p = preset("gsm8k")
    assert grade("She makes $\\boxed{18}$ a day.", "18", style=p["style"], fallback=p["fallback"]).correct
    assert not grade("She makes 18 dollars a day.", "18", style=p["style"], fallback=p["fallback"]).correct
