"""Run-time tracking: metrics as JSON lines, optional trackers, and a training progress bar.

A training run writes `runs/<name>/metrics.jsonl`, one flat JSON object per line. Every line has
`step` (int) and `time/elapsed` (seconds since the run started, cumulative across resumes); the
other keys are namespaced (`reward/`, `loss/`, `rollout/`, `timing/`, `optim/`, `eval/`). Held-out
evaluations are separate lines sharing the training step. A resumed run appends lines whose
`step` may repeat earlier ones; readers let the later line win (see `tinyr1.plots.series`).
`report_to` mirrors every line to experiment trackers (TensorBoard, W&B, Trackio; see
`tinyr1.reporters`); the JSON lines file stays the source of truth.

Usage::

    logger = MetricsLogger("runs/demo", enabled=rank == 0, report_to=["wandb"])
    bar = Progress(total=cfg.steps, initial=start_step, desc="grpo", enabled=rank == 0)
    for step in range(start_step + 1, cfg.steps + 1):
        metrics = train_step(...)          # {"reward/total": tensor(0.4), "loss/kl": 0.01, ...}
        logger.log(metrics, step)
        bar.update(metrics)
    bar.close(); logger.close()
    rows = read_metrics("runs/demo/metrics.jsonl")

Importing this module imports neither torch nor tqdm nor any tracker; each loads when first needed.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from tinyr1.errors import UserError
from tinyr1.io import append_jsonl, read_jsonl
from tinyr1.reporters import MissingTracker, RunInfo, TensorBoard, check_report_to, numeric, open_reporter

METRICS_FILE = "metrics.jsonl"

# Warn about a missing TensorBoard once per process, not once per logger or per step.
_warned_no_tensorboard = False


class MetricsLogger:
    """Append one flat dict per call to `run_dir/metrics.jsonl`, and mirror it to the chosen trackers.

    Each line is written and closed before `log` returns, so a crash loses at most the line being
    written. Values become plain JSON: tensors and numpy scalars via `.item()`, NaN/inf as null.
    `time/elapsed` continues from the last line already in the file (a resumed run), unless
    `elapsed_offset` gives it (e.g. saved in a checkpoint). `enabled=False` (non-zero ranks under
    torch.distributed) makes every method a no-op and creates no file.

    `report_to` names trackers from `tinyr1.reporters.REPORTERS`; each gets `config` once (by
    default the run folder's config.yaml, when there is one), then the numeric values of every
    line, then a finish call from `close`. A chosen tracker that is not installed raises
    `UserError`. `tensorboard=True` is the older spelling of `report_to=["tensorboard"]`, kept for
    its callers: it only warns (once) when tensorboard is missing.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = False,
                 elapsed_offset: float | None = None, report_to: list[str] | tuple[str, ...] = (),
                 config: dict[str, Any] | None = None, project: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.enabled = enabled
        self._reporters: dict[str, Any] = {}
        self._start = time.monotonic()
        self._offset = 0.0
        if not enabled:
            return
        names = check_report_to(report_to)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.path.is_file() and self.path.stat().st_size > 0
        resumed_elapsed = _prepare_for_append(self.path)
        self._offset = resumed_elapsed if elapsed_offset is None else float(elapsed_offset)
        if not names and not tensorboard:
            return
        config = _read_config(self.run_dir) if config is None else config
        info = RunInfo(self.run_dir, self.run_dir.name, config, project, resumed)
        try:
            for name in names:
                self._reporters[name] = open_reporter(name, info)
            if tensorboard and "tensorboard" not in self._reporters:
                writer = _open_tensorboard(info)
                if writer is not None:
                    self._reporters["tensorboard"] = writer
        except BaseException:
            self.close()  # trackers opened before the failing one
            raise

    @property
    def elapsed(self) -> float:
        """Seconds of run time so far, including earlier runs this one resumed."""
        return self._offset + (time.monotonic() - self._start)

    @property
    def reporters(self) -> list[str]:
        """Names of the trackers this logger writes to (besides metrics.jsonl)."""
        return list(self._reporters)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append `{"step": step, "time/elapsed": ..., **metrics}` as one line; mirror its numbers.

        A `time/elapsed` key in `metrics` overrides the logger's clock. Raises `TypeError` naming
        the key for a value that is not a scalar (a list, a dict, a tensor with many elements).
        """
        if not self.enabled:
            return
        row: dict[str, Any] = {"step": int(step), "time/elapsed": round(self.elapsed, 3)}
        for key, value in metrics.items():
            row[key] = _plain(key, value)
        row["step"] = int(step)  # the argument wins over a stray "step" key in metrics
        append_jsonl(self.path, row)
        scalars = numeric(row)
        for name, reporter in list(self._reporters.items()):
            try:
                reporter.log(scalars, int(step))
            except Exception as e:  # a dashboard must never stop training; metrics.jsonl has the line
                del self._reporters[name]
                warnings.warn(f"run.report_to: stopped logging to {name} after an error "
                              f"({type(e).__name__}: {str(e)[:200]}); {self.path} keeps every step", stacklevel=2)

    def close(self) -> None:
        """Finish every tracker (the JSON lines file is closed after every line)."""
        reporters, self._reporters = self._reporters, {}
        for reporter in reporters.values():
            reporter.finish()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(key: str, value: Any) -> Any:
    """Turn one metric value into a JSON-safe scalar: NaN/inf -> None, tensors via `.item()`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # torch tensors and numpy scalars/arrays, without importing either
        try:
            return _plain(key, value.item())
        except (ValueError, RuntimeError) as e:  # more than one element
            raise TypeError(f"metric {key!r}: expected a scalar, got {type(value).__name__} ({e})") from None
    if isinstance(value, numbers.Real):  # Fraction, Decimal-like
        return _plain(key, float(value))
    raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__}")


