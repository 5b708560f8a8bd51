"""One cell, run where an executor puts it: the experiment's `run` under a time limit, every failure
turned into a status instead of an exception.

This is the unit of work an executor ships (bench/runs/executors.py): a `Job` in, an `Outcome` out,
both plain picklable data. Nothing here writes rows; the run loop does, in one process. Each cell runs
with torch's process-wide settings and the signal handlers put back after it (archs/isolation.py): a
cell that changed them becomes an error row naming the plugin that ran in it (`suspects`), and the
cells after it run as if it never had.

Glossary
  cell     (kind, spec): a point of a suite's grid
  job      (kind, spec, budget_s, time_limit_s): everything needed to run one cell anywhere
  outcome  (result or None, status, wall_s)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from archbench.archs.isolation import guarded
from archbench.bench.experiments import Progress, get
from archbench.bench.runs.schema import OK, cell_key


class CellTimeout(Exception):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the run stops as on Ctrl-C (finished rows kept), exit status 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Cell(NamedTuple):
    """One point of a grid: an experiment kind and its Spec, and where in which grid it belongs."""

    kind: str
    spec: Any
    grid: str | None = None
    part: str | None = None


def unique_cells(cells: Iterable[Cell]) -> list[Cell]:
    """Each cell once, the first of those with one key kept, in order. A command line may name a cell
    twice (`--models attention,attention`); run twice at once, as on a cluster, it would be stored
    twice, since a cell counts as stored only once its row is written."""
    seen: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        seen.setdefault((cell.kind, cell_key(cell.spec)), cell)
    return list(seen.values())


@dataclass(frozen=True)
class Job:
    kind: str
    spec: Any  # the kind's Spec
    budget_s: float  # seconds of timed repeats, for kinds that time a call
    time_limit_s: float  # the cell fails with "timeout" after this long
    grid: str | None = None  # the grid and part its row records
    part: str | None = None


@dataclass(frozen=True)
class Outcome:
    result: Any | None  # the kind's Result when status is "ok"
    status: str
    wall_s: float


def failure_status(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError) or "out of memory" in text.lower() or \
            "can't allocate memory" in text:
        return "oom"
    return f"error: {type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}".rstrip(": ")


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


def run_job(job: Job, progress: Progress | None = None) -> Outcome:
    """Run one cell; a failure (exception, out of memory, time limit) is an outcome, Ctrl-C is not.

    Anything else the cell raises is a failure too, `SystemExit` included: a plugin that calls
    `sys.exit()` in its `forward` gets an error row, and the sweep goes on to the next cell. So is a
    cell that changed torch's settings or a signal handler (put back before the next cell): its own
    figures were measured under settings its row does not record."""
    started = time.perf_counter()
    result, status, changed = None, OK, []
    try:
        with guarded() as changed, time_limit(job.time_limit_s):
            result = get(job.kind).run(job.spec, job.budget_s, progress)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # every failure becomes a row (SystemExit too); the sweep goes on
        status = failure_status(exc)
    finally:
        if str(getattr(job.spec, "device", "")).startswith("cuda"):
            torch.cuda.empty_cache()
    if changed:
        result, status = None, changed_status(job.spec, changed)
    return Outcome(result, status, round(time.perf_counter() - started, 3))


def changed_status(spec: Any, changed: list[str]) -> str:
    """The error status of a cell that left torch's settings or a signal handler changed."""
    return (f"error: GlobalStateChanged: {suspects(spec)} changed {'; '.join(changed)} "
            "(put back for the next cell)")[:400]


def suspects(spec: Any) -> str:
    """The registered code a cell ran, with where each came from: "mixer 'x' (plugin dist 0.1)" for
    each plugin among its mixers and task, else the built-ins it ran."""
    from archbench.archs import MIXERS
    from archbench.tasks import TASKS

    found = []
    for name in dict.fromkeys(getattr(getattr(spec, "model", None), "mixers", {}).values()):
        found.append(("mixer", name, _origin(MIXERS, name)))
    if task := getattr(getattr(spec, "task", None), "name", None):
        found.append(("task", task, _origin(TASKS, task)))
    plugins = [f for f in found if f[2].startswith("plugin")] or found
    return ", ".join(f"{what} {name!r} ({origin})" for what, name, origin in plugins) or "this cell"


def _origin(registry: Any, name: str) -> str:
    try:
        return str(registry.origin(name))
    except KeyError:  # not registered in this process: nothing more to say
        return "unregistered"
