"""Measurement helpers: counts and sanity, never speed (speed belongs in benchmarks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from archbench.bench import measure

MB = 1 << 20


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


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
    assert measure._peak_rss_sampled(_hold_100mb) >= 50 * MB


def test_energy_is_none_without_a_counter(tmp_path: Path) -> None:
    assert measure.energy_joules(Counter(), "cpu", min_window_s=0.0, rapl_root=tmp_path) is None
    if measure.RaplCounter.find() is None:  # this machine: no readable RAPL
        assert measure.energy_joules(Counter(), "cpu", min_window_s=0.0) is None
    if not torch.cuda.is_available():
        assert measure.energy_joules(Counter(), "cuda", min_window_s=0.0) is None


def _zone(root: Path, name: str, label: str, uj: int, max_uj: int) -> Path:
    zone = root / name
    zone.mkdir()
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_reader_sums_packages_and_handles_wraparound(tmp_path: Path) -> None:
    pkg0 = _zone(tmp_path, "intel-rapl:0", "package-0", 950_000, 1_000_000)
    pkg1 = _zone(tmp_path, "intel-rapl:1", "package-1", 10, 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 0, 1_000_000)  # part of package 0: not added again
    _zone(tmp_path, "intel-rapl:2", "psys", 0, 1_000_000)  # whole platform: not a package
    counter = measure.RaplCounter.find(tmp_path)
    assert counter is not None and [d.name for d in counter.domains] == ["intel-rapl:0", "intel-rapl:1"]
    (pkg0 / "energy_uj").write_text("50000\n")  # wrapped: 950000 -> 1000000 -> 0 -> 50000 = 0.1 J
    (pkg1 / "energy_uj").write_text("200010\n")  # + 0.2 J
    assert counter.read() == pytest.approx(0.3)
    (pkg0 / "energy_uj").write_text("150000\n")  # + 0.1 J, no wrap
    assert counter.read() == pytest.approx(0.4)


def test_energy_joules_from_fake_rapl(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0, 1 << 40)
    state = {"uj": 0}

    def fn() -> None:  # each call "uses" 1 mJ on the fake counter
        state["uj"] += 1000
        (zone / "energy_uj").write_text(str(state["uj"]))

    reading = measure.energy_joules(fn, "cpu", min_window_s=0.02, rapl_root=tmp_path)
    assert reading is not None and reading.source == "rapl"
    assert reading.reps >= 1 and reading.window_s >= 0.02
    assert reading.joules_per_call == pytest.approx(1e-3)
    assert reading.watts == pytest.approx(reading.reps * 1e-3 / reading.window_s)


def test_measure_energy_polls_a_fast_wrapping_counter(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0, 1_000_000)
    state = {"uj": 0}

    def fn() -> None:  # 0.4 J a call on a 1 J counter: it wraps every few calls
        state["uj"] = (state["uj"] + 400_000) % 1_000_000
        (zone / "energy_uj").write_text(str(state["uj"]))

    counter = measure.RaplCounter.find(tmp_path)
    reading = measure.measure_energy(fn, counter, "rapl", min_window_s=0.01, poll_s=0.0)
    assert reading.joules_per_call == pytest.approx(0.4)


def test_spec_peaks_table() -> None:
    assert measure.spec_peaks("NVIDIA H100 80GB HBM3") == (989e12, 3.35e12)
    assert measure.spec_peaks("NVIDIA H100 PCIe")[0] == 756e12  # not the SXM figure
    assert measure.spec_peaks("NVIDIA H200") == (989e12, 4.8e12)
    assert measure.spec_peaks("NVIDIA A100-SXM4-80GB") == (312e12, 2.0e12)
    assert measure.spec_peaks("AMD EPYC (2 CPUs)") == (None, None)


def test_device_peaks_cpu_small_and_cached() -> None:
    peaks = measure.device_peaks("cpu", matmul_n=64, copy_bytes=MB)
    assert peaks.measured and peaks.flops_per_s > 0 and peaks.bytes_per_s > 0
    assert peaks.spec_flops is None and peaks.spec_bytes is None and peaks.dtype == "float32"
    assert measure.device_peaks("cpu", matmul_n=64, copy_bytes=MB) is peaks


def test_utilisation_fractions() -> None:
    peaks = measure.Peaks(1e12, 1e11, True, 4e12, None, "fake", "bfloat16")
    u = measure.utilisation(flops=5e11, bytes_moved=None, seconds=1.0, peaks=peaks)
    assert u["flops_per_s"] == 5e11 and u["flops_frac_measured"] == 0.5 and u["flops_frac_spec"] == 0.125
    assert u["bytes_per_s"] is None and u["bytes_frac_measured"] is None and u["bytes_frac_spec"] is None


def test_device_name_cpu() -> None:
    name = measure.device_name("cpu")
    assert name and "CPUs" in name


def test_sync_is_noop_on_cpu() -> None:
    measure.sync("cpu")
    measure.sync(torch.device("cpu"))
