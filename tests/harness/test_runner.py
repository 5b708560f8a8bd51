"""The run loop (bench/runs/): failures become rows and the sweep goes on; reruns resume without
duplicates; --retry-failed reruns failures and keeps the old rows; jobs cross the executor seam."""

import dataclasses
import pickle
import signal
import sys
import time
import weakref
from pathlib import Path

import pytest
from helpers.interrupt_resume import assert_interrupt_then_rerun_writes_each_cell_once
from helpers.runs import RESULT, scaling_cells

from archbench.bench.experiments.scaling import Scaling
from archbench.bench.report.frame import frame
from archbench.bench.runs import loop
from archbench.bench.runs.cell import CellTimeout, time_limit
from archbench.bench.runs.executors import LocalExecutor
from archbench.bench.runs.schema import read_rows


def fake_run(fail_from: int | None = None, exc: BaseException | None = None):
    """A scaling `run` that fails at n >= fail_from, and records the lengths it was called for."""
    calls = []

    def run(cls, spec, budget_s, progress=None):
        calls.append(spec.seq_len)
        if fail_from is not None and spec.seq_len >= fail_from:
            raise exc or MemoryError("x")
        return RESULT

    return classmethod(run), calls


def test_rerun_skips_finished_cells(tmp_path: Path) -> None:
    first = loop.run_cells(scaling_cells(), tmp_path, budget_s=0.01)
    second = loop.run_cells(scaling_cells(), tmp_path, budget_s=0.01)
    rows = read_rows(tmp_path / "raw")
    assert len(first) == 3 and second == []
    assert sorted(r.spec.seq_len for r in rows) == [16, 32, 64] and {r.status for r in rows} == {"ok"}
    assert rows[0].provenance["torch"] and rows[0].result.time_median_s > 0


def test_each_row_has_its_own_timestamp_and_load(tmp_path: Path, monkeypatch) -> None:
    """A sweep takes its provenance once, but when a row was written and the load then are its own."""
    ticks = iter(range(100))
    monkeypatch.setattr(loop, "moment", lambda: {"timestamp": f"t{(t := next(ticks))}", "load_1m": float(t)})
    loop.run_cells(scaling_cells(), tmp_path, budget_s=0.01)
    provs = [r.provenance for r in read_rows(tmp_path / "raw")]
    assert [p["timestamp"] for p in provs] == ["t0", "t1", "t2"]
    assert [p["load_1m"] for p in provs] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "exc, status",
    [(MemoryError("x"), "oom"), (RuntimeError("CUDA out of memory. Tried"), "oom"),
     (ValueError("bad shape"), "error: ValueError: bad shape")],
)
def test_failure_becomes_a_row_and_longer_lengths_are_skipped(tmp_path, monkeypatch, exc, status) -> None:
    run, calls = fake_run(fail_from=32, exc=exc)
    monkeypatch.setattr(Scaling, "run", run)
    rows = loop.run_cells(scaling_cells((16, 32, 64)), tmp_path)
    short = status.split(":")[0]
    assert [r.status for r in rows] == ["ok", status, f"skipped: n=32 was {short}"]
    # A plain rerun neither retries the failure nor the skipped length; a new longer length is skipped.
    again = loop.run_cells(scaling_cells((16, 32, 64, 128)), tmp_path)
    assert [r.status for r in again] == [f"skipped: n=32 was {short}"] and calls == [16, 32]


def test_longer_only_a_stored_failure_does_not_skip_a_shorter_new_length(tmp_path, monkeypatch) -> None:
    run, calls = fake_run(fail_from=64)
    monkeypatch.setattr(Scaling, "run", run)
    assert [r.status for r in loop.run_cells(scaling_cells((64,)), tmp_path)] == ["oom"]
    assert [r.status for r in loop.run_cells(scaling_cells((16, 32, 64, 128)), tmp_path)] == \
        ["ok", "ok", "skipped: n=64 was oom"]
    assert calls == [64, 16, 32]


