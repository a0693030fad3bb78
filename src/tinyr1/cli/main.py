"""Command line: `tinyr1 train | eval | grade | report | rm | prm | push`.

    tinyr1 train [CONFIG.yaml] [--section.key=value ...]      (no config: configs/quickstart.yaml)
    tinyr1 train --resume runs/<name> [--run.steps=N]
    tinyr1 train CONFIG.yaml --dry-run     (validate it and run one tiny step on CPU, offline)
    tinyr1 eval [CONFIG.yaml] [--model M] [--data D] [--split S] [--limit N] [--samples K]
                [--temperature T] [--style S] [--out DIR] [--section.key=value ...]
    tinyr1 grade FILE.jsonl [--out OUT.jsonl] [--style S] [--no-fallback] [--timeout SEC]
    tinyr1 report RUN_DIR... [--out report/] [--title T]   (compare runs: table, verdict, curves)
    tinyr1 rm collect|train|eval [...]   (outcome reward model: graded samples, training, AUC and best-of-n)
    tinyr1 prm label|train|eval [...]    (process reward model: Math-Shepherd step labels, training, step F1)
    tinyr1 push RUN_DIR REPO_ID [--private] [--to-dir DIR]   (the trained model or adapter with a model card)

Every option is a dotted config key (`tinyr1 eval --help` lists them with their docs); the short
flags above are aliases. Bad input of any kind prints one line naming the file, line or key and
exits with status 2.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from tinyr1.errors import UserError

# Each command's module, imported when the command runs: `tinyr1 grade` and `tinyr1 --help`
# should not wait for torch and transformers to load.
COMMANDS = {
    "train": ("tinyr1.cli.train", ()),
    "eval": ("tinyr1.cli.evaluate", ()),
    "grade": ("tinyr1.cli.grade", ()),
    "report": ("tinyr1.cli.report", ()),
    "rm": ("tinyr1.cli.rm", ("rm",)),
    "prm": ("tinyr1.cli.rm", ("prm",)),
    "push": ("tinyr1.push", ()),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    # transformers' deprecation notices about its own internals (raised from peft) are noise to users
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    if command not in COMMANDS:
        print(f"tinyr1: error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, before = COMMANDS[command]
    try:
        return importlib.import_module(module).main(*before, rest)
    except UserError as e:
        print(f"tinyr1: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyr1: interrupted", file=sys.stderr)
        return 130
