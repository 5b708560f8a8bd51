"""The one run loop: cells in, rows out, for every experiment kind and every executor.

The loop
  - skips cells already in the row store for this device, or for any device of the cluster a
    distributed executor runs on (resume: rerunning a command finishes it); for a kind whose figures
    are not the machine's (retrieval: a trained model's accuracy), a row from any machine of the
    device kind counts (schema `place`), so a grid outlives the machine it started on;
    with `retry_failed`, cells whose newest row is a failure (error, timeout, oom) or a skip caused by
    one run again — the old row stays in the file for the record, and the report takes the newest;
  - hands the remaining cells to an executor (bench/runs/executors.py) as jobs, each run under a
    per-cell time limit, with out-of-memory, time-outs and errors coming back as statuses;
  - skips the longer lengths of a series (same cell but for n) once a length failed, across resumes
    too, and cells that cannot run by design (a decode cell of a model without a recurrent step);
  - appends and fsyncs one row per cell (bench/runs/schema.py) in this one process, with provenance,
    so an interrupt loses only the cells in progress, and stops the run even where Python swallowed
    the KeyboardInterrupt (`_interrupts_noticed`); SIGTERM and SIGHUP stop it as Ctrl-C does;
  - shows done / total, the time elapsed and an estimate of the time left (bench/runs/eta.py: each
    part's cells left at the mean wall time of its finished ones), and, given `log`, hands it one
    plain line per finished cell (bench/runs/summary.py `cell_line`) — for a log file, where the
    progress bar does not draw;
  - holds the store's one-writer lock (store.RunLock) from before it reads the stored rows to the end:
    a results folder that cannot take rows, or that another run is writing, is refused before any
    cell runs, and a row that cannot be written whole (disk full) stops the sweep (RowWriteError).

Glossary
  newest   the row of a (cell key, place) written last (`Row.written_at`, then file order): the one
           that counts
  series   the cells of one spec but for its length n (`Experiment.series`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from archbench.bench.runs import store
from archbench.bench.runs.cell import Cell, Job, Outcome, Terminated, suspects, unique_cells
from archbench.bench.runs.eta import Eta, EtaColumn
from archbench.bench.runs.executors import Executor, LocalExecutor
from archbench.bench.runs.provenance import moment, provenance
from archbench.bench.runs.schema import (
    Row,
    RowSchemaError,
    cell_key,
    experiment,
    is_failure,
    is_retryable,
    place,
    read_rows,
    skipped_after_failure,
)
from archbench.bench.runs.summary import cell_line


def row_file(out_dir: Path, kind: str, device_name: str) -> Path:
    return Path(out_dir) / "raw" / f"{kind}_{store.slug(device_name)}.jsonl"


class _Failures:
    """The shortest failed length of each series, per place (schema `place`): longer lengths are skipped."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[int, str]] = {}

    def note(self, kind: str, spec: Any, status: str, where: str) -> None:
        series = experiment(kind).series(spec)
        if series is not None:
            key, n = (cell_key(series[0]), where), series[1]
            if key not in self.first or n < self.first[key][0]:
                self.first[key] = (n, status)

    def skip(self, kind: str, spec: Any, where: str) -> str | None:
        series = experiment(kind).series(spec)
        if series is None:
            return None
        failed = self.first.get((cell_key(series[0]), where))
        return skipped_after_failure(*failed, experiment(kind).series_name) \
            if failed and series[1] > failed[0] else None


def _one_writer(run):
    """Hold `out_dir`'s store lock around the whole of `run(cells, out_dir, ...)`."""

    @functools.wraps(run)
    def locked(cells: list[Cell], out_dir: Path, *args: Any, **kwargs: Any) -> list[Row]:
        with store.RunLock(out_dir):
            return run(cells, out_dir, *args, **kwargs)

    return locked


STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