def test_retry_failed_reruns_failures_and_their_skips_keeping_the_old_rows(tmp_path, monkeypatch) -> None:
    run, calls = fake_run(fail_from=32)
    monkeypatch.setattr(Scaling, "run", run)
    loop.run_cells(scaling_cells((16, 32, 64)), tmp_path)
    run, calls = fake_run(fail_from=None)  # the cause is gone (more memory, a fixed bug)
    monkeypatch.setattr(Scaling, "run", run)
    retried = loop.run_cells(scaling_cells((16, 32, 64)), tmp_path, retry_failed=True)
    assert [r.status for r in retried] == ["ok", "ok"] and calls == [32, 64]  # the ok n=16 is not rerun
    rows = read_rows(tmp_path / "raw")
    assert [r.status for r in rows] == ["ok", "oom", "skipped: n=32 was oom", "ok", "ok"]  # the record
    newest = frame(rows, "scaling")
    assert sorted(newest["seq_len"]) == [16, 32, 64] and set(newest["status"]) == {"ok"}  # the report's view
    # Nothing left to retry.
    assert loop.run_cells(scaling_cells((16, 32, 64)), tmp_path, retry_failed=True) == []


def test_retry_that_fails_again_adds_one_failure_not_a_second_identical_skip(tmp_path, monkeypatch) -> None:
    run, _ = fake_run(fail_from=32)
    monkeypatch.setattr(Scaling, "run", run)
    loop.run_cells(scaling_cells((16, 32, 64)), tmp_path)
    again = loop.run_cells(scaling_cells((16, 32, 64)), tmp_path, retry_failed=True)
    assert [r.status for r in again] == ["oom"]  # n=64's stored skip is still the right one
    assert len(read_rows(tmp_path / "raw")) == 4


def test_decode_for_a_model_without_step_is_skipped_not_an_error_nor_retried(tmp_path, monkeypatch) -> None:
    from archbench.archs import get

    monkeypatch.setattr(get("attention"), "supports_step", False)  # as a plugin without `step` declares
    decode = scaling_cells((16, 32), mode="decode")
    rows = loop.run_cells(decode + scaling_cells((16,)), tmp_path, budget_s=0.01)
    assert [r.status for r in rows] == ["skipped: attention has no recurrent step"] * 2 + ["ok"]
    assert loop.run_cells(scaling_cells((16, 32), mode="decode"), tmp_path, retry_failed=True) == []


def test_time_limit_turns_into_a_timeout_row(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, budget_s, progress=None: time.sleep(5)))
    start = time.perf_counter()
    rows = loop.run_cells(scaling_cells((16,)), tmp_path, time_limit_s=0.2)
    assert rows[0].status == "timeout" and rows[0].result is None and time.perf_counter() - start < 3


def test_time_limit_raises_in_this_thread() -> None:
    with pytest.raises(CellTimeout), time_limit(0.05):
        time.sleep(1)


def test_jobs_and_outcomes_cross_the_executor_seam_as_plain_data(tmp_path) -> None:
    """What a distributed executor (Ray) needs: jobs and outcomes that pickle, rows written by the loop."""
    seen = []

    class Recording(LocalExecutor):
        def map(self, jobs, progress_for):
            for job, outcome in super().map(jobs, progress_for):
                seen.append(pickle.loads(pickle.dumps((job, outcome))))
                yield job, outcome

    rows = loop.run_cells(scaling_cells((16, 32)), tmp_path, budget_s=0.01, executor=Recording())
    assert [job.spec.seq_len for job, _ in seen] == [16, 32]
    assert [outcome.result for _, outcome in seen] == [r.result for r in rows]
    assert seen[0][0].time_limit_s == Scaling.default_time_limit_s


def test_sigint_then_rerun_gives_every_cell_exactly_once(tmp_path: Path) -> None:
    assert_interrupt_then_rerun_writes_each_cell_once(tmp_path)


def test_a_ctrl_c_python_drops_inside_a_cell_still_stops_the_run_after_that_cells_row(tmp_path,
                                                                                     monkeypatch) -> None:
    calls, dropped = [], []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))

    class Dropped:
        pass

    def run(cls, spec, budget_s, progress=None):
        calls.append(spec.seq_len)
        if len(calls) == 1:  # Ctrl-C arrives while Python runs a weakref callback, which drops it
            obj = Dropped()
            ref = weakref.ref(obj, lambda _ref: signal.raise_signal(signal.SIGINT))
            del obj
            assert ref() is None
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    with pytest.raises(KeyboardInterrupt):
        loop.run_cells(scaling_cells((16, 32, 64)), tmp_path)
    assert dropped == [KeyboardInterrupt]  # Python did drop it ("Exception ignored in ...")
    assert calls == [16]  # the run stopped after the cell it landed in ...
    assert [r.spec.seq_len for r in read_rows(tmp_path / "raw")] == [16]  # ... whose row is kept
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_result_that_does_not_fit_its_schema_is_an_error_row_and_the_store_stays_readable(
        tmp_path, monkeypatch) -> None:
    bad = dataclasses.replace(RESULT, peak_mem_method=1)  # an experiment's bug: an int where a str belongs
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, budget_s, progress=None: bad))
    rows = loop.run_cells(scaling_cells((16,)), tmp_path)
    assert rows[0].status.startswith("error: RowSchemaError:") and "peak_mem_method" in rows[0].status
    assert [r.status for r in read_rows(tmp_path / "raw")] == [rows[0].status]


