"""The one run loop: cells in, rows out, for every suite.

A *cell* is a JSON-able dict with a `kind` ("scaling" or "retrieval") and everything needed to
reproduce it. The loop
  - skips cells already in the row store for this device (resume: rerunning a command finishes it),
  - runs each remaining cell under a per-cell time limit, turning out-of-memory, time-outs and
    errors into rows with a `status` instead of stopping the sweep,
  - skips longer lengths of a series (same cell but for seq_len) once a shorter one failed,
  - appends and flushes one row per finished cell, with provenance, so an interrupt loses only the
    cell in progress.
"""

from __future__ import annotations

import functools
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from archbench.bench import store

LABEL_FIELDS = ("arch", "mode", "task", "seq_len", "d_model")  # what the progress bar shows per cell


class CellTimeout(Exception):
    pass


def cell_key(spec: dict[str, Any]) -> str:
    return store.canonical_json(spec)


def series_key(spec: dict[str, Any]) -> str:
    """The cell without its length: cells of one series differ only in seq_len."""
    return cell_key({k: v for k, v in spec.items() if k != "seq_len"})


CellProgress = Callable[[float, str], None]  # (fraction of the cell done, one-line status)


def _run_scaling(spec: dict[str, Any], budget_s: float, progress: CellProgress) -> dict[str, Any]:
    from archbench.bench.scaling import measure_cell

    return measure_cell(spec, budget_s=budget_s)


def _run_retrieval(spec: dict[str, Any], budget_s: float, progress: CellProgress) -> dict[str, Any]:
    from archbench.bench.train import run_cell

    return run_cell(spec, progress=progress)


EXECUTORS: dict[str, Callable[[dict[str, Any], float, CellProgress], dict[str, Any]]] = {
    "scaling": _run_scaling,
    "retrieval": _run_retrieval,
}


def cannot_run(spec: dict[str, Any]) -> str | None:
    """Why a cell cannot run at all, by design rather than failure (a decode cell for a mixer
    without a recurrent step), or None. Such a cell becomes a "skipped: …" row, not an error."""
    if spec["kind"] == "scaling":
        from archbench.bench.scaling import skip_reason

        return skip_reason(spec)
    return None


def failure_status(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError) or "out of memory" in text.lower() or \
            "can't allocate memory" in text:
        return "oom"
    return f"error: {type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}".rstrip(": ")


def _describe(bar: Progress, job: Any, label: str, fraction: float, info: str) -> None:
    """Show a cell's own progress (e.g. a training run's loss and accuracy) on the sweep's bar."""
    bar.update(job, description=f"{label}: {info}")


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in this (main) thread after `seconds`. A single long kernel finishes first:
    Python checks for signals between operations, which is enough for a per-cell budget."""
    if not seconds:
        yield
        return

    def on_alarm(signum, frame):
        raise CellTimeout(f"exceeded {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Per-cell time limits when the user gives none: a scaling cell is seconds of timed repeats, a
# retrieval cell a whole training run.
DEFAULT_TIME_LIMIT_S = {"scaling": 120.0, "retrieval": 3600.0}


def row_file(out_dir: Path, kind: str, device_name: str) -> Path:
    return Path(out_dir) / "raw" / f"{kind}_{store.slug(device_name)}.jsonl"


def run_cells(cells: list[dict[str, Any]], out_dir: Path, *, time_limit_s: float | None = None,
              budget_s: float = 1.0, console: Console | None = None) -> list[dict[str, Any]]:
    """Run every cell not yet stored for this device; return the rows written by this call."""
    console = console or Console(stderr=True)
    stored = [row for path in sorted((Path(out_dir) / "raw").glob("*.jsonl"))
              for row in store.RowStore(path).rows()]
    done = {(r.get("cell"), r.get("device_name")) for r in stored}
    # A resumed sweep still skips the lengths beyond a stored failure.
    failed_series: dict[str, str] = {
        series_key(json.loads(r["cell"])): f"n={r.get('seq_len')} was {r['status']}"
        for r in stored if r.get("status") not in ("ok", None) and not str(r["status"]).startswith("skipped")
    }
    provenance_by_device: dict[str, dict] = {}
    written: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        job = bar.add_task("cells", total=len(cells))
        for spec in cells:
            device = spec["device"]
            if device not in provenance_by_device:
                provenance_by_device[device] = store.provenance(device, spec.get("dtype", "float32"))
            device_name = provenance_by_device[device]["device_name"]
            key = cell_key(spec)
            if (key, device_name) in done:
                bar.advance(job)
                continue
            label = " ".join(str(spec[k]) for k in LABEL_FIELDS if k in spec)
            bar.update(job, description=label)
            row = {"kind": spec["kind"], "cell": key, **spec, "device_name": device_name}
            skipped_because = failed_series.get(series_key(spec)) or cannot_run(spec)
            started = time.perf_counter()
            if skipped_because:
                row["status"] = f"skipped: {skipped_because}"
            else:
                try:
                    with time_limit(time_limit_s or DEFAULT_TIME_LIMIT_S[spec["kind"]]):
                        row.update(EXECUTORS[spec["kind"]](spec, budget_s, functools.partial(
                            _describe, bar, job, label)))
                    row["status"] = "ok"
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # every failure becomes a row; the sweep goes on
                    row["status"] = failure_status(exc)
                    failed_series[series_key(spec)] = f"n={spec.get('seq_len')} was {row['status']}"
                finally:
                    if device == "cuda":
                        torch.cuda.empty_cache()
            row["wall_s"] = round(time.perf_counter() - started, 3)
            row["provenance"] = provenance_by_device[device]
            store.RowStore(row_file(out_dir, spec["kind"], device_name)).append(row)
            done.add((key, device_name))
            written.append(row)
            bar.advance(job)
    return written


SUMMARY_COLUMNS = {
    "scaling": ("arch", "mode", "seq_len", "backend", "status", "time_median_s", "peak_mem_bytes",
                "state_bytes"),
    "retrieval": ("arch", "task", "seq_len", "num_kv_pairs", "d_model", "lr", "status", "accuracy",
                  "train_seconds"),
}


def summary_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """Compact tables, one per kind of cell, of the rows one command wrote (end of `archbench run`)."""
    tables = []
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        table = Table(*SUMMARY_COLUMNS[kind], title=f"{len(mine)} {kind} cells measured this run")
        for r in mine:
            table.add_row(*(_fmt(r.get(c)) for c in SUMMARY_COLUMNS[kind]))
        tables.append(table)
    return tables


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
