"""The row store: an append-only JSON Lines file, one JSON object per line, fsynced per append.

This module knows JSON lines, not what is in them (bench/runs/schema.py turns lines into typed rows).
`append` writes one line and fsyncs it, so a run killed at any moment loses at most the cell in
progress. A torn line — the end of a file that does not end in a newline, left by a writer killed
mid-line — is skipped with a warning when read, and cut off (with a warning) by the next `append`.
Every other unreadable line is an error, the last one included when it ends in a newline (it was
written whole, so it is damage, not an interrupted write): rows are never dropped silently.

Writes are checked end to end: a line is written whole and fsynced, or the file is cut back to
where it was and `RowWriteError` says why (a full disk, the file-size limit, an I/O error), so every
row written before stays whole and readable and no torn line is left behind. A number JSON has no
words for (NaN, Infinity, or a literal too large for a float, such as 1e400) is refused when read as
when written: it is an unreadable line, named by file and line.

Files that are not rows are written by `write_atomic`: a temporary file beside the target, fsynced,
then renamed over it, so a full disk or a kill leaves the old file whole (the report's tables, a
README's headline, a profile). Readers take only regular files (`regular_files`, `not_regular`): a
FIFO named like a row file would block `open` until some writer came, a folder would fail it.

One writer per store: `RunLock` holds an OS lock (flock) on `raw/.lock` for a whole run, with the
holder's pid in the file; a second run on the same folder is refused at once, naming that pid. The
kernel drops the lock when its holder exits, however it exits, so a killed run never leaves a stale
lock behind. The lock file itself stays: deleting it would let a third run lock a new file while the
second still holds the old one.

Glossary
  line      one JSON object, one row
  torn      a last line without its newline: a write that was interrupted
  cell key  canonical JSON of a cell's spec: the same cell always gives the same key (resume)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class CorruptResultError(ValueError):
    """A results file has an unreadable line that is not a torn last line."""


class StoreError(Exception):
    """The row store cannot be used; the message is one line that says what to do."""


class StoreUnusableError(StoreError):
    """The results folder cannot hold a row store (not a folder, not writable) or another run holds
    it: refused before anything is measured."""


class RowWriteError(StoreError):
    """A row could not be written whole (disk full, file-size limit, I/O error); the file was cut back
    to the rows before it."""


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


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON can hold (a missing figure is stored as null)")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is too large for a float (it would read as infinity)")
    return value


# Only a literal with a three-digit exponent or 309 digits can overflow a float: the slower, checked
# parse is for lines that hold one.
_HUGE = re.compile(rb"[eE][+]?[0-9]{3}|[0-9]{309}")


def loads(line: bytes) -> Any:
    """JSON as the writer (`dumps`) could have written it: NaN, Infinity and overflowing numbers are a
    ValueError, so what the report reads is what a run could store."""
    text = line.decode("utf-8")
    if _HUGE.search(line):
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    return json.loads(text, parse_constant=_not_a_number)


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
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = len(lines) if lines[-1].strip() else None  # the last line, if it lacks its newline
        rows = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                where = f"{self.path}:{lineno}"
                if lineno == torn:  # a run killed mid-write leaves at most this line, without "\n"
                    warnings.warn(f"skipping torn last line {where} (an interrupted write)", stacklevel=2)
                    break
                raise CorruptResultError(f"unreadable result row at {where}: {exc}") from None
            rows.append((lineno, row))
        return rows

    def append(self, row: dict) -> None:
        """Write `row` as one line and fsync it, so a kill after return cannot lose it; a write that
        fails or falls short leaves the file as it was and raises `RowWriteError`."""
        try:
            line = (dumps(row) + "\n").encode("utf-8")
        except ValueError as exc:  # NaN / inf: a missing figure is None, a failed cell has a status
            msg = f"cannot store a row in {self.path}: {exc}; use None for a missing figure"
            raise ValueError(msg) from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise RowWriteError(f"cannot write a row to {self.path}: {_reason(exc)}") from None
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                prefix, size = self._mend_tail(fd, size)
                line = prefix + line
            self._write_whole(fd, line, size)
        finally:
            os.close(fd)

    def _write_whole(self, fd: int, line: bytes, size: int) -> None:
        """Write all of `line` at the end (O_APPEND), then fsync; on any failure cut back to `size`.

        A write to a regular file falls short when the disk or the file-size limit runs out part way
        through the line; writing the rest then fails with the reason (ENOSPC, EFBIG), which is the
        error raised. A write that makes no progress at all is an error too.
        """
        view, done = memoryview(line), 0
        try:
            while done < len(line):  # with the run lock held, no other writer comes in between
                written = os.write(fd, view[done:])
                if written <= 0:
                    raise OSError(errno.EIO, f"the write stopped after {done} of {len(line)} bytes")
                done += written
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)  # frees the partial line's blocks too: this cannot need space
                os.fsync(fd)
            except OSError as cut:
                raise RowWriteError(f"cannot write a row to {self.path}: {_reason(exc)}; cutting the "
                                    f"partial row back also failed ({_reason(cut)}): the next read warns "
                                    "about a torn last line, the next append removes it") from None
            raise RowWriteError(f"cannot write a row to {self.path}: {_reason(exc)}; the {size:,} bytes "
                                "of rows before it are intact") from None

    def _mend_tail(self, fd: int, size: int) -> tuple[bytes, int]:
        """The file does not end in a newline: the bytes to write before the next line, and the size
        of the file they go after.

        A whole row missing only its newline keeps its place (prefix b"\n"). A torn fragment, left by
        a writer killed mid-line, is cut off: it was never a row, and left in place it would become a
        corrupt middle line once more rows follow it.
        """
        data = os.pread(fd, size, 0)
        cut = data.rfind(b"\n") + 1
        try:
            if isinstance(loads(data[cut:]), dict):
                return b"\n", size
        except ValueError:
            pass
        lineno = data.count(b"\n") + 1
        warnings.warn(f"dropping torn last line {self.path}:{lineno} before appending", stacklevel=3)
        os.ftruncate(fd, cut)
        return b"", cut


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# -- files that are not rows ----------------------------------------------------------------------------
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(path: str | os.PathLike) -> str | None:
    """What `path` is when it is not a regular file (a link to one counts as one), else None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a link to nothing" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({_reason(exc)})"
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a file")


