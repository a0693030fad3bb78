"""Experiment trackers that mirror metrics.jsonl: TensorBoard, Weights & Biases, Trackio.

`run.report_to: [tensorboard, wandb, trackio]` picks any of them; `REPORTERS` below is the one
place a name becomes a tracker. metrics.jsonl stays the source of truth (plots, reports and
resumes read it); a tracker is a copy for people who live in its dashboard. Each one gets:

- once at the start, the run's resolved config (the nested dict of config.yaml);
- per `MetricsLogger.log` call, the same flat dict of numeric values (`time/elapsed` included,
  nulls left out) with the step number given separately;
- a finish call when the logger closes.

Each tracker's package is imported only when chosen (importing tinyr1 imports none of them); a
chosen one that is not installed raises `UserError` naming `run.report_to` and the pip extra.
Where each one writes, offline:

- tensorboard: `<run_dir>/tensorboard/` event files; the config as a text summary `config`;
- wandb: `<run_dir>/wandb/`, project `$WANDB_PROJECT` or `tinyr1`, run name = the run folder's
  name. The mode is `$WANDB_MODE` when set, else `online` when an API key is found
  (`$WANDB_API_KEY` or a netrc entry for the W&B host), else `offline`: a machine that never
  logged in to W&B keeps working and can `wandb sync <run_dir>/wandb/offline-run-*` later. Unlike
  the `report_to="wandb"` of transformers' Trainer, which would stop to ask for a key;
- trackio: local-first, its own SQLite store `$TRACKIO_DIR/<project>.db` (default
  `~/.cache/huggingface/trackio`, read by `trackio show`); a resumed tinyr1 run continues the
  trackio run of the same name. `$TRACKIO_SPACE_ID` sends it to a Space instead (trackio's rule).

A tracker whose `log` raises (a full disk, a lost connection) is dropped with one warning and the
run goes on: losing a dashboard must not lose hours of training, and metrics.jsonl has it all.

Run: `.venv/bin/python -m pytest tests/test_reporters.py -q`
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from tinyr1.errors import UserError

KEY = "run.report_to"


class MissingTracker(UserError):
    """A chosen tracker's package is not installed."""


@dataclass(frozen=True)
class RunInfo:
    """What a tracker needs to open a run."""

    run_dir: Path
    name: str  # the run's display name: the run folder's name
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, nested as in config.yaml
    project: str | None = None  # None: the tracker's own default ($WANDB_PROJECT, ...) or "tinyr1"
    resumed: bool = False  # the run folder already held metrics (a resumed run)


def _missing(name: str, package: str) -> MissingTracker:
    return MissingTracker(f"{KEY}: '{name}' needs the {package} package, which is not installed; "
                          f"pip install 'tinyr1[{name}]' (or drop '{name}' from {KEY})")


class TensorBoard:
    """Scalars to `<run_dir>/tensorboard/` with torch's SummaryWriter."""

    package = "tensorboard"

    def __init__(self, info: RunInfo):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", self.package) from None
        self._writer = SummaryWriter(log_dir=str(info.run_dir / "tensorboard"))
        if info.config:
            text = yaml.safe_dump(info.config, sort_keys=False)
            self._writer.add_text("config", "```yaml\n" + text + "```", global_step=0)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()

    def finish(self) -> None:
        self._writer.close()


def wandb_mode(environ: dict[str, str] | None = None) -> str:
    """`$WANDB_MODE` when set; else `online` with an API key at hand, `offline` without one.

    >>> wandb_mode({"WANDB_MODE": "disabled"}), wandb_mode({"WANDB_API_KEY": "x", "NETRC": "/none"})
    ('disabled', 'online')
    """
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"]
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "online"
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        found = netrc.netrc(env.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):  # no ~/.netrc, or one wandb did not write
        found = None
    return "online" if found and found[2] else "offline"


class Wandb:
    """A W&B run in `<run_dir>/wandb/`, offline unless the user logged in (see `wandb_mode`)."""

    package = "wandb"

    def __init__(self, info: RunInfo):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", self.package) from None
        project = info.project or os.environ.get("WANDB_PROJECT") or "tinyr1"
        try:
            self._run = wandb.init(project=project, name=info.name, dir=str(info.run_dir), config=info.config or None,
                                   mode=wandb_mode())
        except Exception as e:  # a bad key, an unreachable server: the user's to fix, before training starts
            raise UserError(f"{KEY}: wandb could not start a run ({type(e).__name__}: {str(e).strip()[:200]}); "
                            "set WANDB_MODE=offline to log locally and `wandb sync` later") from None

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def finish(self) -> None:
        self._run.finish()


class Trackio:
    """A trackio run in its local SQLite store (`$TRACKIO_DIR`), continued when tinyr1 resumes."""

    package = "trackio"

    def __init__(self, info: RunInfo):
        try:
            import trackio
        except ImportError:
            raise _missing("trackio", self.package) from None
        self._run = trackio.init(project=info.project or "tinyr1", name=info.name, config=info.config or None,
                                 resume="allow" if info.resumed else "never")

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def finish(self) -> None:
        self._run.finish()


# name in run.report_to -> tracker; the name is also the pip extra (`pip install 'tinyr1[wandb]'`)
REPORTERS = {"tensorboard": TensorBoard, "wandb": Wandb, "trackio": Trackio}


def check_report_to(names) -> list[str]:
    """Validate `run.report_to` without importing any tracker; returns the names, duplicates dropped.

    Raises `UserError` for a name that is not in `REPORTERS` or whose package is not installed,
    so a bad choice fails before the model loads, not at the first logged step.
    """
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{KEY}: expected a list of names from {', '.join(REPORTERS)}, got {names!r}")
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in REPORTERS]
    if unknown:
        raise UserError(f"{KEY}: unknown tracker(s) {unknown}; allowed: {', '.join(REPORTERS)}")
    for name in chosen:
        if not _installed(REPORTERS[name].package):
            raise _missing(name, REPORTERS[name].package)
    return chosen


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: the module was set to None in sys.modules
        return False


def open_reporter(name: str, info: RunInfo):
    """Open the tracker `name` for the run `info` (imports its package)."""
    if name not in REPORTERS:
        raise UserError(f"{KEY}: unknown tracker {name!r}; allowed: {', '.join(REPORTERS)}")
    return REPORTERS[name](info)


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one metrics line, `step` and nulls left out: what every tracker gets.

    >>> numeric({"step": 3, "reward/total": 0.5, "loss/kl": None, "eval/n": 40, "flag": True, "note": "x"})
    {'reward/total': 0.5, 'eval/n': 40}
    """
    return {k: v for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