def _stop(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextlib.contextmanager
def _interrupts_noticed():
    """Yield a function giving the signal (Ctrl-C, SIGTERM or SIGHUP) that came while the block ran, or
    None; the signal still stops the run at once, raising `_stop(signum)`.

    Why notice: Python drops an exception raised while it runs a weakref callback or a `__del__`
    ("Exception ignored in ..."), and a Ctrl-C landing there would be lost — the run went on to its last
    cell. The loop checks between cells, so such a Ctrl-C stops it there.
    Why SIGTERM and SIGHUP too: `kill` or a closed terminal then ends a run as Ctrl-C does (finished
    rows kept, one line, exit 128 + signum) instead of silently, and in place of the handler a Ray
    driver installs (an exit in the middle of its shutdown, with C++ crash dumps).
    Only on the main thread, and only where the signal has Python's own Ctrl-C handler (SIGINT), or is
    not ignored (SIGTERM, SIGHUP: `nohup` ignores SIGHUP, and it stays ignored)."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def stop_run(signum: int, frame: Any) -> None:
        came.append(signum)
        raise _stop(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        ours = handler is signal.default_int_handler if signum == signal.SIGINT else \
            handler not in (signal.SIG_IGN, None)
        if ours:
            previous[signum] = signal.signal(signum, stop_run)
    try:
        yield lambda: came[0] if came else None
    except KeyboardInterrupt as exc:
        if came and came[0] != signal.SIGINT and not isinstance(exc, Terminated):
            raise _stop(came[0]) from None  # a library that turned our exception into its own Ctrl-C (Ray)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@_one_writer
def run_cells(cells: list[Cell], out_dir: Path, *, time_limit_s: float | None = None, budget_s: float = 1.0,
              retry_failed: bool = False, executor: Executor | None = None,
              console: Console | None = None, log: Callable[[str], None] | None = None) -> list[Row]:
    """Run every cell not yet stored for this device (and, with `retry_failed`, every stored failure);
    return the rows written by this call, in the order they were written. `log` gets one line per
    finished cell."""
    console = console or Console(stderr=True)
    executor = executor or LocalExecutor()
    cells = unique_cells(cells)  # for every executor: one that runs cells at once would run both copies
    raw = Path(out_dir) / "raw"
    newest: dict[tuple[str, str], Row] = {}
    for row in read_rows(raw) if raw.is_dir() else []:
        old = newest.get(key := (row.cell, row.place))  # the row written last wins (`Row.written_at`),
        if old is None or row.written_at >= old.written_at:  # then the later in file order
            newest[key] = row
    failures = _Failures()
    for row in newest.values():
        if is_failure(row.status) and not retry_failed:  # retried failures must not skip their series
            failures.note(row.kind, row.spec, row.status, row.place)

    provenances: dict[tuple[str, str], list[dict]] = {}

    def provenances_of(spec: Any) -> list[dict]:
        """One provenance per device a cell may run on: the local one, or each of a cluster's devices
        (an executor's `provenances`, bench/runs/executors.py); a cell stored on any of them is done."""
        device, dtype = str(getattr(spec, "device", "cpu")), str(getattr(spec, "dtype", "float32"))
        if (device, dtype) not in provenances:
            devices = getattr(executor, "provenances", None)
            provenances[device, dtype] = devices(device, dtype) if devices else [provenance(device, dtype)]
        return provenances[device, dtype]

    written: list[Row] = []

    def write(row: Row) -> None:
        store.RowStore(row_file(out_dir, row.kind, row.device_name)).append(row.to_json())
        newest[(row.cell, row.place)] = row
        written.append(row)
        if is_failure(row.status):
            failures.note(row.kind, row.spec, row.status, row.place)

    def to_run(kind: str, spec: Any) -> bool:
        """Whether a cell is expected to run (not stored, not skipped by design): what the ETA prices."""
        old = _stored(newest, kind, spec, provenances_of(spec), retry_failed)[1]
        stored = old is not None and not (retry_failed and is_retryable(old.status))
        return not stored and experiment(kind).skip_reason(spec) is None

    expected = [to_run(kind, spec) for kind, spec, _, _ in cells]
    stored_walls: dict[tuple[str, str], list[float]] = {}  # what each part's cells took in earlier runs
    for row in newest.values():
        if row.ok and row.wall_s:
            stored_walls.setdefault(_eta_part(row.kind, row.part), []).append(row.wall_s)
    eta = Eta((_eta_part(kind, part) for (kind, _, _, part), e in zip(cells, expected, strict=True) if e),
              stored=stored_walls)
    kept_failures = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               EtaColumn(eta), *getattr(executor, "progress_columns", ()))  # a cluster's queued / running
    with Progress(*columns, console=console, transient=False) as bar, _interrupts_noticed() as interrupted:
        task = bar.add_task("cells", total=len(cells))

        def logged(row: Row, label: str) -> None:
            if log is not None:
                log(cell_line(row, int(bar.tasks[0].completed), len(cells), label, eta.text()))

        def pending():
            """The jobs to run, decided one at a time as the executor asks (see executors.py)."""
            nonlocal kept_failures
            for (kind, spec, grid, part), runs in zip(cells, expected, strict=True):
                if signum := interrupted():
                    raise _stop(signum)
                prov, old = _stored(newest, kind, spec, provenances_of(spec), retry_failed)
                if old is not None and not (retry_failed and is_retryable(old.status)):
                    kept_failures += is_retryable(old.status)
                    bar.advance(task)
                    continue
                exp = experiment(kind)
                reason = exp.skip_reason(spec)
                prov, status = next(((p, s) for p in provenances_of(spec)
                                     if (s := failures.skip(kind, spec, place(kind, p)))), (prov, None))
                status = status or (f"skipped: {reason}" if reason else None)
                if status is not None:
                    if runs:
                        eta.drop(_eta_part(kind, part))
                    bar.advance(task)
                    if old is None or old.status != status:  # the same skip again adds nothing
                        row = Row(kind, spec, None, status, prov, 0.0, grid, part)
                        write(row)
                        logged(row, exp.label(spec))
                    continue
                bar.update(task, description=exp.label(spec))
                eta.start(_eta_part(kind, part))
                yield Job(kind, spec, budget_s, time_limit_s or exp.default_time_limit_s, grid, part)

        def progress_for(job: Job):
            return functools.partial(_describe, bar, task, experiment(job.kind).label(job.spec))

        for job, outcome in executor.map(pending(), progress_for):  # an outcome may name the node it ran on
            prov = getattr(outcome, "provenance", None) or {**provenances_of(job.spec)[0], **moment()}
            row = _row(job, outcome, prov)
            write(row)
            eta.finish(_eta_part(job.kind, job.part), outcome.wall_s)
            bar.advance(task)
            logged(row, experiment(job.kind).label(job.spec))
            if signum := interrupted():  # a Ctrl-C that Python swallowed inside the cell: stop after its row
                raise _stop(signum)
    if kept_failures:
        console.print(f"{kept_failures} stored cell(s) failed earlier and were kept as they are; "
                      "--retry-failed runs them again")
    return written


def _eta_part(kind: str, part: str | None) -> tuple[str, str]:
    """The cells priced alike by the ETA: one part of a grid (a grid without parts: one kind)."""
    return kind, part or ""


def _stored(newest: dict[tuple[str, str], Row], kind: str, spec: Any, provs: list[dict],
            retry_failed: bool) -> tuple[dict, Row | None]:
    """(the provenance, the stored row) that decide a cell over the devices it may run on: a row that
    counts as done if any device's place has one (schema `place`: the machine, or for a kind whose
    figures are not the machine's, any machine of its device kind), else a failure to retry, else (the
    first device, None)."""
    stored = [(p, newest[key]) for p in provs if (key := (cell_key(spec), place(kind, p))) in newest]
    done = [(p, row) for p, row in stored if not (retry_failed and is_retryable(row.status))]
    return (done or stored or [(provs[0], None)])[0]


def _row(job: Job, outcome: Outcome, prov: dict) -> Row:
    """The row of a finished job; a result that does not fit its schema, or holds a NaN or infinity
    (which JSON cannot: a figure that cannot be measured is None), becomes an error row naming the
    code that ran (the experiment's or a plugin's bug is recorded, the sweep goes on)."""
    row = Row(job.kind, job.spec, outcome.result, outcome.status, prov, outcome.wall_s, job.grid, job.part)
    if bad := _non_finite(outcome.result, "result"):
        error = f"NonFiniteResult: not a finite number: {', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}"
    else:
        try:
            return row.checked()
        except RowSchemaError as exc:
            error = f"RowSchemaError: {exc}"
    return Row(job.kind, job.spec, None, f"error: {error[:240]}; ran {suspects(job.spec)}"[:400], prov,
               outcome.wall_s, job.grid, job.part)


def _non_finite(value: Any, path: str) -> list[str]:
    """'path.field = nan' for each NaN or infinite float in a result (its dataclasses, dicts, lists)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path} = {value}"]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [bad for i, v in enumerate(value) for bad in _non_finite(v, f"{path}[{i}]")]
    return []


def _describe(bar: Progress, task: Any, label: str, fraction: float, info: str) -> None:
    """Show a cell's own progress (e.g. a training run's loss and accuracy) on the sweep's bar."""
    bar.update(task, description=f"{label}: {info}")
