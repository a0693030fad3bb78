"""Command line: `tinyr1 train | eval | grade | report | rm | prm`.

    tinyr1 train [CONFIG.yaml] [--section.key=value ...]      (no config: configs/quickstart.yaml)
    tinyr1 train --resume runs/<name> [--run.steps=N]
    tinyr1 train CONFIG.yaml --dry-run     (validate it and run one tiny step on CPU, offline)
    tinyr1 eval [CONFIG.yaml] [--model M] [--data D] [--split S] [--limit N] [--samples K]
                [--temperature T] [--style S] [--out DIR] [--section.key=value ...]
    tinyr1 grade FILE.jsonl [--out OUT.jsonl] [--style S] [--no-fallback] [--timeout SEC]
    tinyr1 report RUN_DIR... [--out report/] [--title T]   (compare runs: table, verdict, curves)
    tinyr1 rm collect|train|eval [...]   (outcome reward model: graded samples, training, AUC and best-of-n)
    tinyr1 prm label|train|eval [...]    (process reward model: Math-Shepherd step labels, training, step F1)

Every option is a dotted config key (`tinyr1 eval --help` lists them with their docs); the short
flags above are aliases. Bad input of any kind prints one line naming the file, line or key and
exits with status 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tinyr1.errors import UserError

EVAL_ALIASES = {
    "model": "model.name",
    "data": "data.source",
    "split": "eval.split",
    "limit": "eval.limit",
    "samples": "eval.samples",
    "temperature": "eval.temperature",
    "style": "prompt.style",
    "out": "eval.out",
}


def _split_config_path(args: list[str]) -> tuple[str | None, list[str]]:
    if args and not args[0].startswith("-"):
        if not args[0].endswith((".yaml", ".yml")):
            raise UserError(f"expected a config file ending in .yaml as the first argument, got {args[0]!r}")
        return args[0], args[1:]
    return None, args


def _expand_aliases(args: list[str], aliases: dict[str, str]) -> list[str]:
    out = []
    for a in args:
        if a.startswith("--"):
            key, sep, value = a[2:].partition("=")
            a = f"--{aliases.get(key, key)}{sep}{value}"
        out.append(a)
    return out


def load_job(cls, args: list[str], aliases: dict[str, str]):
    from tinyr1.config import load_config, parse_overrides

    path, rest = _split_config_path(args)
    return load_config(cls, path, parse_overrides(_expand_aliases(rest, aliases)))


def cmd_eval(args: list[str]) -> int:
    from tinyr1.config import EvalJob, help_text

    if any(a in ("-h", "--help") for a in args):
        print(__doc__.split("\n\n")[1] + "\n\nAll keys:\n" + help_text(EvalJob))
        return 0
    job = load_job(EvalJob, args, EVAL_ALIASES)
    if job.eval.samples < 1:
        raise UserError("config key 'eval.samples': expected an integer >= 1")
    if job.eval.limit is not None and job.eval.limit < 1:
        raise UserError("config key 'eval.limit': expected an integer >= 1 or null")

    from tinyr1 import distributed as D
    from tinyr1.data import load_problems
    from tinyr1.evaluate import evaluate_sharded, format_table
    from tinyr1.io import write_json_atomic, write_jsonl
    from tinyr1.models.load import load_model

    problems = load_problems(job.data, job.eval.split)[: job.eval.limit]
    shots = load_problems(job.data, "train")[: job.prompt.few_shot] if job.prompt.few_shot else []
    out = Path(job.eval.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    # under accelerate launch / torchrun: every process evaluates its slice of the problems, the rows
    # are gathered, and rank 0 alone writes the files and prints (`evaluate.evaluate_sharded`)
    D.init(cpu=job.model.device == "cpu")
    with D.main_first():  # rank 0 first: a model converted or downloaded once is cached before the others look
        model, tokenizer = load_model(job.model, merge_adapter=True)
    result = evaluate_sharded(
        model, tokenizer, problems, job.prompt, job.sampling, job.grading,
        samples=job.eval.samples, temperature=job.eval.temperature, shots=shots, progress=D.is_main(),
    )
    main = D.is_main()
    if main:
        summary = dict(model=job.model.name, data=job.data.source, split=job.eval.split, style=job.prompt.style, **result.summary)
        write_jsonl(out / "samples.jsonl", result.rows)
        write_json_atomic(out / "summary.json", summary)
    D.shutdown()
    if main:
        print(format_table(summary))
        print(f"wrote {out}/summary.json and {out}/samples.jsonl")
    return 0


QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def cmd_train(args: list[str]) -> int:
    from tinyr1.config import TrainJob, help_text, parse_overrides, validate_train

    if any(a in ("-h", "--help") for a in args):
        print(__doc__.split("\n\n")[1] + "\n\nAll keys:\n" + help_text(TrainJob))
        return 0
    dry_run = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    resume = None
    if "--resume" in args:
        i = args.index("--resume")
        if i + 1 >= len(args):
            raise UserError("--resume needs a run folder: tinyr1 train --resume runs/<name>")
        resume, args = Path(args[i + 1]), args[:i] + args[i + 2 :]
    elif any(a.startswith("--resume=") for a in args):
        resume = Path(next(a for a in args if a.startswith("--resume="))[len("--resume="):])
        args = [a for a in args if not a.startswith("--resume=")]

    from tinyr1.recipes import setup as S

    if resume is not None:
        job = S.load_run_config(resume, parse_overrides(args))
        run_dir = resume
    else:
        if not args or args[0].startswith("-"):
            if not QUICKSTART.is_file():
                raise UserError(f"no config given and {QUICKSTART} is missing; pass a config file")
            args = [str(QUICKSTART), *args]
        job = load_job(TrainJob, args, {})
        run_dir = None
    from tinyr1 import distributed as D

    D.init(cpu=job.model.device == "cpu")  # under accelerate launch / torchrun: join the process group
    validate_train(job, D.world_size())
    from tinyr1.recipes import get_recipe

    if dry_run:  # rank 0 builds the tiny stand-in model; every process gets its job
        import tempfile

        job = D.broadcast_object(S.dry_run_job(job, Path(tempfile.mkdtemp(prefix="tinyr1-dry-run-"))) if D.is_main() else None)
        run_dir, resume = None, None

    recipe = get_recipe(job.algorithm)
    if run_dir is None:  # rank 0 creates the run folder (its default name holds the time) and tells the others
        run_dir = D.broadcast_object(S.new_run_dir(job) if D.is_main() else None)
    say = print if D.is_main() else (lambda *args, **kwargs: None)
    say(f"tinyr1: {job.algorithm} run in {run_dir}" + (f" on {D.world_size()} processes" if D.world_size() > 1 else ""), flush=True)
    summary = recipe(job, run_dir, resume=resume is not None)
    D.shutdown()
    if dry_run:
        say(f"dry run ok: config valid, data and rewards load, one {job.algorithm} step ran on a tiny stand-in model")
        return 0
    b, a = summary["eval_before"], summary["eval_after"]
    say(
        f"held-out accuracy {b['accuracy']:.1%} [{b['accuracy_ci95'][0]:.1%}, {b['accuracy_ci95'][1]:.1%}] -> "
        f"{a['accuracy']:.1%} [{a['accuracy_ci95'][0]:.1%}, {a['accuracy_ci95'][1]:.1%}] (n={a['n']}), "
        f"{summary['wall_time_s'] / 60:.1f} min; wrote {run_dir}/summary.json"
    )
    return 0


def cmd_grade(args: list[str]) -> int:
    import argparse

    from tinyr1.rewards.grade_file import grade_jsonl

    parser = argparse.ArgumentParser(prog="tinyr1 grade", description="Grade lines {response, answer[, style]} of a JSONL file.")
    parser.add_argument("file")
    parser.add_argument("--out", help="where to write one verdict per line (default: FILE.graded.jsonl)")
    parser.add_argument("--style", default="boxed", choices=["boxed", "gsm8k", "r1"])
    parser.add_argument("--no-fallback", action="store_true", help="do not fall back to the last number")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per answer check")
    ns = parser.parse_args(args)
    out = ns.out or str(Path(ns.file).with_suffix("")) + ".graded.jsonl"
    summary = grade_jsonl(ns.file, out, style=ns.style, fallback=not ns.no_fallback, timeout=ns.timeout)
    print(json.dumps(summary))
    return 0


def cmd_report(args: list[str]) -> int:
    import argparse

    from tinyr1.report import write_report

    parser = argparse.ArgumentParser(prog="tinyr1 report", description="Compare training runs: a table of held-out "
                                     "accuracy before -> after, a verdict, and overlaid curves, in OUT/report.md.")
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders written by tinyr1 train")
    parser.add_argument("--out", default="report/", help="folder for report.md and its PNGs (default: report/)")
    parser.add_argument("--title", help="heading of the report")
    ns = parser.parse_args(args)
    path = write_report([Path(d) for d in ns.run_dirs], Path(ns.out), title=ns.title)
    print(f"wrote {path}")
    return 0


def cmd_rm(args: list[str]) -> int:
    """`tinyr1 rm collect | train | eval` (see tinyr1/cli_rm.py; `tinyr1 rm --help`)."""
    from tinyr1 import cli_rm

    return cli_rm.main("rm", args)


def cmd_prm(args: list[str]) -> int:
    """`tinyr1 prm label | train | eval` (see tinyr1/cli_rm.py; `tinyr1 prm --help`)."""
    from tinyr1 import cli_rm

    return cli_rm.main("prm", args)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "grade": cmd_grade, "report": cmd_report, "rm": cmd_rm, "prm": cmd_prm}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    import warnings

    # transformers' deprecation notices about its own internals (raised from peft) are noise to users
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    if command not in COMMANDS:
        print(f"tinyr1: error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except UserError as e:
        print(f"tinyr1: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyr1: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
