"""Benchmark presets for evaluation: `--bench gsm8k | math500 | aime24 | aime25`.

One table, `BENCHMARKS`, says for each benchmark where its problems come from, how a record
becomes a `Problem`, the prompt it is usually reported with, strict grading, and the usual
sampling settings. `load_benchmark(name, location)` reads the problems; `preset(name)` returns
the settings as plain values for config keys (proposed: `eval.bench`, `prompt.style`,
`prompt.instruction`, `prompt.few_shot`, `grading.fallback`, `eval.samples`,
`eval.temperature`, `sampling.top_p`, `sampling.max_new_tokens`).

    problems = load_benchmark("math500", "data/MATH-500/test.jsonl")   # offline, the file as published
    problems = load_benchmark("aime25")                                 # the hub, when online

Sources (`location`: a local file or folder in the dataset's own published format; an
`owner/name` that is not a local path is read from the hub with `datasets`; None = the default
hub id):

| bench   | default hub id (config, split)                    | local files as published                           |
|---------|---------------------------------------------------|----------------------------------------------------|
| gsm8k   | openai/gsm8k (main, test)                         | test.jsonl (GitHub, or a seed-layout folder), main/test-*.parquet |
| math500 | HuggingFaceH4/MATH-500 (test)                     | test.jsonl                                         |
| aime24  | HuggingFaceH4/aime_2024 (train); also Maxwell-Jia/AIME_2024 (train) | data/train-*.parquet; aime_2024_problems.parquet |
| aime25  | opencompass/AIME2025 (AIME2025-I + AIME2025-II, test); also yentinglin/aime_2025 (train), math-ai/aime25 (test) | aime2025-I.jsonl + aime2025-II.jsonl |

Field mapping: GSM8K `question`, `answer` (after `#### `, commas dropped; gsm8k.py); MATH-500
`problem`, `answer`, `solution`, `subject`, `level`, `unique_id` (math.py's record parser);
AIME `problem` | `Problem` | `question`, `answer` | `Answer`, `solution` | `Solution`.
Ids: `gsm8k/test/<row>`, `math500/<subject>/<number>` (the MATH test file it came from),
`aime24/2024-I-1` (from Maxwell-Jia's `ID` or the AoPS `url` of HuggingFaceH4's rows),
`aime25/2025-II-3` (file or config `-I`/`-II` and the row within it). AIME answers must be
integers 0-999: a published `336^\\circ` becomes `336` (kept in meta `published_answer`).

Prompts, following DeepSeek-R1 and Qwen2.5-Math (QwenLM/Qwen2.5-Math evaluation,
`qwen25-math-cot`): zero-shot, the question then "Please reason step by step, and put your final
answer within \\boxed{}." Qwen2.5-Math puts that sentence in the system turn; DeepSeek-R1's model
card asks for no system prompt and the directive in the user turn, which is where tinyr1's
prompts put their instruction, so that is what this follows. Other conventions differ:
lm-evaluation-harness's `gsm8k` is 5-shot "Question: ...\\nAnswer:" graded on `#### N`
(strict-match) or the last number (flexible-extract); lighteval's math_500/aime tasks asked for
"Therefore, the final answer is: $\\boxed{ANSWER}$" (open-r1, early 2025), later for
"ANSWER: $ANSWER". Numbers from different conventions are not comparable to the point.

Grading is strict: the answer must be in `\\boxed{}` (no last-number fallback, unlike
lm-eval's flexible-extract), checked by tinyr1's grader (math-verify behind a fast path).

Sampling: GSM8K and MATH-500 are greedy pass@1 (Qwen2.5-Math, lm-eval). AIME has 30 problems,
so one greedy pass is noisy; the usual report (DeepSeek-R1: temperature 0.6, top-p 0.95, 64
samples per problem) is avg@k, the mean accuracy over k samples, i.e. pass@1 estimated from k.
`max_new_tokens` here is sized for small non-reasoning models; DeepSeek-R1 allowed 32,768.

Run: `.venv/bin/python -m pytest tests/data/test_benchmarks.py -q`
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tinyr1.data import gsm8k, math
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.types import Problem

STEP_BY_STEP_BOXED = "Please reason step by step, and put your final answer within \\boxed{}."
_AIME_URL = re.compile(r"(\d{4})_AIME_(I{1,2})_Problems/Problem_(\d+)")
_AIME_ID = re.compile(r"(\d{4})-(I{1,2})-(\d+)")
_EXAM = re.compile(r"[-_](I{1,2})$", re.IGNORECASE)
_DEGREES = re.compile(r"(\d+)\s*\^\s*\{?\\circ\}?")

Record = dict[str, Any]
# (record, where it is for messages, 1-based position within its file or hub config, file stem or config)
Parser = Callable[[Record, str, int, str], Problem]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its problems come from, how to read them, how it is usually run."""

    hub_id: str  # the default hub dataset
    files: tuple[str, ...]  # glob patterns tried in order inside a local folder; the first that matches wins
    parse: Parser  # one record -> Problem
    max_new_tokens: int  # sized for small non-reasoning models
    temperature: float = 0.0  # of the k samples (0: greedy only)
    top_p: float = 1.0
    samples: int = 1  # k: samples per problem for avg@k (1: greedy pass@1)
    instruction: str = STEP_BY_STEP_BOXED
    style: str = "boxed"  # answer style asked for and graded (tinyr1.rewards.answers)


