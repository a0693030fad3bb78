"""Tests for tinyr1.reporters through MetricsLogger(report_to=...): every tracker offline, read back.

The real trackers run when their package is installed (skipped otherwise): TensorBoard's event
file, W&B's offline run file and Trackio's SQLite store are read back for exact values. A fake
tracker checks what every tracker is given; a missing package is simulated in sys.modules.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tinyr1 import reporters
from tinyr1.errors import UserError
from tinyr1.reporters import check_report_to, numeric, wandb_mode
from tinyr1.tracking import MetricsLogger, read_metrics

SRC = str(Path(__file__).resolve().parents[1] / "src")
CONFIG = {"algorithm": "grpo", "grpo": {"beta": 0.04, "group_size": 8}}


def _log_two_steps(logger: MetricsLogger) -> None:
    logger.log({"reward/total": 0.5, "loss/kl": float("nan"), "eval/n": 40}, step=1)
    logger.log({"reward/total": 0.75}, step=2)
    logger.close()


# ----------------------------------------------------------------------------- what every tracker gets


class FakeTracker:
    opened: list["FakeTracker"] = []

    def __init__(self, info):
        self.info, self.rows, self.finished = info, [], False
        FakeTracker.opened.append(self)

    def log(self, scalars, step):
        self.rows.append((step, scalars))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake(monkeypatch):
    FakeTracker.opened = []
    monkeypatch.setitem(reporters.REPORTERS, "fake", FakeTracker)
    monkeypatch.setattr(reporters, "_installed", lambda module: True)
    FakeTracker.package = "fake"
    return FakeTracker


def test_tracker_gets_config_yaml_once_then_each_lines_numbers_then_finish(tmp_path, fake):
    run = tmp_path / "grpo-demo"
    run.mkdir()
    (run / "config.yaml").write_text("algorithm: grpo\ngrpo:\n  beta: 0.04\n  group_size: 8\n")
    _log_two_steps(MetricsLogger(run, report_to=["fake"]))

    (tracker,) = fake.opened
    assert tracker.info.config == CONFIG and tracker.info.name == "grpo-demo" and tracker.info.resumed is False
    (s1, first), (s2, second) = tracker.rows
    lines = read_metrics(run / "metrics.jsonl")
    # the same numbers as metrics.jsonl, step given apart, the NaN (null) left out
    assert (s1, s2) == (1, 2)
    assert first == {"time/elapsed": lines[0]["time/elapsed"], "reward/total": 0.5, "eval/n": 40}
    assert second == {"time/elapsed": lines[1]["time/elapsed"], "reward/total": 0.75}
    assert tracker.finished


def test_resumed_run_tells_the_tracker_and_explicit_config_wins(tmp_path, fake):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "time/elapsed": 3.0}\n')
    MetricsLogger(tmp_path, report_to=["fake", "fake"], config={"a": 1}, project="p").close()
    (tracker,) = fake.opened  # a name given twice opens one tracker
    assert (tracker.info.resumed, tracker.info.config, tracker.info.project) == (True, {"a": 1}, "p")


def test_disabled_logger_opens_no_tracker(tmp_path, fake):
    MetricsLogger(tmp_path / "run", enabled=False, report_to=["fake"]).log({"reward/total": 1.0}, step=1)
    assert fake.opened == [] and not (tmp_path / "run").exists()


def test_failing_tracker_is_dropped_with_one_warning_and_jsonl_goes_on(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(FakeTracker, "log", lambda self, scalars, step: 1 / 0)
    logger = MetricsLogger(tmp_path, report_to=["fake"])
    with pytest.warns(UserWarning, match=r"stopped logging to fake after an error \(ZeroDivisionError"):
        logger.log({"reward/total": 0.5}, step=1)
    logger.log({"reward/total": 0.75}, step=2)  # no second warning: the tracker is gone
    assert logger.reporters == []
    assert [r["reward/total"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0.5, 0.75]


def test_trackers_opened_before_one_that_fails_are_finished(tmp_path, fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError, match="wandb"):
        MetricsLogger(tmp_path, report_to=["fake", "wandb"])
    assert fake.opened[0].finished


def test_numeric_keeps_only_numbers_without_step():
    assert numeric({"step": 3, "time/elapsed": 1.5, "a": None, "b": True, "c": "x", "d": 2}) == {"time/elapsed": 1.5, "d": 2}


# ----------------------------------------------------------------------------- bad choices


def test_unknown_tracker_names_the_key_and_the_allowed_ones(tmp_path):
    with pytest.raises(UserError, match=r"run\.report_to: unknown tracker\(s\) \['mlflow'\]; allowed: tensorboard, wandb, trackio"):
        MetricsLogger(tmp_path, report_to=["mlflow"])
    with pytest.raises(UserError, match=r"run\.report_to: expected a list"):
        check_report_to("wandb")


@pytest.mark.parametrize("name, modules", [
    ("tensorboard", ["tensorboard", "torch.utils.tensorboard"]),
    ("wandb", ["wandb"]),
    ("trackio", ["trackio"]),
])
def test_missing_package_names_the_key_and_the_pip_extra(tmp_path, monkeypatch, name, modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail, as if not installed
    expected = rf"run\.report_to: '{name}' needs the {name} package, which is not installed; pip install 'tinyr1\[{name}\]'"
    with pytest.raises(UserError, match=expected):
        check_report_to([name])  # up front, without importing
    monkeypatch.setattr(reporters, "_installed", lambda module: True)  # found, yet the import fails
    with pytest.raises(UserError, match=expected):
        MetricsLogger(tmp_path, report_to=[name])


def test_importing_tracking_imports_no_tracker():
    code = ("import sys, tinyr1.tracking, tinyr1.reporters; "
            "print([m for m in ('wandb', 'trackio', 'tensorboard', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- wandb's mode


def test_wandb_mode_honours_env_then_key_then_netrc_else_offline(tmp_path):
    none = str(tmp_path / "no-netrc")
    assert wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}) == "disabled"
    assert wandb_mode({"WANDB_API_KEY": "k", "NETRC": none}) == "online"
    assert wandb_mode({"NETRC": none}) == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert wandb_mode({"NETRC": str(netrc)}) == "online"
    assert wandb_mode({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}) == "offline"


# ----------------------------------------------------------------------------- the real trackers


def test_tensorboard_event_file_holds_the_logged_scalars_and_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log_two_steps(MetricsLogger(tmp_path, report_to=["tensorboard"], config=CONFIG))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("reward/total")] == [(1, 0.5), (2, 0.75)]
    assert [(e.step, e.value) for e in acc.Scalars("eval/n")] == [(1, 40.0)]
    assert "loss/kl" not in acc.Tags()["scalars"]  # a null is not plotted as 0
    (text,) = acc.Tensors("config/text_summary")
    assert "beta: 0.04" in text.tensor_proto.string_val[0].decode()


def _wandb_records(run_file: Path):
    """Every record of a W&B run file (LevelDB log format: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf, block = run_file.read_bytes(), 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf, pos = buf + data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def _finished_wandb_run(run_file: Path, timeout: float = 30.0) -> list:
    """The records of a W&B run file once its exit record is there: wandb's service writes the
    file in the background, and `finish` may return before the last records reach the disk."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(_wandb_records(run_file))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_wandb_logs_offline_without_a_key_into_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "grpo-demo"
    _log_two_steps(MetricsLogger(run, report_to=["wandb"], config=CONFIG))

    (run_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    records = _finished_wandb_run(run_file)
    (meta,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (meta.project, meta.display_name) == ("tinyr1", "grpo-demo")
    config = {item.key: json.loads(item.value_json) for item in meta.config.update}
    assert config["grpo"] == {"beta": 0.04, "group_size": 8}
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [(h["_step"], h["reward/total"]) for h in history] == [(1, 0.5), (2, 0.75)]
    assert history[0]["eval/n"] == 40 and "loss/kl" not in history[0]


TRACKIO_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tinyr1.tracking import MetricsLogger
    run = Path(sys.argv[1])
    run.mkdir()
    (run / "config.yaml").write_text("grpo: {beta: 0.04}")  # what a training run writes first
    logger = MetricsLogger(run, report_to=["trackio"])
    logger.log({"reward/total": 0.5, "loss/kl": float("nan")}, step=1)
    logger.log({"reward/total": 0.75}, step=2)
    logger.close()
    resumed = MetricsLogger(run, report_to=["trackio"])  # metrics.jsonl has lines: the same trackio run goes on
    resumed.log({"reward/total": 1.0}, step=3)
    resumed.close()
""")


def test_trackio_writes_its_local_store_and_a_resumed_run_continues_it(tmp_path):
    pytest.importorskip("trackio")
    store, run = tmp_path / "trackio", tmp_path / "grpo-demo"
    # TRACKIO_DIR is read when trackio is imported, hence a fresh process
    env = {"PYTHONPATH": SRC, "TRACKIO_DIR": str(store), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", TRACKIO_SCRIPT, str(run)], env=env, check=True, capture_output=True, timeout=120)

    with sqlite3.connect(store / "tinyr1.db") as db:
        rows = db.execute("SELECT run_id, run_name, step, metrics FROM metrics ORDER BY step").fetchall()
        (config,) = db.execute("SELECT config FROM configs").fetchall()
    assert [(name, step, json.loads(m)["reward/total"]) for _, name, step, m in rows] == [
        ("grpo-demo", 1, 0.5), ("grpo-demo", 2, 0.75), ("grpo-demo", 3, 1.0)]
    assert len({run_id for run_id, *_ in rows}) == 1  # one trackio run across the resume
    assert "loss/kl" not in json.loads(rows[0][3]) and "time/elapsed" in json.loads(rows[0][3])
    assert json.loads(config[0])["grpo"] == {"beta": 0.04}
