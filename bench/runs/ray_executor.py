"""The Ray executor: each cell of a sweep is one Ray task, placed on a cluster by the resources it
declares (Ray: Moritz et al. 2018, arXiv 1712.05889; Zoology and MAD-lab run their grids on it).

    archbench run SUITE --executor ray [--address auto|HOST:PORT] [--workers N] [--threads T]

A CUDA cell asks for one GPU and T CPUs, a CPU cell for T CPUs (torch set to T threads in the
worker), so Ray packs cells onto the cluster's GPUs and cores. The driver stays the one writer: a
task returns its outcome and its node's provenance (hostname, device) to the driver, where the run
loop (bench/runs/loop.py) appends the row, so resume, retry and dedup are the local executor's.

Decisions
  pull on room   jobs are pulled from the loop only while the cluster has free resources for them:
                 the skip of a longer n after a failure is decided as late as it can be, and every
                 submitted task holds its resources and runs (what the progress bar calls running).
  lost worker    a worker killed or a node lost mid-cell is retried once by Ray (`max_retries=1`): a
                 preempted node or a stray kill -9 is transient, and the retry completes the cell
                 exactly once. A second loss becomes an error row (`error: WorkerCrashedError: ...`)
                 that --retry-failed runs again: a cell that kills its worker each time (host memory, a
                 crashing kernel) costs two attempts, never a loop.
  time limit     enforced in the worker by the cell's own alarm (bench/runs/cell.py), as locally. The
                 driver also kills a task still running at (1 + max_retries) x the limit + a grace:
                 a kernel that never returns to Python cannot hold a slot forever.
  stopping       Ctrl-C, SIGTERM or SIGHUP to the driver ends it with one line, like the local
                 executor: a private instance is shut down with its cells; on a joined cluster the
                 cells in progress are cancelled as a Ctrl-C in their workers, and only those that
                 have not ended `stop_wait_s` later are killed (`_stop_all` says why).
  connection     `address=None` starts a private local instance of `workers` x T CPUs (all CPUs if
                 `workers` is None); "auto" or HOST:PORT joins a running cluster, on whose every node
                 archbench must be installed; an already initialised Ray (a test's) is used as it is.

Glossary
  driver   this process: the run loop and the one writer of rows
  worker   a Ray worker process; it runs one cell at a time (`ray::archbench_cell` in ps)
  T        `threads`: torch threads of one cell, and the CPUs its task reserves
  slot     what one cell reserves: {"CPU": T, "GPU": 0 or 1}; a CPU timing cell (a machine-bound kind,
           bench/experiments/base.py) reserves a whole node's CPUs, so nothing shares the machine it times
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.progress import ProgressColumn, Task
from rich.text import Text

from archbench.bench.runs.cell import Job, Outcome, run_job
from archbench.bench.runs.executors import ExecutorError, ProgressFor
from archbench.bench.runs.provenance import provenance
from archbench.bench.runs.schema import device_kind, experiment

INSTALL_HINT = "--executor ray needs the ray extra: pip install -e \".[ray]\""


class RayUnavailable(ExecutorError):
    """ray is not installed here."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class NodeOutcome(Outcome):
    provenance: dict[str, Any] | None = None  # the node that ran the cell; None when it was lost


def _device(job_or_spec: Any) -> tuple[str, str]:
    spec = getattr(job_or_spec, "spec", job_or_spec)
    return str(getattr(spec, "device", "cpu")), str(getattr(spec, "dtype", "float32"))


def slot(job: Job, threads: int, node_cpus: float = 0.0) -> dict[str, float]:
    """The resources one cell reserves: T CPUs, and one GPU for a CUDA cell. A CPU cell whose figures are
    the machine's (a timing: `Experiment.machine_bound`) reserves `node_cpus`, the CPUs of the smallest
    node, so on a cluster of like nodes it runs alone on its node while still using T threads: two
    timings sharing a machine's cores and caches would each time the other too."""
    cuda = device_kind(_device(job)[0]) == "cuda"
    alone = not cuda and experiment(job.kind).machine_bound
    return {"CPU": max(float(threads), node_cpus if alone else 0.0), "GPU": 1.0 if cuda else 0.0}


def _fits(need: dict[str, float], used: dict[str, float], total: dict[str, float]) -> bool:
    return all(used.get(k, 0.0) + v <= total.get(k, 0.0) for k, v in need.items() if v)


def node_provenance(device: str, dtype: str) -> dict[str, Any]:
    """This worker's provenance (hostname, device name, threads, versions) and its Ray node."""
    import ray

    return {**provenance(device, dtype), "executor": "ray",
            "ray_node_id": ray.get_runtime_context().get_node_id()}


def archbench_cell(job: Job, threads: int) -> tuple[Outcome, dict[str, Any]]:
    """One cell in a Ray worker: T torch threads (a worker may be reused by a task of another size),
    then the cell under its time limit; its own progress stays on the worker."""
    import torch

    torch.set_num_threads(threads)
    outcome = run_job(job)
    return outcome, node_provenance(*_device(job))


