"""Cells that misbehave, and what the run loop owes the cells after them: a plugin that changes torch's
threads, grad mode or the Ctrl-C handler changes no later cell (its own cell is an error row naming
it); a plugin whose figures are NaN gets an error row naming it, and the sweep goes on; a cell that
hangs inside the profiled memory call still ends at its time limit or Ctrl-C; SIGTERM and SIGHUP stop
a run as Ctrl-C does; a cell named twice runs and is stored once, whatever the executor.

The plugins are test mixers registered for the duration of a test with a plugin's origin
(`MIXERS.registered(name, cls, origin)`), as an installed distribution would register them.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers.interrupt_resume import assert_interrupt_then_rerun_writes_each_cell_once
from helpers.linear_attention_fixture import LinearAttention
from helpers.runs import RESULT, scaling_cells, small_device_peaks

from archbench.archs import MIXERS
from archbench.archs.registry import Origin
from archbench.bench.experiments.scaling import Scaling
from archbench.bench.measure import memory
from archbench.bench.runs import loop
from archbench.bench.runs.cell import Job, run_job
from archbench.bench.runs.schema import read_rows

PLUGIN = Origin("plugin", "archbench-bad", "0.1")
NAMED = "(plugin archbench-bad 0.1)"


class OneThread(LinearAttention):
    def __init__(self, d_model, cfg):
        super().__init__(d_model, cfg)
        torch.set_num_threads(1)


class GradOff(LinearAttention):
    def __init__(self, d_model, cfg):
        super().__init__(d_model, cfg)
        torch.set_grad_enabled(False)


class IgnoresCtrlC(LinearAttention):
    def __init__(self, d_model, cfg):
        super().__init__(d_model, cfg)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class NaNFlops(LinearAttention):
    def flops(self, seq_len):
        return float("nan")


class NaNState(LinearAttention):
    def state_bytes(self, batch, seq_len):
        return float("inf")


@pytest.fixture
def two_threads():
    """torch on two threads, so that a plugin's one thread shows; the count put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C handler for the test (pytest in the background inherits SIGINT ignored),
    and put back after it, whatever a plugin did to it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def what_cells_see(monkeypatch) -> list[tuple[str, int, bool]]:
    """(model, torch threads, grad mode) as each scaling cell starts; the cells then run for real."""
    seen: list[tuple[str, int, bool]] = []
    real = Scaling.run.__func__

    def run(cls, spec, budget_s, progress=None):
        seen.append((spec.model.name, torch.get_num_threads(), torch.is_grad_enabled()))
        return real(cls, spec, budget_s, progress)

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    return seen


# -- torch's settings ------------------------------------------------------------------------------------
def test_a_plugin_that_sets_one_thread_leaves_later_cells_on_the_sweeps_threads(tmp_path, monkeypatch,
                                                                                two_threads) -> None:
    small_device_peaks(monkeypatch)
    seen = what_cells_see(monkeypatch)
    with MIXERS.registered("test_one_thread", OneThread, PLUGIN):
        rows = loop.run_cells(scaling_cells((16,), model="test_one_thread") + scaling_cells((16, 32)),
                              tmp_path, budget_s=0.01)
    assert [threads for _, threads, _ in seen] == [2, 2, 2]
    assert rows[0].status.startswith(f"error: GlobalStateChanged: mixer 'test_one_thread' {NAMED} changed "
                                     "torch threads (torch.set_num_threads) 2 -> 1"), rows[0].status
    assert rows[0].result is None and [r.status for r in rows[1:]] == ["ok", "ok"]
    assert {r.provenance["torch_threads"] for r in rows} == {2} and torch.get_num_threads() == 2


def test_a_plugin_that_turns_gradients_off_fails_only_its_own_cell(tmp_path, monkeypatch) -> None:
    small_device_peaks(monkeypatch)
    seen = what_cells_see(monkeypatch)
    with MIXERS.registered("test_grad_off", GradOff, PLUGIN):
        rows = loop.run_cells(scaling_cells((16,), model="test_grad_off", mode="train")
                              + scaling_cells((16,), mode="train") + scaling_cells((16,), model="mamba2",
                                                                                   mode="train"),
                              tmp_path, budget_s=0.01)
    assert [grad for _, _, grad in seen] == [True, True, True]
    assert f"mixer 'test_grad_off' {NAMED} changed grad mode (torch.set_grad_enabled) True -> False" \
        in rows[0].status
    assert [r.status for r in rows[1:]] == ["ok", "ok"] and torch.is_grad_enabled()  # built-ins unharmed


