"""Small file helpers shared across the package: JSON lines in and out, atomic writes.

Readers raise `UserError` naming the file and line; writers never leave a half-written file
behind (write to a temporary file, then rename).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinyr1.errors import UserError

# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): valid only as half of a pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line of a JSON Lines file.

    Line numbers start at 1. A file whose name ends in `.gz` is read through gzip (an archived run's
    evaluations). A missing file, a folder, a line that is not UTF-8 or not JSON, a line that is
    not a JSON object, or a string holding a lone surrogate (`"\\ud800"`, which no UTF-8 file can
    hold) raises `UserError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: " + ("a folder, expected a JSON Lines file" if path.is_dir() else
                                       "file not found (expected a JSON Lines file)"))
    with path.open("rb") as f:
        for lineno, raw in enumerate(_gunzipped(f, path) if path.suffix == ".gz" else f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line is {raw[e.start]:#04x}); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg}); expected one JSON object per line") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            if _SURROGATE_ESCAPE.search(line):
                _check_unicode(obj, f"{path}:{lineno}")
            yield lineno, obj


def _gunzipped(f, path: Path) -> Iterator[bytes]:
    """The lines of a gzip file; `UserError` naming it when it is not gzip or is cut short."""
    try:
        yield from gzip.GzipFile(fileobj=f)
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable gzip file ({e}); expected gzipped JSON Lines") from None


def _check_unicode(obj: Any, where: str) -> None:
    """Refuse lone surrogates (a pair decodes to one character; half of one cannot be encoded)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise UserError(f"{where}: a string holds a lone surrogate ({e.object[e.start]!r}), which is not a character; "
                        "fix the escape (\\ud800-\\udfff come only in pairs)") from None


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically (temp file + rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes the file private (0600); results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSON Lines atomically."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row to a JSON Lines file (used for metrics logged as a run goes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def append_jsonl_synced(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Append rows as whole lines in one write, flushed to disk before returning: what a resumable
    writer (`rm collect`, `prm label`) records as done is on disk when it says so."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def cut_partial_last_line(path: str | os.PathLike) -> None:
    """Cut a JSON Lines file back to its last whole line (what a crash mid-append leaves); a
    missing file is left alone. Files appended line by line call this before resuming."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def check_output_file(out: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (), what: str = "--out") -> Path:
    """`out` as a file to write, checked before any work: not a folder, and not one of `inputs`
    (writing there would destroy the input). Raises `UserError` naming the option."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{what} {out}: a folder; expected the path of a file to write")
    for given in inputs:
        if out.resolve() == Path(given).resolve() or (out.exists() and Path(given).exists() and os.path.samefile(out, given)):
            raise UserError(f"{what} {out} is the input file {given}; writing there would overwrite it, so pick another path")
    return out


def check_output_dir(out: str | os.PathLike, what: str = "--out") -> Path:
    """`out` as a folder to write results into, checked before any work: not a file, and not a
    training run folder or a model folder, whose summary.json or files a result would replace."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{what} {out}: a file; expected a folder to write into")
    for marker, kind in (("config.yaml", "a training run"), ("config.json", "a model"), ("adapter_config.json", "an adapter"),
                         ("tinyr1_reward_model.json", "a reward model")):
        if (out / marker).is_file():
            raise UserError(f"{what} {out}: that folder holds {kind} ({marker}), whose files the results would replace; "
                            "pick another folder")
    return out


def get_dotted(mapping: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """`mapping["a"]["b"]` for `"a.b"` (a saved config.yaml read as a dict), or `default` when a
    key is missing or a value on the way is not a mapping."""
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