def test_a_recall_cell_trained_on_another_cpu_is_done_but_a_timing_there_is_measured_again(
        tmp_path: Path, monkeypatch) -> None:
    """Retrieval is not machine-bound (schema `place`): a grid resumes on another CPU without training
    its stored cells again, while a scaling cell, a timing, runs again on the new machine."""
    from helpers.rows import model_spec

    from archbench.bench.experiments.retrieval import Retrieval, RetrievalResult, RetrievalSpec
    from archbench.bench.experiments.train import TrainConfig
    from archbench.bench.runs.cell import Cell
    from archbench.tasks import TaskSpec

    trained = []
    result = RetrievalResult(
        backend="reference", params=1, steps=1, examples_seen=64, train_seconds=1.0, state_bytes=4,
        accuracy=0.5, accuracy_by_len={}, test_len=64, accuracy_by_slice={}, final_loss=1.0,
        stopped_early=False)
    train = classmethod(lambda cls, spec, budget_s, progress=None: trained.append(spec) or result)
    monkeypatch.setattr(Retrieval, "run", train)
    run, timed = fake_run()
    monkeypatch.setattr(Scaling, "run", run)
    recall = Cell("retrieval", RetrievalSpec(model_spec("attention"), TaskSpec("mqar", {"seq_len": 64}),
                                             TrainConfig(lr=1e-3), (), "cpu", "float32"))
    cells = [*scaling_cells(lens=(16,)), recall]
    real = loop.provenance
    for machine in ("CPU A", "CPU B"):
        monkeypatch.setattr(loop, "provenance", lambda d, t, m=machine: {**real(d, t), "device_name": m})
        loop.run_cells(cells, tmp_path, budget_s=0.01)
    assert len(trained) == 1 and timed == [16, 16]
    rows = read_rows(tmp_path / "raw")
    assert sorted((r.kind, r.device_name, r.place) for r in rows) == [
        ("retrieval", "CPU A", "cpu"), ("scaling", "CPU A", "CPU A"), ("scaling", "CPU B", "CPU B")]


def test_a_failure_retried_on_another_cpu_is_replaced_by_the_retry_whichever_file_is_read_last(
        tmp_path: Path, monkeypatch) -> None:
    """Recall pools CPUs, so one cell's rows may sit in two machines' files: the one written last counts
    for the run (it is not retried again) and for the report, though "B CPU"'s file is read first."""
    from helpers.rows import model_spec

    from archbench.bench.experiments.retrieval import Retrieval, RetrievalResult, RetrievalSpec
    from archbench.bench.experiments.train import TrainConfig
    from archbench.bench.runs.cell import Cell
    from archbench.tasks import TaskSpec

    result = RetrievalResult(
        backend="reference", params=1, steps=1, examples_seen=64, train_seconds=1.0, state_bytes=4,
        accuracy=0.5, accuracy_by_len={}, test_len=64, accuracy_by_slice={}, final_loss=1.0,
        stopped_early=False)
    calls = []

    def train(cls, spec, budget_s, progress=None):
        calls.append(spec)
        if len(calls) == 1:
            raise ValueError("first try fails")
        return result

    monkeypatch.setattr(Retrieval, "run", classmethod(train))
    cell = Cell("retrieval", RetrievalSpec(model_spec("attention"), TaskSpec("mqar", {"seq_len": 64}),
                                           TrainConfig(lr=1e-3), (), "cpu", "float32"))
    real, ticks = loop.provenance, iter(["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"])
    monkeypatch.setattr(loop, "moment", lambda: {"timestamp": next(ticks), "load_1m": 0.0})
    for machine, retry in (("Z CPU", False), ("B CPU", True)):  # fails on Z, retried on B
        monkeypatch.setattr(loop, "provenance", lambda d, t, m=machine: {**real(d, t), "device_name": m})
        loop.run_cells([cell], tmp_path, budget_s=0.01, retry_failed=retry)
    assert len(calls) == 2
    assert loop.run_cells([cell], tmp_path, budget_s=0.01, retry_failed=True) == [] and len(calls) == 2
    assert frame(read_rows(tmp_path / "raw"), "retrieval")["status"].tolist() == ["ok"]