def regular_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The regular files among `paths`; anything else is skipped with a warning naming it."""
    out = []
    for path in paths:
        what = not_regular(path)
        if what is None:
            out.append(Path(path))
        else:
            warnings.warn(f"skipping {path}: {what}, not a regular file", stacklevel=2)
    return out


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file at `path` by `data`, whole or not at all.

    The bytes go to a temporary file in the same folder, are fsynced and renamed over the target, so a
    full disk, the file-size limit or a kill leaves the old file as it was (and no temporary behind).
    A link is followed (the file it names is replaced, the link stays); the file keeps its permission
    bits and, where this process may set them, its owner. An OSError names the file.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {_reason(exc)}; it is unchanged") from None
    try:
        try:
            view, done = memoryview(data), 0
            while done < len(data):
                written = os.write(fd, view[done:])
                if written <= 0:
                    raise OSError(errno.EIO, f"the write stopped after {done} of {len(data)} bytes")
                done += written
            if old is None:  # mkstemp's 0600 is for the temporary: a new file gets the usual mode
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fd, 0o666 & ~umask)
            else:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                with contextlib.suppress(OSError):  # only root may give a file away
                    os.fchown(fd, old.st_uid, old.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {_reason(exc)}; it is unchanged") from None
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once its folder is synced
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


LOCK_NAME = ".lock"  # in OUT/raw: not a *.jsonl file, so readers never see it


class RunLock:
    """The one-writer lock of a results folder's row store (`OUT/raw`), held from `acquire` to
    `release` (or the holder's exit).

    `acquire` also checks, before anything is measured, that the store can be written at all: `out` and
    `out/raw` must be folders (made if missing) in which a file can be created and written. A second
    run is refused rather than made to wait or to share the cells: two runs on one machine would time
    their cells while competing for it, which is what the lock is there to prevent.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.raw = self.out_dir / "raw"
        self.path = self.raw / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:  # a name the file system refuses (too long) fails here, in one line
            for folder in (self.out_dir, self.raw):
                if folder.exists() and not folder.is_dir():
                    raise StoreUnusableError(f"{folder} is a file, not a folder: --out must be a folder "
                                             f"(rows go to {self.raw}/)")
            self.raw.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnusableError(f"cannot write rows under {self.raw}: {_reason(exc)}; choose a "
                                     "writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreUnusableError(f"another archbench run (pid {holder}) is writing rows to "
                                         f"{self.raw}; wait for it to finish, or use another --out") from None
            raise StoreUnusableError(f"cannot lock {self.path}: {_reason(exc)}") from None
        try:  # the holder's pid, for the message of a run refused; also proves the disk takes a write
            os.ftruncate(fd, 0)
            pid = f"{os.getpid()}\n".encode()
            if os.pwrite(fd, pid, 0) != len(pid):
                raise OSError(errno.ENOSPC, "short write (disk full?)")
        except OSError as exc:
            os.close(fd)
            raise RowWriteError(f"cannot write under {self.raw}: {_reason(exc)}") from None
        self._fd = fd
        try:
            self._only_regular_row_files()
        except BaseException:
            self.release()
            raise
        return self

    def _only_regular_row_files(self) -> None:
        """A FIFO or folder named like a row file is refused: reading it would block or fail, and it
        may be the very file this run appends to."""
        try:
            names = sorted(self.raw.rglob("*.jsonl"))
        except OSError as exc:
            raise StoreUnusableError(f"cannot list the rows under {self.raw}: {_reason(exc)}") from None
        for path in names:
            if (what := not_regular(path)) is not None:
                raise StoreUnusableError(f"{path} is {what}, not a regular file: rows are read from and "
                                         f"appended to regular *.jsonl files under {self.raw}/; move it "
                                         "away or choose another --out")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock; the file stays (module docstring)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