def _prepare_for_append(path: Path) -> float:
    """Make an existing metrics file safe to append to; return its last `time/elapsed` (0 if none).

    A crash mid-write leaves a final line without its newline; appending after it would glue two
    lines into one malformed line in the middle of the file, so the fragment is cut off first.
    """
    if not path.is_file():
        return 0.0
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        if _is_json_object(data[keep:]):  # written whole, only the newline is missing
            with path.open("ab") as f:
                f.write(b"\n")
        else:
            warnings.warn(f"{path}: dropped a partial last line ({len(data) - keep} bytes) left by an interrupted "
                          "run", stacklevel=3)
            with path.open("r+b") as f:
                f.truncate(keep)
            data = data[:keep]
    for line in reversed(data.splitlines()):
        elapsed = _is_json_object(line) and json.loads(line).get("time/elapsed")
        if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool):
            return float(elapsed)
    return 0.0


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # includes a UTF-8 character cut in half
        return False


def _open_tensorboard(info: RunInfo):
    """The TensorBoard tracker, or None (with one warning) when tensorboard is not installed."""
    global _warned_no_tensorboard
    try:
        return TensorBoard(info)
    except MissingTracker:
        if not _warned_no_tensorboard:
            warnings.warn("tensorboard is not installed (pip install 'tinyr1[tensorboard]'); logging metrics to "
                          "metrics.jsonl only", stacklevel=3)
            _warned_no_tensorboard = True
        return None


def _read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as a dict, or {} when the folder has none (yet)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); expected the run's resolved config") from None
    return config if isinstance(config, dict) else {}


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file back as a list of dicts, in file order.

    A final line cut off by a crash (no newline, not valid JSON) is skipped. Any other malformed
    line, or a line without an integer `step`, raises `UserError` naming `file:line`.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    last_good = 0
    try:
        for lineno, row in read_jsonl(path):
            if not isinstance(row.get("step"), int) or isinstance(row.get("step"), bool):
                raise UserError(f"{path}:{lineno}: expected an integer 'step' on every metrics line")
            rows.append(row)
            last_good = lineno
    except UserError as e:
        if "malformed JSON" not in str(e) or not _only_partial_tail_after(path, last_good):
            raise
    return rows


def _only_partial_tail_after(path: Path, lineno: int) -> bool:
    """True when everything after line `lineno` is blank except a last line with no newline."""
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    rest = data.split(b"\n")[lineno:]
    return all(not line.strip() for line in rest[:-1])


class Progress:
    """A tqdm bar over training steps whose postfix shows reward, training and held-out accuracy.

    `update(metrics)` advances one step and shows `reward/total`, `reward/accuracy` and
    `eval/accuracy` when present; the last value of each stays shown (evals are sparse). Call
    `update(eval_metrics, advance=0)` to refresh the postfix without counting a step. When stderr
    is not a terminal (CI, `nohup`) the bar redraws at most every 30 s so logs stay short.
    """

    SHOWN = {"reward/total": "reward", "reward/accuracy": "acc", "eval/accuracy": "eval_acc"}

    def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: bool = True):
        tty = sys.stderr.isatty()
        self._shown: dict[str, str] = {}
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled,
                         dynamic_ncols=tty, mininterval=0.1 if tty else 30.0, file=sys.stderr)

    def update(self, step_metrics: dict[str, Any], advance: int = 1) -> None:
        """Advance by `advance` steps and refresh the postfix from `step_metrics`."""
        for key, name in self.SHOWN.items():
            value = step_metrics.get(key)
            if value is None:
                continue
            try:
                value = _plain(key, value)
            except TypeError:
                continue  # a progress bar must never stop training
            if isinstance(value, (int, float)):
                self._shown[name] = f"{value:.3g}"
        if self._shown:
            self._bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in self._shown.items()), refresh=False)
        self._bar.update(advance)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