def _field(record: Record, keys: tuple[str, ...], where: str) -> Any:
    """The value of the first of `keys` the record holds (non-empty), else `UserError` naming them."""
    for key in keys:
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or value.strip()):
            return value
    raise UserError(f"{where}: no non-empty {' / '.join(repr(k) for k in keys)} key; this record has keys {sorted(record)}")


def _gsm8k(record: Record, where: str, index: int, origin: str) -> Problem:
    problem = gsm8k.to_problem(record, f"gsm8k/test/{index}", where)
    return dataclasses.replace(problem, meta={"source": "gsm8k", "benchmark": "gsm8k"})


def _math500(record: Record, where: str, index: int, origin: str) -> Problem:
    unique_id = str(_field(record, ("unique_id",), where))  # "test/precalculus/807.json"
    parts = unique_id.removesuffix(".json").split("/")
    subject = parts[-2] if len(parts) >= 2 else math.subject_of(str(record.get("subject", "unknown")))
    _field(record, ("answer",), where)  # MATH-500 publishes its answers; never fall back to the solution's box
    problem = math.to_problem(record, f"math500/{subject}/{parts[-1]}", subject, where)
    if problem is None:  # math.to_problem's empty-\boxed{} case; the `answer` key was checked above
        raise UserError(f"{where}: key 'answer' is empty")
    return dataclasses.replace(problem, meta=problem.meta | {"benchmark": "math500", "unique_id": unique_id})


def aime_answer(value: Any, where: str) -> str:
    """An AIME answer as an integer string; `UserError` for anything but an integer 0-999.

    >>> aime_answer(70, "x"), aime_answer("033", "x"), aime_answer("336^\\\\circ", "x")
    ('70', '33', '336')
    """
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    m = _DEGREES.fullmatch(text)
    text = m.group(1) if m else text
    if not text.isdigit() or not 0 <= int(text) <= 999:
        raise UserError(f"{where}: the answer {value!r} is not an integer from 0 to 999, as every AIME answer is")
    return str(int(text))


def _aime_name(record: Record, index: int, origin: str, year: str) -> str:
    """`2024-I-1` from the record's `ID`, its AoPS `url`, or its file / config and position."""
    for key, pattern in (("ID", _AIME_ID), ("id", _AIME_ID), ("url", _AIME_URL)):
        m = pattern.search(str(record.get(key, "")))
        if m:
            return "-".join(m.groups())
    exam = _EXAM.search(origin)
    if exam:
        return f"{year}-{exam.group(1).upper()}-{index}"
    return str(record.get("id", index))


def _aime(year: str) -> Parser:
    def parse(record: Record, where: str, index: int, origin: str) -> Problem:
        question = _field(record, ("problem", "Problem", "question"), where)
        published = _field(record, ("answer", "Answer"), where)
        solution = record.get("solution", record.get("Solution"))
        meta = {"source": f"aime{year[2:]}", "benchmark": f"aime{year[2:]}"}
        answer = aime_answer(published, where)
        if answer != str(published).strip():
            meta["published_answer"] = str(published)
        name = _aime_name(record, index, origin, year)
        return Problem(id=f"aime{year[2:]}/{name}", question=str(question), answer=answer,
                       solution=solution if isinstance(solution, str) and solution.strip() else None, meta=meta)

    return parse


