"""Result rows: an append-only JSON Lines file per sweep, with provenance, resume keys and a loader.

One row is one measured cell (a dict). `append` writes one line and fsyncs it, so a run killed at
any moment loses at most the cell in progress; the torn line it may leave at the end of the file is
skipped with a warning when read, and cut off (with a warning) by the next `append`. A damaged line
anywhere else is an error: rows are never dropped silently.

Glossary
  row         one JSON object on one line: spec fields, measured figures, status, provenance
  cell key    the tuple of a row's spec fields that identifies its cell, for resuming a sweep
  provenance  where a row came from: git commit, package versions, device, dtype, time
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import platform
import re
import subprocess
import warnings
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy
import pandas as pd
import torch

from archbench.bench.measure import cpu_peak_method, device_name


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


def _dumps(value: Any) -> str:
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
            rows.append(row)
        return rows

    def append(self, row: dict) -> None:
        """Write `row` as one line and fsync it, so a kill after return cannot lose it."""
        try:
            line = (_dumps(row) + "\n").encode("utf-8")
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


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# What a row's figures depend on, relative to the checkout's top level.
CODE_PATHS = ("archs", "tasks", "bench", "pyproject.toml")


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """`{"git_commit", "git_dirty"}` of the checkout holding this package; None if there is none.

    The checkout must be the package's own (its top level holds bench/), so an install inside some
    other repository (a venv in a project) is not mistaken for archbench's commit. Dirty means the
    code that measures differs from the commit (CODE_PATHS): a sweep into the committed results/, or
    an edited README, would otherwise mark every row. A new untracked file there (a mixer) counts.
    """
    repo = repo or Path(__file__).resolve().parent.parent
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != repo.resolve():
        return {"git_commit": None, "git_dirty": None}
    status = _git(repo, "status", "--porcelain", "--", *CODE_PATHS)
    return {
        "git_commit": _git(repo, "rev-parse", "HEAD"),  # None before the first commit
        "git_dirty": None if status is None else bool(status),
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _plugin_versions() -> dict[str, dict[str, str]]:
    plugins = {}
    for kind, module in (("archs", "archbench.archs"), ("tasks", "archbench.tasks")):
        try:
            registry = getattr(importlib.import_module(module), "MIXERS" if kind == "archs" else "TASKS")
            plugins[kind] = registry.plugin_versions()
        except (ImportError, AttributeError):  # that registry is not built yet
            pass
    return plugins


def provenance(device: str, dtype: str) -> dict[str, Any]:
    """Everything needed to tell where a row came from and to rerun it: code, versions, machine."""
    return {
        **git_info(),
        "archbench_version": _version("archbench"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(dtype),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_peak_method": cpu_peak_method(),
        "plugins": _plugin_versions(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def load_rows(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All rows of a .jsonl file, of a directory's *.jsonl files (recursive, sorted), or of a list.

    A path that does not exist yet holds no rows (an empty frame): a new sweep resumes from nothing.
    """
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        files = sorted(root.rglob("*.jsonl")) if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    rows = [row for f in files for row in RowStore(f).rows()]
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