def test_run_job_puts_every_setting_back_whatever_the_cell_raised(monkeypatch) -> None:
    def run(cls, spec, budget_s, progress=None):
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.set_float32_matmul_precision("medium")
        raise RuntimeError("and then it failed")

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    job = Job("scaling", scaling_cells((16,))[0].spec, 0.01, 10.0)
    status = run_job(job).status
    for changed in ("default dtype (torch.set_default_dtype) torch.float32 -> torch.float64",
                    "deterministic algorithms (torch.use_deterministic_algorithms) (False, False) -> "
                    "(True, True)",
                    "float32 matmul precision (torch.set_float32_matmul_precision) highest -> medium"):
        assert changed in status, status
    assert torch.get_default_dtype() == torch.float32 and not torch.are_deterministic_algorithms_enabled()
    assert torch.get_float32_matmul_precision() == "highest"


# -- signals -----------------------------------------------------------------------------------------------
def test_ctrl_c_still_stops_the_sweep_after_a_plugin_ignored_it(tmp_path, monkeypatch, ctrl_c) -> None:
    small_device_peaks(monkeypatch)
    real, ran = Scaling.run.__func__, []

    def run(cls, spec, budget_s, progress=None):
        if spec.model.name == "attention":
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, in a later cell
            ran.append(spec.seq_len)
        return real(cls, spec, budget_s, progress)

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    with MIXERS.registered("test_ignores_ctrl_c", IgnoresCtrlC, PLUGIN), pytest.raises(KeyboardInterrupt):
        loop.run_cells(scaling_cells((16,), model="test_ignores_ctrl_c") + scaling_cells((16, 32)), tmp_path,
                       budget_s=0.01)
    (row,) = read_rows(tmp_path / "raw")  # the plugin's cell, and nothing after the Ctrl-C
    assert ran == [] and f"mixer 'test_ignores_ctrl_c' {NAMED} changed SIGINT handler" in row.status
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_the_sweep_as_ctrl_c_does(tmp_path, monkeypatch, signum) -> None:
    ran: list[int] = []

    def run(cls, spec, budget_s, progress=None):
        ran.append(spec.seq_len)
        if spec.seq_len == 32:
            signal.raise_signal(signum)
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    # A handler of the caller's (where a signal would otherwise end pytest itself): the run replaces it
    # while it runs, and puts it back after.
    before = signal.signal(signum, lambda s, frame: pytest.fail(f"the run did not handle {s}"))
    with pytest.raises(KeyboardInterrupt) as stopped:  # `Terminated`, which the CLI ends with 128 + signum
        loop.run_cells(scaling_cells((16, 32, 64)), tmp_path)
    assert getattr(stopped.value, "signum", None) == signum and ran == [16, 32]
    assert [r.spec.seq_len for r in read_rows(tmp_path / "raw")] == [16]  # the cell in progress is lost
    assert signal.signal(signum, before).__name__ == "<lambda>"


def test_sigterm_to_a_run_is_one_line_exit_143_and_the_rerun_writes_each_cell_once(tmp_path) -> None:
    assert_interrupt_then_rerun_writes_each_cell_once(tmp_path, signum=signal.SIGTERM)


# -- a hang inside the profiled memory call ----------------------------------------------------------------
@pytest.mark.parametrize("stop", ["time limit", "ctrl-c"])
def test_a_cell_that_hangs_in_the_profiled_call_ends_at_the_time_limit_or_ctrl_c(tmp_path, monkeypatch,
                                                                                ctrl_c, stop) -> None:
    if memory.cpu_peak_method() != "torch_allocated":
        pytest.skip("the torch profiler method is not available here")

    def hangs():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.01)

    def run(cls, spec, budget_s, progress=None):
        if spec.seq_len == 32:
            memory.peak_memory_bytes(hangs, "cpu")
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    started = time.monotonic()
    if stop == "time limit":
        rows = loop.run_cells(scaling_cells((16, 32)), tmp_path, time_limit_s=1.0)
        assert [r.status for r in rows] == ["ok", "timeout"]
    else:
        threading.Timer(1.0, signal.raise_signal, (signal.SIGINT,)).start()
        with pytest.raises(KeyboardInterrupt):
            loop.run_cells(scaling_cells((16, 32)), tmp_path)
        assert [r.status for r in read_rows(tmp_path / "raw")] == ["ok"]
    assert time.monotonic() - started < 10
    assert memory.peak_memory_bytes(lambda: torch.empty(1 << 20, dtype=torch.uint8), "cpu") >= 1 << 20
    assert not torch.autograd.profiler._is_profiler_enabled  # the profiler was stopped