# name -> preset; the one place a benchmark is described
BENCHMARKS = {
    "gsm8k": Benchmark("openai/gsm8k", ("test.jsonl", "main/test-*.parquet", "test-*.parquet"), _gsm8k,
                       max_new_tokens=1024),
    "math500": Benchmark("HuggingFaceH4/MATH-500", ("test.jsonl", "data/test-*.parquet", "test-*.parquet"), _math500,
                         max_new_tokens=2048),
    "aime24": Benchmark("HuggingFaceH4/aime_2024", ("aime_2024_problems.parquet", "data/train-*.parquet",
                        "train-*.parquet", "*.jsonl"), _aime("2024"),
                        max_new_tokens=4096, temperature=0.6, top_p=0.95, samples=64),
    "aime25": Benchmark("opencompass/AIME2025", ("aime2025-*.jsonl", "data/train-*.parquet", "train-*.parquet",
                        "test.jsonl", "*.jsonl"), _aime("2025"),
                        max_new_tokens=4096, temperature=0.6, top_p=0.95, samples=64),
}
# hub id -> the (config, split) pairs that make up the benchmark, read one after the other
HUB_PARTS = {
    "openai/gsm8k": (("main", "test"),),
    "HuggingFaceH4/MATH-500": ((None, "test"),),
    "HuggingFaceH4/aime_2024": ((None, "train"),),
    "Maxwell-Jia/AIME_2024": ((None, "train"),),
    "opencompass/AIME2025": (("AIME2025-I", "test"), ("AIME2025-II", "test")),
    "yentinglin/aime_2025": ((None, "train"),),
    "math-ai/aime25": ((None, "test"),),
}


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"eval.bench: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def preset(name: str) -> dict[str, Any]:
    """The prompt, grading and sampling settings `name` is usually reported with, as plain values.

    >>> preset("aime24")["temperature"], preset("aime24")["samples"], preset("gsm8k")["metric"]
    (0.6, 64, 'pass@1 (greedy)')
    """
    b = _benchmark(name)
    return {
        "hub_id": b.hub_id, "style": b.style, "instruction": b.instruction, "system_prompt": None, "few_shot": 0,
        "fallback": False, "samples": b.samples, "temperature": b.temperature, "top_p": b.top_p,
        "max_new_tokens": b.max_new_tokens,
        "metric": "pass@1 (greedy)" if b.samples == 1 else f"avg@{b.samples} (pass@1 from {b.samples} samples)",
    }


# ----------------------------------------------------------------------------- reading


def load_benchmark(name: str, location: str | Path | None = None) -> list[Problem]:
    """The problems of benchmark `name` from `location` (a local file or folder, a hub id, or None
    for the default hub id), in the published order. Bad input raises `UserError` naming the file
    and line (or row)."""
    bench = _benchmark(name)
    location = str(location) if location is not None else bench.hub_id
    path = Path(location).expanduser()
    if path.exists():
        records = _local_records(name, bench, path)
    elif location.count("/") == 1 and not location.startswith((".", "/", "~")):
        records = _hub_records(name, location)
    else:
        raise UserError(f"--bench {name}: {location} does not exist (expected a local file or folder, or a hub "
                        f"id such as {bench.hub_id})")
    problems = [bench.parse(record, where, index, origin) for record, where, index, origin in records]
    if not problems:
        raise UserError(f"--bench {name}: {location} holds no problems")
    return problems


def _local_records(name: str, bench: Benchmark, path: Path) -> Iterator[tuple[Record, str, int, str]]:
    if path.is_file():
        files = [path]
    else:
        files = next((sorted(path.glob(p)) for p in bench.files if any(path.glob(p))), [])
        if not files:
            raise UserError(f"--bench {name}: {path} holds none of {', '.join(bench.files)} (the files of "
                            f"{bench.hub_id} as published)")
    for file in files:
        for index, (record, where) in enumerate(read_records(file), start=1):
            yield record, where, index, file.stem


def read_records(path: Path) -> Iterator[tuple[Record, str]]:
    """(record, "file:line" or "file (row i)") for each record of a .jsonl, .json or .parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for lineno, record in read_jsonl(path):
            yield record, f"{path}:{lineno}"
    elif suffix == ".json":
        yield from _json_records(path)
    elif suffix == ".parquet":
        yield from _parquet_records(path)
    else:
        raise UserError(f"{path}: expected a .jsonl, .json or .parquet file")


def _json_records(path: Path) -> Iterator[tuple[Record, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start + 1} is {e.object[e.start]:#04x}); save the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); expected a list of records") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # {"data": [...]} as some mirrors publish
        data = data["data"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise UserError(f"{path} (item {i}): expected a JSON object, got {type(record).__name__}")
        yield record, f"{path} (item {i})"


def _parquet_records(path: Path) -> Iterator[tuple[Record, str]]:
    try:
        import pyarrow.parquet as pq  # comes with datasets; imported only for parquet files
    except ImportError:
        raise UserError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors for a file that is not parquet
        raise UserError(f"{path}: not a readable parquet file ({type(e).__name__}: {str(e)[:200]})") from None
    for i, record in enumerate(rows):
        yield record, f"{path} (row {i})"


def _hub_records(name: str, hub_id: str) -> Iterator[tuple[Record, str, int, str]]:
    try:
        from datasets import load_dataset  # lazy: slow to import, only needed online
    except ImportError:
        raise UserError(f"--bench {name}: reading {hub_id} from the hub needs `datasets`; or pass a local file") from None
    for config, split in HUB_PARTS.get(hub_id, ((None, "test"),)):
        try:
            rows = load_dataset(hub_id, config, split=split)
        except Exception as e:  # offline, unknown id, missing split
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"--bench {name}: could not read {hub_id} (config {config!r}, split {split!r}) from the "
                            f"hub ({type(e).__name__}: {reason}). Offline? Pass the benchmark's files as published, "
                            f"e.g. --bench {name} --data.source=<folder or file>") from None
        for i, row in enumerate(rows):
            yield dict(row), f"{hub_id} ({config or split} row {i})", i + 1, config or split
