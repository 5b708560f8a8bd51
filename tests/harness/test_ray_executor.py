"""The Ray executor (bench/runs/ray_executor.py) behind the one run loop: the same cells and accuracies
as the local executor, a killed worker retried (or, without retries, an error row) with every cell
written once, a driver that resumes after Ctrl-C, the time limit on workers, GPU cells packed one per
GPU. The tests marked `ray` start a local Ray instance (`pytest -m ray`, as .ci/run does); the others
need no Ray cluster at all: a missing ray is a one-line error, so is an address where something other
than Ray listens, and a cluster of unlike devices keeps their rows apart while resume counts a cell
done on any of them."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.interrupt_resume import assert_interrupt_then_rerun_writes_each_cell_once
from helpers.runs import TINY_TRAIN, scaling_cells

from archbench.bench.cli import main
from archbench.bench.grids import Params, common, retrieval
from archbench.bench.report.frame import frame
from archbench.bench.runs import loop, ray_executor
from archbench.bench.runs.cell import Cell, Job, run_job
from archbench.bench.runs.executors import ExecutorError
from archbench.bench.runs.provenance import provenance
from archbench.bench.runs.ray_executor import RayExecutor, slot
from archbench.bench.runs.schema import read_rows

# Four retrieval cells: two models x two learning rates, deterministic on CPU for a given thread count.
RETRIEVAL = ["run", "retrieval", "--models", "attention,mamba2", "--d-model", "16", "--lens", "64",
             "--lrs", "1e-2,3e-3"]


def retrieval_cells(examples: int, count: int) -> list[Cell]:
    """`count` retrieval cells of `examples` training examples each (~1-3 s a cell on one thread)."""
    train = dataclasses.replace(TINY_TRAIN, max_examples=examples, n_train=examples, eval_every=10**9)
    lrs = [1e-2, 3e-3, 1e-3, 3e-4][:count // 2]
    o = Params(models=["attention", "mamba2"], d_models=[16], lens=[64], lrs=lrs)
    return common.retrieval_cells(o, retrieval.CPU_GRIDS["mqar"], models=[], lrs=retrieval.CPU_LRS,
                                  train=train, depth=retrieval.DEPTH, mlp_ratio=retrieval.MLP_RATIO,
                                  mixer_configs=retrieval.MIXER_CFGS)


# -- without Ray --------------------------------------------------------------------------------------------
def test_missing_ray_is_a_one_line_error(tmp_path, monkeypatch, cli) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = cli(*RETRIEVAL, "--executor", "ray", "--out", str(tmp_path))
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[ray]"' in err
    assert not list(tmp_path.glob("raw/*.jsonl"))  # no row written


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2"], "--address and --workers go with --executor ray"),
    (["--executor", "dask"], "invalid choice: 'dask' (choose from 'local', 'ray')"),
    (["--executor", "ray", "--address", "auto", "--workers", "2"], "--workers sizes a local Ray instance"),
    (["--threads", "0"], "malformed value '0' in --threads"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, cli, argv, message) -> None:
    code, _, err = cli(*RETRIEVAL, *argv, "--out", str(tmp_path))
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_cell_reserves_its_threads_and_one_gpu_if_it_runs_on_cuda() -> None:
    job = Job("retrieval", SimpleNamespace(device="cuda", dtype="float32"), 0.0, 1.0)
    assert slot(job, 1) == {"CPU": 1.0, "GPU": 1.0}
    cpu = dataclasses.replace(job, spec=SimpleNamespace(device="cpu", dtype="float32"))
    assert slot(cpu, 3) == slot(cpu, 3, node_cpus=16) == {"CPU": 3.0, "GPU": 0.0}
    # a CPU timing reserves the node, whatever its threads; a GPU timing its GPU
    assert slot(dataclasses.replace(cpu, kind="scaling"), 1, node_cpus=16) == {"CPU": 16.0, "GPU": 0.0}
    assert slot(dataclasses.replace(job, kind="scaling"), 1, node_cpus=16) == {"CPU": 1.0, "GPU": 1.0}


class _TwoNodes:
    """An executor over two unlike nodes, without Ray: cells alternate between them, and each outcome
    carries the provenance of the node that ran it (as the Ray executor's do)."""

    def __init__(self) -> None:
        base = provenance("cpu", "float32")
        self.nodes = [{**base, "device_name": f"CPU {x}", "hostname": f"node-{x}"} for x in "AB"]
        self.ran = 0

    def provenances(self, device: str, dtype: str) -> list[dict]:
        return self.nodes

    def map(self, jobs, progress_for):
        for i, job in enumerate(jobs):
            self.ran += 1
            out = run_job(job)
            yield job, SimpleNamespace(**vars(out), provenance=self.nodes[i % 2])


def test_rows_of_unlike_nodes_stay_apart_and_resume_counts_a_cell_done_on_any(tmp_path) -> None:
    cells = scaling_cells((16, 32))
    cluster = _TwoNodes()
    rows = loop.run_cells(cells, tmp_path, budget_s=0.01, executor=cluster)
    assert [(r.device_name, r.provenance["hostname"]) for r in rows] == \
        [("CPU A", "node-A"), ("CPU B", "node-B")]
    assert sorted(p.name for p in (tmp_path / "raw").glob("*.jsonl")) == \
        ["scaling_cpu-a.jsonl", "scaling_cpu-b.jsonl"]
    assert sorted(frame(read_rows(tmp_path / "raw"), "scaling")["device_name"]) == ["CPU A", "CPU B"]
    assert loop.run_cells(cells, tmp_path, budget_s=0.01, executor=_TwoNodes()) == []  # done on A or B
    # This machine is not a device of that cluster: locally, every cell runs again.
    assert len(loop.run_cells(cells, tmp_path, budget_s=0.01)) == 2


# -- with a local Ray instance --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    # Two CPUs and one declared GPU: CUDA-tagged tasks are scheduled (not run on a GPU) on a CPU box.
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _rows(folder: Path) -> dict[str, object]:
    return {r.cell: r for r in read_rows(folder / "raw")}


@pytest.mark.ray
def test_local_and_ray_give_the_same_cells_and_accuracies(ray_instance, tmp_path, monkeypatch, capsys,
                                                          one_thread) -> None:
    monkeypatch.setattr(retrieval, "CPU_TRAIN", TINY_TRAIN)
    assert main([*RETRIEVAL, "--threads", "1", "--out", str(tmp_path / "local")]) == 0
    assert main([*RETRIEVAL, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert "queued" in capsys.readouterr().err  # the cluster column of the progress bar
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert len(local) == 4 and local.keys() == remote.keys()
    for key, row in local.items():
        other = remote[key].result
        assert (row.status, remote[key].status) == ("ok", "ok")
        assert (row.result.accuracy, row.result.accuracy_by_len, row.result.final_loss) == \
            (other.accuracy, other.accuracy_by_len, other.final_loss)
        prov = remote[key].provenance
        assert prov["executor"] == "ray" and prov["hostname"] and prov["torch_threads"] == 1
        assert prov["device_name"] == row.provenance["device_name"]


def _kill_one_cell_worker(killed: list[int], stop: threading.Event) -> None:
    """kill -9 the first Ray worker seen running a cell (`ray::archbench_cell` in its command line)."""
    while not stop.is_set() and not killed:
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::archbench_cell"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


def _sweep_with_a_kill(cells, out: Path, executor: RayExecutor) -> tuple[list, list[int]]:
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_cell_worker, args=(killed, stop))
    killer.start()
    try:
        rows = loop.run_cells(cells, out, executor=executor)
    finally:
        stop.set()
        killer.join()
    return rows, killed


@pytest.mark.ray
def test_a_worker_killed_mid_cell_is_retried_and_the_rerun_adds_nothing(ray_instance, tmp_path) -> None:
    cells = retrieval_cells(examples=1024, count=4)
    rows, killed = _sweep_with_a_kill(cells, tmp_path, RayExecutor())
    assert killed, "no worker was seen running a cell"
    assert len(rows) == 4 and {r.status for r in rows} == {"ok"}  # the killed cell ran again
    assert loop.run_cells(cells, tmp_path, executor=RayExecutor()) == []
    keys = [r.cell for r in read_rows(tmp_path / "raw")]
    assert len(keys) == 4 and len(set(keys)) == 4  # every cell exactly once


@pytest.mark.ray
def test_without_retries_a_killed_worker_is_an_error_row_and_retry_failed_completes_it(
        ray_instance, tmp_path) -> None:
    cells = retrieval_cells(examples=1024, count=4)
    rows, killed = _sweep_with_a_kill(cells, tmp_path, RayExecutor(max_retries=0))
    assert killed and len(rows) == 4  # the sweep went on
    lost = [r for r in rows if r.status != "ok"]
    assert len(lost) == 1 and lost[0].status.startswith("error: WorkerCrashedError")
    assert lost[0].provenance["device_name"]  # recorded under the cluster's device, so resume finds it
    assert loop.run_cells(cells, tmp_path, executor=RayExecutor()) == []  # kept, as a local failure is
    again = loop.run_cells(cells, tmp_path, retry_failed=True, executor=RayExecutor())
    assert [(r.cell, r.status) for r in again] == [(lost[0].cell, "ok")]


@pytest.mark.ray
def test_the_time_limit_holds_on_workers(ray_instance, tmp_path) -> None:
    rows = loop.run_cells(retrieval_cells(examples=1024, count=2), tmp_path, time_limit_s=0.05,
                          executor=RayExecutor())
    assert [r.status for r in rows] == ["timeout", "timeout"]  # the cell's alarm, in the worker


def _deaf_cell(job, threads):
    """A cell stuck where the alarm cannot reach it (as in a long native kernel)."""
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(30)


@pytest.mark.ray
def test_the_driver_kills_a_cell_that_ignores_its_time_limit(ray_instance) -> None:
    job = Job("retrieval", SimpleNamespace(device="cpu", dtype="float32"), 0.0, 0.5)
    executor = RayExecutor(max_retries=0, grace_s=1.0, poll_s=0.1, cell=_deaf_cell)
    start = time.monotonic()
    [(_, outcome)] = list(executor.map([job], lambda job: None))
    assert outcome.status == "timeout" and time.monotonic() - start < 15


def _rendezvous_cell(job, threads):
    """Leave a mark, wait up to `wait_s` for the other cell's: did the two run at the same time?"""
    import time
    from pathlib import Path

    import ray

    from archbench.bench.runs.cell import Outcome

    folder, me = Path(job.spec.folder), job.spec.name
    (folder / me).touch()
    deadline = time.monotonic() + job.spec.wait_s
    while not (met := len(list(folder.iterdir())) == 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not met:  # gone before the other came: the other must not count this mark as a meeting
        (folder / me).unlink()
    return Outcome((met, ray.get_runtime_context().get_accelerator_ids()["GPU"]), "ok", 0.0), {}


@pytest.mark.ray
def test_cuda_cells_get_one_gpu_each_and_cpu_cells_share_the_cores(ray_instance, tmp_path) -> None:
    def run_two(device: str, wait_s: float, kind: str = "retrieval") -> list[tuple[bool, list[str]]]:
        folder = tmp_path / f"{device}-{kind}"
        folder.mkdir()
        specs = [SimpleNamespace(device=device, dtype="float32", folder=str(folder), name=name, wait_s=wait_s)
                 for name in "ab"]
        jobs = [Job(kind, spec, 0.0, 120.0) for spec in specs]
        return [outcome.result for _, outcome in RayExecutor(poll_s=0.05, cell=_rendezvous_cell).map(
            jobs, lambda job: None)]

    # One declared GPU: the two CUDA cells run one after the other, each holding the GPU.
    assert run_two("cuda", wait_s=2.0) == [(False, ["0"]), (False, ["0"])]
    # Two CPUs, one thread a cell: the two CPU cells run at once (however slowly workers start).
    assert run_two("cpu", wait_s=60.0) == [(True, []), (True, [])]
    # ... but two CPU timings (scaling cells) one after the other: each reserves the whole node.
    assert run_two("cpu", wait_s=2.0, kind="scaling") == [(False, []), (False, [])]


@pytest.mark.ray
def test_a_cluster_without_room_for_a_cell_is_a_one_line_error(ray_instance) -> None:
    with pytest.raises(ExecutorError, match="no live node of the Ray cluster has 4 CPU"):
        RayExecutor(threads=4).provenances("cpu", "float32")


@pytest.mark.ray
def test_an_address_where_nothing_answers_fails_at_once(monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `archbench run`
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("Ray would retry for minutes"))
    with pytest.raises(ExecutorError, match="cannot start or reach Ray at 127.0.0.1:1: nothing answers"):
        RayExecutor(address="127.0.0.1:1").connect()


@pytest.mark.ray
def test_an_interrupted_driver_resumes_and_every_cell_is_written_once(ray_instance, tmp_path) -> None:
    assert_interrupt_then_rerun_writes_each_cell_once(tmp_path, "--executor", "ray", "--workers", "2")


@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b""], ids=["http", "closes"])
def test_an_address_where_something_else_listens_is_one_line_at_once(monkeypatch, cli, tmp_path,
                                                                     answer) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `archbench run`
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("Ray would retry for minutes"))
    with _listener(answer) as port:
        code, _, err = cli(*RETRIEVAL, "--executor", "ray", "--address", f"127.0.0.1:{port}", "--out",
                           str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot start or reach Ray at 127.0.0.1:{port}: something listens at 127.0.0.1:{port}, but " \
           "not a Ray cluster" in err


def test_an_address_that_says_nothing_is_refused_after_the_probe_s_timeout() -> None:
    with _listener(None) as port, pytest.raises(ConnectionError, match="it said nothing within 0.5 s"):
        ray_executor._reachable(f"127.0.0.1:{port}", timeout_s=0.5)


@contextlib.contextmanager
def _listener(answer: bytes | None):
    """A TCP server on a free port that is not Ray: it answers each connection with `answer` and
    closes it, or (None) reads and says nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(64)
        if answer is not None:
            conn.sendall(answer)
        else:
            done.wait(10)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(10)
        server.close()


@pytest.mark.ray
def test_sigterm_to_the_driver_is_one_line_exit_143_and_every_cell_is_written_once(ray_instance,
                                                                                   tmp_path) -> None:
    assert_interrupt_then_rerun_writes_each_cell_once(tmp_path, "--executor", "ray", "--workers", "2",
                                                      signum=signal.SIGTERM)