# -- figures JSON cannot hold -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, field", [(NaNFlops, "result.flops = nan"),
                                        (NaNState, "result.state_bytes = inf")])
def test_a_plugin_whose_figures_are_not_finite_gets_an_error_row_naming_it(tmp_path, monkeypatch, cli, cls,
                                                                           field) -> None:
    small_device_peaks(monkeypatch)
    with MIXERS.registered("test_nan", cls, PLUGIN):
        argv = ["run", "scaling", "--models", "test_nan,attention", "--depth", "1", "--d-model", "32",
                "--lens", "16", "--modes", "prefill", "--budget", "0.01", "--out", str(tmp_path)]
        code, _, err = cli(*argv)
        assert code == 0 and "Traceback" not in err, err
        rows = read_rows(tmp_path / "raw")
        assert rows[0].status.startswith("error: NonFiniteResult: not a finite number: ")
        assert field in rows[0].status and rows[0].status.endswith(f"ran mixer 'test_nan' {NAMED}")
        assert [r.status for r in rows[1:]] == ["ok"]  # the sweep went on
        code, _, err = cli(*argv)  # a rerun keeps the failure, and stops nowhere
        assert code == 0 and len(read_rows(tmp_path / "raw")) == 2


# -- a cell named twice ------------------------------------------------------------------------------------
class AllAtOnce:
    """An executor that takes every job before it returns an outcome: cells in flight together, as
    on a Ray cluster with room for all of them."""

    def map(self, jobs, progress_for):
        for job in list(jobs):
            yield job, run_job(job)


@pytest.mark.parametrize("executor", [None, AllAtOnce()], ids=["local", "all at once"])
def test_a_cell_named_twice_runs_and_is_stored_once(tmp_path, monkeypatch, executor) -> None:
    ran: list[int] = []

    def run(cls, spec, budget_s, progress=None):
        ran.append(spec.seq_len)
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    cells = scaling_cells((16, 16, 32)) + scaling_cells((16,)) + scaling_cells((32,))
    rows = loop.run_cells(cells, tmp_path, executor=executor)
    assert sorted(ran) == [16, 32] and len(rows) == 2 and len(read_rows(tmp_path / "raw")) == 2


def test_the_command_line_plans_a_repeated_cell_once(tmp_path: Path, cli) -> None:
    code, out, _ = cli("run", "scaling", "--models", "attention,attention", "--d-model", "16,16", "--lens",
                       "64,64", "--depth", "1", "--modes", "prefill", "--dry-run", "--out", str(tmp_path))
    assert code == 0 and re.search(r"│ -\s+│ 1\s+│ 0\s+│ 0\s+│ 1\s+│", out), out


def test_a_dry_run_counts_a_cell_stored_on_another_machine_as_left_here(tmp_path: Path, cli) -> None:
    cell = ("run", "scaling", "--models", "attention", "--d-model", "16", "--lens", "64", "--depth", "1",
            "--modes", "prefill", "--budget", "0", "--out", str(tmp_path))
    assert cli(*cell)[0] == 0
    code, out, _ = cli(*cell, "--dry-run")
    assert code == 0 and re.search(r"│ -\s+│ 1\s+│ 1\s+│ 0\s+│ 0\s+│", out), out  # stored here
    (rows,) = (tmp_path / "raw").glob("scaling_*.jsonl")
    row = json.loads(rows.read_text())
    row["provenance"]["device_name"] = "Another CPU"  # the same cell, timed on another machine
    rows.write_text(json.dumps(row) + "\n")
    code, out, _ = cli(*cell, "--dry-run")
    assert code == 0 and re.search(r"│ -\s+│ 1\s+│ 0\s+│ 1\s+│ 1\s+│", out), out
