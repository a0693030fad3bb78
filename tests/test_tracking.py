"""Tests for tinyr1.tracking: the metrics JSON lines logger, reading it back, the progress bar."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest

from tinyr1 import tracking
from tinyr1.errors import UserError
from tinyr1.tracking import MetricsLogger, Progress, read_metrics


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logger_writes_one_plain_line_per_call_with_step_and_elapsed(tmp_path):
    import numpy as np
    import torch

    logger = MetricsLogger(tmp_path / "run")
    logger.log({"reward/total": torch.tensor(0.5), "loss/kl": float("nan"), "loss/policy": float("inf"),
                "rollout/truncated": np.int64(3), "optim/lr": np.float32(0.25), "reward/equal_groups": 1}, step=1)
    logger.log({"eval/accuracy": 0.75, "eval/n": 40}, step=1)
    logger.close()

    first, second = _lines(tmp_path / "run" / "metrics.jsonl")
    assert list(first)[:2] == ["step", "time/elapsed"]
    assert first["step"] == 1 and isinstance(first["time/elapsed"], float)
    # tensor -> float, NaN/inf -> null, numpy ints -> int, numpy floats -> float
    assert first["reward/total"] == 0.5 and first["loss/kl"] is None and first["loss/policy"] is None
    assert first["rollout/truncated"] == 3 and type(first["rollout/truncated"]) is int
    assert first["optim/lr"] == 0.25 and first["reward/equal_groups"] == 1
    assert second == {"step": 1, "time/elapsed": second["time/elapsed"], "eval/accuracy": 0.75, "eval/n": 40}


def test_logger_rejects_non_scalar_naming_the_key(tmp_path):
    import torch

    logger = MetricsLogger(tmp_path)
    with pytest.raises(TypeError, match="reward/total"):
        logger.log({"reward/total": torch.ones(3)}, step=0)
    with pytest.raises(TypeError, match="loss/kl"):
        logger.log({"loss/kl": [1.0]}, step=0)


def test_disabled_logger_writes_nothing(tmp_path):
    logger = MetricsLogger(tmp_path / "run", enabled=False, tensorboard=True)
    logger.log({"reward/total": 1.0}, step=1)
    logger.close()
    assert not (tmp_path / "run").exists()


def test_resumed_logger_continues_elapsed_and_drops_partial_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time/elapsed": 100.0}\n{"step": 2, "time/el')
    with pytest.warns(UserWarning, match="partial last line"):
        logger = MetricsLogger(tmp_path)
    logger.log({"reward/total": 0.1}, step=2)
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2]
    assert 100.0 <= rows[1]["time/elapsed"] < 110.0
    assert MetricsLogger(tmp_path, elapsed_offset=5.0).elapsed < 10.0


def test_resumed_logger_keeps_a_whole_last_line_missing_its_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time/elapsed": 7.0}')
    MetricsLogger(tmp_path).log({}, step=2)
    assert [(r["step"], r["time/elapsed"] >= 7.0) for r in read_metrics(path)] == [(1, True), (2, True)]


def test_tensorboard_missing_warns_once_and_keeps_logging(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    monkeypatch.setattr(tracking, "_warned_no_tensorboard", False)
    with pytest.warns(UserWarning, match="tensorboard is not installed") as record:
        a = MetricsLogger(tmp_path / "a", tensorboard=True)
        MetricsLogger(tmp_path / "b", tensorboard=True)
    assert len(record) == 1
    a.log({"loss/kl": 0.1}, step=1)
    assert _lines(tmp_path / "a" / "metrics.jsonl")[0]["loss/kl"] == 0.1


def test_tensorboard_gets_numeric_scalars(tmp_path, monkeypatch):
    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, tag, value, global_step):
            calls.append((tag, value, global_step))

        def flush(self):
            pass

        def close(self):
            calls.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log({"reward/total": 0.5, "loss/kl": float("nan")}, step=3)
    logger.close()
    assert ("reward/total", 0.5, 3) in calls and "closed" in calls
    assert not any(c[0] == "loss/kl" for c in calls if isinstance(c, tuple))  # null is not plotted as 0


def test_read_metrics_skips_trailing_partial_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward/total": 0.5}\n\n{"step": 2, "reward/total": 0.7}\n{"step": 3, "rew')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_read_metrics_names_file_and_line_of_malformed_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: malformed JSON"):
        read_metrics(path)


def test_read_metrics_rejects_a_complete_malformed_last_line(tmp_path):
    # Ends with a newline, so it was written whole: not a crash artefact.
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2,\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2"):
        read_metrics(path)


def test_read_metrics_requires_integer_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"reward/total": 0.5}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: expected an integer 'step'"):
        read_metrics(path)


def test_progress_shows_chosen_metrics_without_a_terminal(monkeypatch):
    err = io.StringIO()  # not a TTY, as under CI
    monkeypatch.setattr(sys, "stderr", err)
    bar = Progress(total=10, initial=2, desc="grpo")
    bar.update({"reward/total": 0.123456, "reward/accuracy": 0.5, "loss/kl": 9.0})
    bar.update({"eval/accuracy": 0.4}, advance=0)
    bar.update({"reward/total": float("nan")})  # NaN leaves the last shown value
    bar.close()
    final = err.getvalue().split("\r")[-1]
    assert "grpo" in final and "4/10" in final
    assert "reward=0.123 acc=0.5 eval_acc=0.4" in final


def test_disabled_progress_prints_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = Progress(total=5, enabled=False)
    bar.update({"reward/total": 1.0})
    bar.close()
    assert err.getvalue() == ""
