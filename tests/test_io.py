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


def test_a_gzipped_jsonl_file_reads_like_the_plain_one_and_names_its_bad_line(tmp_path):
    import gzip

    import pytest

    from tinyr1.errors import UserError

    (tmp_path / "ok.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n\n{"b": "\xc3\xa9"}\n'))
    assert list(read_jsonl(tmp_path / "ok.jsonl.gz")) == [(1, {"a": 1}), (3, {"b": "é"})]
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n{"b": \n'))
    with pytest.raises(UserError, match=r"bad\.jsonl\.gz:2: malformed JSON"):
        list(read_jsonl(tmp_path / "bad.jsonl.gz"))
    (tmp_path / "plain.jsonl.gz").write_bytes(b'{"a": 1}\n')  # named .gz, not gzipped
    with pytest.raises(UserError, match=r"plain\.jsonl\.gz: not a readable gzip file"):
        list(read_jsonl(tmp_path / "plain.jsonl.gz"))
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:30])  # cut short
    with pytest.raises(UserError, match=r"cut\.jsonl\.gz: not a readable gzip file"):
        list(read_jsonl(tmp_path / "cut.jsonl.gz"))
