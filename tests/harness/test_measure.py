"""Measurement helpers (bench/measure/): counts and sanity, never speed (speed belongs in benchmarks)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from helpers.runs import Counter

from archbench.bench import measure
from archbench.bench.measure import memory

MB = 1 << 20


@pytest.mark.parametrize("budget_s, expect_reps", [(0.0, 3), (1e9, 7)])
def test_time_call_counts_warmup_and_reps(budget_s: float, expect_reps: int) -> None:
    fn = Counter()
    stats = measure.time_call(fn, "cpu", budget_s=budget_s, warmup=2, min_reps=3, max_reps=7)
    assert stats.reps == expect_reps  # a zero budget gives min_reps, a huge one max_reps
    assert fn.calls == 2 + expect_reps
    assert 0 <= stats.min_s <= stats.p25_s <= stats.median_s <= stats.p75_s <= stats.max_s
    assert stats.iqr_s == pytest.approx(stats.p75_s - stats.p25_s)


def test_time_call_single_rep_for_slow_calls() -> None:
    fn = Counter()
    stats = measure.time_call(fn, "cpu", budget_s=0.0, warmup=0, min_reps=1)
    assert (stats.reps, fn.calls) == (1, 1)
    assert stats.median_s == stats.min_s == stats.max_s and stats.iqr_s == 0


def test_time_call_sees_a_sleep() -> None:
    stats = measure.time_call(lambda: time.sleep(0.01), "cpu", budget_s=0.0, warmup=0)
    assert stats.min_s >= 0.009  # a lower bound only: sleep never returns early


def test_time_stats_quantiles() -> None:
    stats = measure.TimeStats.from_times([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (stats.min_s, stats.p25_s, stats.median_s, stats.p75_s, stats.max_s) == (1, 2, 3, 4, 100)
    assert stats.iqr_s == 2 and stats.reps == 5


def test_time_call_rejects_bad_rep_bounds() -> None:
    with pytest.raises(ValueError, match="min_reps"):
        measure.time_call(Counter(), "cpu", min_reps=5, max_reps=2)


def _hold_100mb() -> None:
    x = torch.ones(100 * MB, dtype=torch.uint8)  # touched pages, so resident
    time.sleep(0.05)  # releases the GIL so the sampling thread can look
    del x


def test_peak_memory_cpu_sees_allocation() -> None:
    if measure.cpu_peak_method() is None:
        pytest.skip("no /proc: CPU peak memory is not measurable here")
    assert measure.peak_memory_method("cpu") == measure.cpu_peak_method()
    peak = measure.peak_memory_bytes(_hold_100mb, "cpu")
    assert peak is not None and peak >= 50 * MB
    assert measure.peak_memory_bytes(lambda: None, "cpu") < 50 * MB


def test_peak_memory_sampled_fallback_sees_allocation() -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("no /proc/self/statm")
    assert memory._peak_rss_sampled(_hold_100mb) >= 50 * MB


def test_device_name_cpu() -> None:
    name = measure.device_name("cpu")
    assert name and "CPUs" in name


def test_sync_is_noop_on_cpu() -> None:
    measure.sync("cpu")
    measure.sync(torch.device("cpu"))


def test_cpu_peak_ignores_what_earlier_measured_calls_left_alive() -> None:
    if measure.cpu_peak_method() != "torch_allocated":
        pytest.skip("the torch profiler method is not available here")
    kept = []
    measure.peak_memory_bytes(lambda: kept.append(torch.empty(50 << 20, dtype=torch.uint8)), "cpu")
    small = measure.peak_memory_bytes(lambda: torch.empty(1 << 20, dtype=torch.uint8), "cpu")
    assert (1 << 20) <= small < (2 << 20)  # not 51 MiB: the tensor kept from the first call


def test_ctrl_c_during_a_profiled_call_stops_it_and_the_profiler_with_it() -> None:
    # Python's own Ctrl-C handler, also when pytest runs in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if measure.cpu_peak_method() != "torch_allocated":
        pytest.skip("the torch profiler method is not available here")
    finished = []

    def interrupted_call() -> None:
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came in the middle of the measured call
        finished.append(torch.empty(1 << 20, dtype=torch.uint8))

    with pytest.raises(KeyboardInterrupt):
        measure.peak_memory_bytes(interrupted_call, "cpu")
    assert finished == [] and not torch.autograd.profiler._is_profiler_enabled  # stopped, not left on
    assert measure.peak_memory_bytes(lambda: torch.empty(MB, dtype=torch.uint8), "cpu") >= MB
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("stage", ["start", "stop"])
def test_ctrl_c_while_the_profiler_starts_or_stops_waits_until_it_has(monkeypatch, stage) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if measure.cpu_peak_method() != "torch_allocated":
        pytest.skip("the torch profiler method is not available here")
    from torch.profiler import profile

    method = {"start": "start", "stop": "stop"}[stage]
    real, finished = getattr(profile, method), []

    def interrupted(self) -> None:  # Ctrl-C while torch registers or removes its callbacks
        signal.raise_signal(signal.SIGINT)
        real(self)
        finished.append(stage)

    monkeypatch.setattr(profile, method, interrupted)
    with pytest.raises(KeyboardInterrupt):
        measure.peak_memory_bytes(lambda: torch.empty(MB, dtype=torch.uint8), "cpu")
    monkeypatch.undo()
    assert finished == [stage] and not torch.autograd.profiler._is_profiler_enabled
    assert measure.peak_memory_bytes(lambda: torch.empty(MB, dtype=torch.uint8), "cpu") >= MB


def test_the_cell_time_limit_stops_a_profiled_call_that_hangs() -> None:
    if measure.cpu_peak_method() != "torch_allocated":
        pytest.skip("the torch profiler method is not available here")
    from archbench.bench.runs.cell import CellTimeout, time_limit

    finished, started = [], time.monotonic()
    with pytest.raises(CellTimeout), time_limit(0.2):
        measure.peak_memory_bytes(lambda: (time.sleep(20), finished.append(1)), "cpu")
    assert finished == [] and time.monotonic() - started < 10
    assert not torch.autograd.profiler._is_profiler_enabled