def archbench_probe(device: str, dtype: str, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return node_provenance(device, dtype)


@dataclass
class _Flight:
    job: Job
    need: dict[str, float]
    submitted: float  # time.monotonic()


class ClusterColumn(ProgressColumn):
    """'q queued · r running' beside the loop's done/total column."""

    def __init__(self, executor: RayExecutor) -> None:
        super().__init__()
        self.executor = executor

    def render(self, task: Task) -> Text:
        running, done = self.executor.running, int(task.completed)
        queued = max(int(task.total or 0) - done - running, 0)
        return Text(f"{queued} queued · {running} running")  # done: the M/N column beside it


class RayExecutor:
    """Cells as Ray tasks (see the module docstring); `map` is the run loop's executor seam."""

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1,
                 max_retries: int = 1, grace_s: float = 60.0, poll_s: float = 0.5,
                 probe_timeout_s: float = 300.0, stop_wait_s: float = 10.0,
                 cell: Callable[[Job, int], tuple[Outcome, dict[str, Any]]] = archbench_cell) -> None:
        if workers is not None and address is not None:
            raise ExecutorError("--workers sizes a local Ray instance; a cluster at --address has its own "
                                "size")
        if threads < 1 or (workers is not None and workers < 1):
            raise ExecutorError("--workers and --threads take integers >= 1")
        self.address, self.workers, self.threads = address, workers, threads
        self.max_retries, self.grace_s, self.poll_s = max_retries, grace_s, poll_s
        self.probe_timeout_s, self.cell = probe_timeout_s, cell  # `cell`: what each task runs (tests fake it)
        self.stop_wait_s = stop_wait_s  # on Ctrl-C: how long cancelled cells get to end before a kill
        self.running = 0  # tasks submitted and not yet returned: each holds its slot, so it runs
        self._ray: Any = None
        self._started = False

    # -- connection ---------------------------------------------------------------------------------
    def connect(self) -> Any:
        """Start or join Ray once; ExecutorError (one line) when ray is missing or the cluster unreachable."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
            try:
                if self.address is None:  # "local": a fresh instance even if a cluster runs on this host
                    cpus = self.workers * self.threads if self.workers else None
                    ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
                else:
                    _reachable(self.address)
                    ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"at {self.address}" if self.address else "locally"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExecutorError(f"cannot start or reach Ray {where}: {first}") from None
            self._started = True
        self._ray = ray
        return ray

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a joined cluster keeps running)."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._started = None, False

    @property
    def progress_columns(self) -> tuple[ProgressColumn, ...]:
        return (ClusterColumn(self),)

    # -- the cluster's devices ------------------------------------------------------------------------
    def provenances(self, device: str, dtype: str) -> list[dict[str, Any]]:
        """The provenance of each distinct device (by name) of the live nodes that can run a cell of
        `device`: one probe task pinned to each such node. Resume counts a cell done on any of them."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.connect()
        cuda = device.startswith("cuda")
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= self.threads
                 and (not cuda or n["Resources"].get("GPU", 0) >= 1)]
        if not nodes:
            need = f"a GPU and {self.threads} CPU(s)" if cuda else f"{self.threads} CPU(s) (--threads)"
            raise ExecutorError(f"no live node of the Ray cluster has {need} for a {device} cell; "
                                f"its resources: {_resources(ray.cluster_resources())}")
        probe = ray.remote(archbench_probe)
        refs = [probe.options(num_cpus=0, num_gpus=1 if cuda else 0, max_retries=0,
                              scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(device, dtype, self.threads) for n in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.probe_timeout_s)
        found: dict[str, dict[str, Any]] = {}
        for ref in ready:
            try:
                prov = ray.get(ref)
            except ray.exceptions.RayError as exc:  # e.g. archbench missing on that node
                first = str(exc).strip().splitlines()[-1][:200]
                raise ExecutorError(f"a node of the Ray cluster cannot run archbench cells: {first}") \
                    from None
            found.setdefault(prov["device_name"], prov)
        if not found:
            raise ExecutorError(f"no node of the Ray cluster answered within {self.probe_timeout_s:g} s")
        return [found[name] for name in sorted(found)]

    # -- the executor seam ------------------------------------------------------------------------------
    def map(self, jobs: Iterable[Job], progress_for: ProgressFor) -> Iterator[tuple[Job, Outcome]]:
        ray = self.connect()
        cell = ray.remote(self.cell)
        in_flight: dict[Any, _Flight] = {}
        cancelled: set[Any] = set()
        used = {"CPU": 0.0, "GPU": 0.0}
        total = ray.cluster_resources()
        node_cpus = min((n["Resources"].get("CPU", 0.0) for n in ray.nodes()
                         if n.get("Alive") and n["Resources"].get("CPU", 0.0) >= self.threads), default=0.0)
        source, waiting, exhausted = iter(jobs), None, False
        try:
            while True:
                while not exhausted:  # submit while the next job has room (or nothing runs at all)
                    if waiting is None:
                        waiting = next(source, None)
                        if waiting is None:
                            exhausted = True
                            break
                    need = slot(waiting, self.threads, node_cpus)
                    if in_flight and not _fits(need, used, total):
                        total = ray.cluster_resources()  # an autoscaled cluster may have grown
                        if not _fits(need, used, total):
                            break
                    ref = cell.options(num_cpus=need["CPU"], num_gpus=need["GPU"],
                                       max_retries=self.max_retries).remote(waiting, self.threads)
                    in_flight[ref] = _Flight(waiting, need, time.monotonic())
                    used = {k: used[k] + need[k] for k in used}
                    waiting = None
                    self.running = len(in_flight)
                if not in_flight:
                    return
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.poll_s)
                self._cancel_overdue(ray, in_flight, cancelled)
                for ref in ready:
                    flight = in_flight.pop(ref)
                    used = {k: used[k] - flight.need[k] for k in used}
                    self.running = len(in_flight)
                    yield flight.job, self._outcome(ray, ref, flight, ref in cancelled)
        finally:  # Ctrl-C or an error in the driver: the cells in progress are not left running
            self._stop_all(ray, list(in_flight))
            self.running = 0

    def _stop_all(self, ray: Any, refs: list[Any]) -> None:
        """Stop the cells in progress. On a private instance nothing needs cancelling: `close` shuts it
        down, workers and all. Cancelling a task whose worker replies at that moment aborts Ray's core
        in the driver (a C++ check fails: "Tried to complete task that was not pending"), so a joined
        cluster's cells are cancelled as a Ctrl-C in their workers, and only those that have not ended
        `stop_wait_s` later (a kernel that never returns to Python) are killed."""
        if self._started or not refs:
            return
        for ref in refs:
            ray.cancel(ref)
        left = ray.wait(refs, num_returns=len(refs), timeout=self.stop_wait_s)[1]
        for ref in left:
            ray.cancel(ref, force=True)

    def _cancel_overdue(self, ray: Any, in_flight: dict[Any, _Flight], cancelled: set[Any]) -> None:
        now = time.monotonic()
        for ref, flight in in_flight.items():
            limit = flight.job.time_limit_s
            overdue = limit and now - flight.submitted > (1 + self.max_retries) * limit + self.grace_s
            if overdue and ref not in cancelled:
                ray.cancel(ref, force=True)
                cancelled.add(ref)

    def _outcome(self, ray: Any, ref: Any, flight: _Flight, was_cancelled: bool) -> NodeOutcome:
        try:
            outcome, prov = ray.get(ref)
            return NodeOutcome(outcome.result, outcome.status, outcome.wall_s, prov)
        except ray.exceptions.RayError as exc:  # the worker or node was lost (after the retry), or killed
            oom = getattr(ray.exceptions, "OutOfMemoryError", ())
            if was_cancelled:
                status = "timeout"
            elif isinstance(exc, oom):  # Ray's memory monitor killed it: host memory, not the cell's bug
                status = "oom"
            else:
                text = str(exc).strip().splitlines()
                status = f"error: {type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")
            return NodeOutcome(None, status, round(time.monotonic() - flight.submitted, 3), None)


