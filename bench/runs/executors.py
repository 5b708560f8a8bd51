"""Executors: where the cells of a sweep run. The run loop decides *which* cells run and writes
every row itself; an executor only turns jobs into outcomes.

    executor.map(jobs, progress_for) -> iterator of (job, outcome), as cells finish

`jobs` is a lazy iterator: the loop decides whether to skip a cell (a shorter length of its series
failed) when the executor asks for it, so an executor should pull jobs only as it has room to run
them. `progress_for(job)` gives a callback for the cell's own progress (a training run's loss), or
None; an executor that runs cells elsewhere may ignore it.

`local` (the default) runs each job in this process, one after another. `ray`
(bench/runs/ray_executor.py) runs each job as one Ray task on a cluster, GPUs and CPUs as resources;
the single writer, resume and retry stay in the loop. An executor that runs cells on other machines
also has, optionally:
  provenances(device, dtype) -> list[dict]   the provenance of each distinct device a cell of that
                                             device may land on (resume counts a cell done on any)
  progress_columns                           extra rich columns for the loop's progress bar
and may return outcomes with a `provenance` attribute: the node that ran the cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from archbench.bench.experiments import Progress
from archbench.bench.runs.cell import Job, Outcome, run_job

ProgressFor = Callable[[Job], Progress | None]


class ExecutorError(RuntimeError):
    """An executor that cannot run here (a missing package, an unreachable or unfit cluster): one line."""


class Executor(Protocol):
    def map(self, jobs: Iterable[Job], progress_for: ProgressFor) -> Iterator[tuple[Job, Outcome]]: ...


class LocalExecutor:
    """Each job in this process, in order: the per-cell time limit is this process's alarm."""

    def map(self, jobs: Iterable[Job], progress_for: ProgressFor) -> Iterator[tuple[Job, Outcome]]:
        for job in jobs:
            yield job, run_job(job, progress_for(job))


def _ray(**options) -> Executor:
    from archbench.bench.runs.ray_executor import RayExecutor  # imports ray only when it connects

    return RayExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": _ray}
