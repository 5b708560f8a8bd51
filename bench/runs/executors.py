"""Executors: where the cells of a sweep run. The run loop decides *which* cells run and writes
every row itself; an executor only turns jobs into outcomes.

    executor.map(jobs, progress_for) -> iterator of (job, outcome), as cells finish

`jobs` is a lazy iterator: the loop decides whether to skip a cell (a shorter length of its series
failed) when the executor asks for it, so an executor should pull jobs only as it has room to run
them. `progress_for(job)` gives a callback for the cell's own progress (a training run's loss), or
None; an executor that runs cells elsewhere may ignore it.

`local` (the default) runs each job in this process, one after another. A distributed executor
(e.g. Ray: one remote task per job, GPUs as resources) implements the same `map`, shipping `Job`s to
workers that call `run_job` and returning the `Outcome`s; the single writer, resume and retry stay
in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from archbench.bench.experiments import Progress
from archbench.bench.runs.cell import Job, Outcome, run_job

ProgressFor = Callable[[Job], Progress | None]


class Executor(Protocol):
    def map(self, jobs: Iterable[Job], progress_for: ProgressFor) -> Iterator[tuple[Job, Outcome]]: ...


class LocalExecutor:
    """Each job in this process, in order: the per-cell time limit is this process's alarm."""

    def map(self, jobs: Iterable[Job], progress_for: ProgressFor) -> Iterator[tuple[Job, Outcome]]:
        for job in jobs:
            yield job, run_job(job, progress_for(job))


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor}
