"""Energy helpers: counter arithmetic on fake RAPL zones, and None where no counter exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.runs import Counter

from archbench.bench.measure import energy


def test_energy_is_none_without_a_counter(tmp_path: Path) -> None:
    assert energy.energy_joules(Counter(), "cpu", min_window_s=0.0, rapl_root=tmp_path) is None
    if energy.RaplCounter.find() is None:  # this machine: no readable RAPL
        assert energy.energy_joules(Counter(), "cpu", min_window_s=0.0) is None
    if not torch.cuda.is_available():
        assert energy.energy_joules(Counter(), "cuda", min_window_s=0.0) is None


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
    counter = energy.RaplCounter.find(tmp_path)
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

    reading = energy.energy_joules(fn, "cpu", min_window_s=0.02, rapl_root=tmp_path)
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

    counter = energy.RaplCounter.find(tmp_path)
    reading = energy.measure_energy(fn, counter, "rapl", min_window_s=0.01, poll_s=0.0)
    assert reading.joules_per_call == pytest.approx(0.4)
