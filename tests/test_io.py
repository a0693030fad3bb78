"""Atomic writes: content, no temp files left, a normal file mode."""

import os
import stat

from tinyr1.io import read_jsonl, write_json_atomic, write_jsonl


def test_atomic_writes_leave_a_normal_file(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"y": 2}])
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert list(read_jsonl(tmp_path / "b.jsonl")) == [(1, {"y": 2})]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.jsonl"]
