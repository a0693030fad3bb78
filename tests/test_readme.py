"""Every command the README shows is one tinyr1 accepts: its verb exists, its config files are
found, every key and flag is known and every value passes validation. Nothing is trained.

`tinyr1 train|eval|rm|prm` commands are parsed into their job and validated, as the CLI does
before any model loads; `grade`, `report` and `push` go through their own argument parsers with
the work itself replaced; `make` targets must exist in the Makefile, scripts on disk. Words in
angle brackets (`runs/<name>`) and CAPITALS (`CONFIG.yaml`, `RUN_DIR`) are placeholders.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tinyr1.cli import args as cli_args
from tinyr1.cli import evaluate as cli_eval
from tinyr1.cli import rm as cli_rm
from tinyr1.cli import train as cli_train
from tinyr1.config import EvalJob, TrainJob, validate

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The shell commands of the README's ```bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def placeholder(word: str) -> bool:
    return "<" in word or "$" in word or bool(re.fullmatch(r"[A-Z][A-Z_]*(\.yaml)?", word))


def tinyr1_args(command: str) -> list[str] | None:
    """The arguments after `tinyr1` (or `-m tinyr1.cli` under a launcher), else None."""
    words = shlex.split(command)
    for i, w in enumerate(words):
        if w.endswith("tinyr1") and w.split("/")[-1] == "tinyr1" or (w == "tinyr1.cli" and words[i - 1] == "-m"):
            return words[i + 1 :]
    return None


def check_train(args: list[str]) -> None:
    args = [a for a in args if a != "--dry-run"]
    resume, args = cli_args.split_resume(args)
    if resume is not None or cli_args.wants_help(args):
        return
    if not args or args[0].startswith("-"):
        args = [str(cli_train.QUICKSTART), *args]
    if placeholder(args[0]):
        args = [str(cli_train.QUICKSTART), *args[1:]]
    validate(cli_args.load_job(TrainJob, args, {}))


def check_eval(args: list[str]) -> None:
    job = cli_args.load_job(EvalJob, args, cli_eval.ALIASES)
    if job.eval.bench:
        job = cli_args.load_job(EvalJob, args, cli_eval.ALIASES, defaults=cli_eval.bench_defaults(job.eval.bench))
    validate(job)


def check_rm(group: str, args: list[str]) -> None:
    verb, rest = args[0], args[1:]
    cls, aliases, _ = cli_rm.COMMANDS[group][verb]
    resume, rest = cli_args.split_resume(rest) if verb == "train" else (None, rest)
    if resume is None:
        validate(cli_rm.load_rm_job(cls, rest, aliases))


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_is_accepted(command, monkeypatch, tmp_path):
    words = shlex.split(command)
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
        variables = re.findall(r"^(\w+) \?=", (ROOT / "Makefile").read_text(), re.MULTILINE)  # make NAME=value
        assert all(t in targets or t.split("=")[0] in variables for t in words[1:]), f"make target missing: {command}"
        return
    if words[0] in ("python", "python3", ".venv/bin/python") and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), command
        return
    if words[0] == "pip":  # an install line: the extra it names must exist
        extras = re.findall(r"tinyr1\[([\w,-]+)\]", command)
        defined = re.findall(r"^([\w-]+) = \[", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
        assert all(e in defined for group in extras for e in group.split(",")), command
        return
    if "--sampling.engine=vllm" in command:  # valid where vLLM is installed, which the tests need not be
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    args = tinyr1_args(command)
    assert args is not None, f"not a tinyr1 command: {command}"
    monkeypatch.chdir(ROOT)
    verb, rest = args[0], args[1:]
    if verb == "train":
        check_train(rest)
    elif verb == "eval":
        check_eval(rest)
    elif verb in ("rm", "prm"):
        check_rm(verb, rest)
    elif verb == "grade":
        from tinyr1.cli import grade

        monkeypatch.setattr(grade, "grade_jsonl", lambda *a, **k: {"n": 0})
        assert grade.main(rest) == 0
    elif verb == "report":
        from tinyr1.cli import report

        monkeypatch.setattr(report, "write_report", lambda runs, out, title=None: out / "report.md")
        assert report.main(rest) == 0
    elif verb == "push":
        from tinyr1 import push

        monkeypatch.setattr(push, "read_run", lambda run_dir: type("Run", (), {"model_dir": run_dir})())
        monkeypatch.setattr(push, "stage", lambda run, repo, out, license_id: Path(tmp_path))
        monkeypatch.setattr(push, "upload", lambda *a: "https://huggingface.co/x")
        assert push.main(rest) == 0
    else:
        pytest.fail(f"unknown verb in the README: {command}")


def test_the_readme_shows_commands_for_each_task():
    verbs = {(tinyr1_args(c) or [""])[0] for c in COMMANDS}
    assert {"train", "eval", "rm", "prm", "report"} <= verbs
    assert any(c.startswith("make demo") for c in COMMANDS) and any(c.startswith("make test") for c in COMMANDS)


def relative_links() -> list[tuple[str, str]]:
    """(markdown file, link target) for every relative link of README.md and docs/**/*.md."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    links = []
    for md in files:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
                links.append((str(md.relative_to(ROOT)), target.split("#")[0]))
    return links


@pytest.mark.parametrize("md, target", relative_links())
def test_relative_links_point_at_committed_files(md, target):
    # A link to a file that is not in the repository (never written, or caught by .gitignore, as
    # docs/results/gsm8k/report/ once was: CI's clean clone lacks ignored files) is dead for a reader.
    path = (ROOT / md).parent / target
    assert path.exists(), f"{md} links to {target}, which is not in the repository"
