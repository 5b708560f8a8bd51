"""The row store: an append-only JSON Lines file, one JSON object per line, fsynced per append.

This module knows JSON lines, not what is in them (bench/runs/schema.py turns lines into typed rows).
`append` writes one line and fsyncs it, so a run killed at any moment loses at most the cell in
progress; the torn line it may leave at the end of the file is skipped with a warning when read, and
cut off (with a warning) by the next `append`. A damaged line anywhere else is an error: rows are
never dropped silently.

Glossary
  line      one JSON object, one row
  cell key  canonical JSON of a cell's spec: the same cell always gives the same key (resume)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any


class CorruptResultError(ValueError):
    """A results file has an unreadable line that is not the (possibly torn) last one."""


def _json_default(obj: Any) -> Any:
    """JSON for the few non-JSON types rows tend to carry (numpy scalars, paths, dtypes)."""
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()  # numpy / torch scalar
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path) or type(obj).__module__ == "torch":  # torch.dtype, torch.device
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a result row: {obj!r}")


def dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON, and other tools (jq, browsers) reject them.
    return json.dumps(value, default=_json_default, allow_nan=False, ensure_ascii=False)


def slug(text: str, limit: int = 40) -> str:
    """Lower-case, [a-z0-9-] only: stable, filesystem-safe file name parts (raw files, report files)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit].strip("-") or "unknown"


def canonical_json(value: Any) -> str:
    """Canonical JSON: a cell built in memory (tuples, numpy ints, dicts in any order) gets the same
    key as the same cell read back from disk — the resume key of the run loop."""
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":"))


class RowStore:
    """Rows of one JSON Lines file: append one at a time, read them all back."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RowStore({str(self.path)!r})"

    def rows(self) -> list[dict]:
        """Every row in file order; a torn last line warns and is skipped, any other bad line raises."""
        return [row for _, row in self.numbered_rows()]

    def numbered_rows(self) -> list[tuple[int, dict]]:
        """(line number, row) in file order, for errors that name the line."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
        rows = []
        for k, (lineno, line) in enumerate(numbered):
            try:
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                where = f"{self.path}:{lineno}"
                if k == len(numbered) - 1:  # a run killed mid-write leaves at most this line torn
                    warnings.warn(f"skipping unreadable last line {where} (interrupted write?)", stacklevel=2)
                    break
                raise CorruptResultError(f"unreadable result row at {where}: {exc}") from None
            rows.append((lineno, row))
        return rows

    def append(self, row: dict) -> None:
        """Write `row` as one line and fsync it, so a kill after return cannot lose it."""
        try:
            line = (dumps(row) + "\n").encode("utf-8")
        except ValueError as exc:  # NaN / inf: a missing figure is None, a failed cell has a status
            msg = f"cannot store a row in {self.path}: {exc}; use None for a missing figure"
            raise ValueError(msg) from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = self._mend_tail(fd, size) + line
            os.write(fd, line)  # one write with O_APPEND: concurrent appenders do not interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    def _mend_tail(self, fd: int, size: int) -> bytes:
        """The file does not end in a newline: return the bytes to write before the next line.

        A whole row missing only its newline keeps its place (prefix b"\n"). A torn fragment, left by
        a writer killed mid-line, is cut off: it was never a row, and left in place it would become a
        corrupt middle line once more rows follow it.
        """
        data = os.pread(fd, size, 0)
        cut = data.rfind(b"\n") + 1
        try:
            if isinstance(json.loads(data[cut:].decode("utf-8")), dict):
                return b"\n"
        except ValueError:
            pass
        lineno = data.count(b"\n") + 1
        warnings.warn(f"dropping torn last line {self.path}:{lineno} before appending", stacklevel=3)
        os.ftruncate(fd, cut)
        return b""