# An HTTP/2 client's first bytes (RFC 9113 §3.4) and an empty SETTINGS frame: a Ray cluster's GCS and
# its client server speak gRPC over HTTP/2, and answer with a SETTINGS frame of their own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS = 0x4


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A HOST:PORT where nothing answers, or where something other than a gRPC server (a Ray cluster's
    GCS or client server) answers, fails now: Ray itself would retry for many minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray parses itself
    try:
        conn = socket.create_connection((host, int(port)), timeout=timeout_s)
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from None
    try:
        conn.sendall(HTTP2_PREFACE)
        reply = _read(conn, 9)  # a frame header: length (3 bytes), type, flags, stream (4 bytes)
        heard = f"it answered {reply[:24]!r}" if reply else "it closed the connection"
    except TimeoutError:
        reply, heard = b"", f"it said nothing within {timeout_s:g} s"
    except OSError as exc:
        reply, heard = b"", str(exc.strerror or exc)
    finally:
        conn.close()
    if len(reply) < 9 or reply[3] != SETTINGS:
        raise ConnectionError(f"something listens at {host}:{port}, but not a Ray cluster ({heard} where "
                              "Ray's gRPC would answer); give the address `ray start --head` printed, "
                              "or 'auto'")


def _read(conn: socket.socket, n: int) -> bytes:
    """Up to `n` bytes: fewer where the peer closes first; socket.timeout where it says nothing."""
    data = b""
    while len(data) < n and (chunk := conn.recv(n - len(data))):
        data += chunk
    return data


def _resources(res: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(res.items()) if k in ("CPU", "GPU")) or "none"
