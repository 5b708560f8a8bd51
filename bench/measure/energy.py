"""Energy of one call `fn()`: joules per call from a cumulative hardware counter read around a window.

NVML on CUDA, RAPL package counters on CPU; None where no counter can be read (never an estimate).

Glossary
  fn          a zero-argument callable: the work being measured (e.g. one forward pass)
  device      "cpu", "cuda", "cuda:1" or a torch.device
  window      repeated calls of fn lasting at least `min_window_s`, bracketed by counter reads
  NVML        NVIDIA Management Library; its total-energy counter is in millijoules since driver load
  RAPL        Running Average Power Limit; the CPU package energy counter in microjoules under
              /sys/class/powercap, which wraps around at `max_energy_range_uj`
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archbench.bench.measure.device import Device, sync

RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class EnergyReading:
    joules_per_call: float
    watts: float  # mean power over the window (the whole device or package, idle share included)
    reps: int
    window_s: float
    source: str  # "nvml" | "rapl"


class RaplCounter:
    """Sum of the CPU package energy counters under a powercap root, in joules since creation.

    Only package domains (`intel-rapl:N` whose `name` starts with "package") are summed: their
    sub-zones (core, dram) are parts of the package, and `psys` covers the whole platform, so adding
    either would count energy twice. Each read handles one wraparound per domain, so reads must
    come more often than the counter's wrap period (minutes at full power).
    """

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self.last = self._raw()
        self.total_uj = 0

    @staticmethod
    def find(root: Path | str = RAPL_ROOT) -> RaplCounter | None:
        """A counter over the readable package domains under `root`, or None if there are none."""
        domains = []
        for d in sorted(Path(root).glob("intel-rapl:*")):
            if not re.fullmatch(r"intel-rapl:\d+", d.name):
                continue  # sub-zones (intel-rapl:0:1) are parts of a package
            try:
                name = (d / "name").read_text().strip() if (d / "name").exists() else "package"
                int((d / "energy_uj").read_text())  # root-only on many kernels since 2020
                int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            if name.startswith("package"):
                domains.append(d)
        return RaplCounter(domains) if domains else None

    def _raw(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def read(self) -> float:
        now = self._raw()
        for i, (before, after) in enumerate(zip(self.last, now, strict=True)):
            # The counter runs from 0 to max_energy_range_uj and then starts again at 0.
            self.total_uj += after - before if after >= before else after + self.ranges[i] - before
        self.last = now
        return self.total_uj / 1e6


class NvmlCounter:
    """NVML's total-energy counter of one GPU in joules (64-bit millijoules: no wraparound)."""

    def __init__(self, pynvml: Any, handle: Any):
        self.nvml, self.handle = pynvml, handle

    def read(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    # Match by UUID: CUDA_VISIBLE_DEVICES renumbers CUDA devices but not NVML's.
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    index = torch.cuda.current_device() if device.index is None else device.index
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def measure_energy(
    fn: Callable[[], object],
    counter: RaplCounter | NvmlCounter,
    source: str,
    device: Device = "cpu",
    min_window_s: float = 1.0,
    poll_s: float = 1.0,
) -> EnergyReading:
    """Energy of `fn` from a cumulative counter read around a window of >= `min_window_s` of calls.

    Power counters update every few ms to 100 ms, so one short call is unmeasurable; a window of
    repeated calls is not. The counter is also read every `poll_s` inside the window so that a
    wrapping counter (RAPL) is never lapped between reads.
    """
    sync(device)
    start_j = counter.read()
    t0 = last_poll = time.perf_counter()
    reps = 0
    while True:
        fn()
        reps += 1
        now = time.perf_counter()
        if now - t0 >= min_window_s:
            break
        if now - last_poll >= poll_s:
            counter.read()
            last_poll = now
    sync(device)  # queued kernels belong in the window
    window_s = time.perf_counter() - t0
    joules = counter.read() - start_j
    return EnergyReading(joules / reps, joules / window_s, reps, window_s, source)


def energy_joules(
    fn: Callable[[], object],
    device: Device,
    min_window_s: float = 1.0,
    rapl_root: Path | str = RAPL_ROOT,
) -> EnergyReading | None:
    """Joules per call of `fn`: NVML on CUDA, RAPL package counters on CPU; None without a counter.

    The figure is the device's whole energy over the window divided by the calls in it, so idle
    power during the window is included (as it is in the electricity bill).
    """
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            return None
        try:
            import pynvml  # nvidia-ml-py, optional: imported only when asked for GPU energy
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return None
        try:
            dev = torch.device(device)
            counter = NvmlCounter(pynvml, _nvml_handle(pynvml, dev))
            counter.read()  # NotSupported on GPUs before Volta
            return measure_energy(fn, counter, "nvml", dev, min_window_s)
        except pynvml.NVMLError:
            return None
        finally:
            pynvml.nvmlShutdown()
    counter = RaplCounter.find(rapl_root)
    if counter is None:
        return None
    return measure_energy(fn, counter, "rapl", device, min_window_s)


@contextlib.contextmanager
def counter(device: Device, rapl_root: Path | str = RAPL_ROOT) -> Iterator[tuple[Any, str] | None]:
    """(a cumulative counter with `read()` in joules, its source) for `device`, or None without one:
    for work that cannot be repeated to fill a window (a generation's decode phase, which fills its
    cache as it goes), read around it once. A counter updates every few ms (RAPL) to ~100 ms (NVML),
    so a window shorter than about a second is coarse; the caller says how long it was."""
    if torch.device(device).type != "cuda":
        found = RaplCounter.find(rapl_root)
        yield (found, "rapl") if found is not None else None
        return
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # not installed, or no driver: no counter
        yield None
        return
    try:
        try:
            nvml = NvmlCounter(pynvml, _nvml_handle(pynvml, torch.device(device)))
            nvml.read()  # NotSupported on GPUs before Volta
        except pynvml.NVMLError:
            nvml = None
        yield (nvml, "nvml") if nvml is not None else None
    finally:
        pynvml.nvmlShutdown()
