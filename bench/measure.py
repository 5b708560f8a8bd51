"""Measurement helpers: time, peak memory, energy and utilisation of one call `fn()` on a device.

Each helper does one job and returns plain numbers (or None when the figure cannot be measured here:
a missing counter is reported as missing, never replaced by an estimate).

Glossary
  fn          a zero-argument callable: the work being measured (e.g. one forward pass)
  device      "cpu", "cuda", "cuda:1" or a torch.device
  rep         one timed call of fn; warm-up calls are not timed
  VmRSS       resident set size of this process (/proc/self/status)
  VmHWM       "high water mark": the peak VmRSS; writing "5" to /proc/self/clear_refs resets it
  NVML        NVIDIA Management Library; its total-energy counter is in millijoules since driver load
  RAPL        Running Average Power Limit; the CPU package energy counter in microjoules under
              /sys/class/powercap, which wraps around at `max_energy_range_uj`
  peaks       achieved matmul FLOP/s and copy bytes/s on this device, measured once per process
  spec        vendor datasheet peaks (dense bf16 tensor-core FLOP/s, HBM bytes/s)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

Device = torch.device | str
RAPL_ROOT = Path("/sys/class/powercap")


def _is_cuda(device: Device) -> bool:
    return torch.device(device).type == "cuda"


def sync(device: Device) -> None:
    """Wait for queued kernels on `device` (CUDA); a no-op elsewhere, where calls are synchronous."""
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def device_name(device: Device) -> str:
    """GPU marketing name, or the CPU model and logical CPU count."""
    if _is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({os.cpu_count()} CPUs)"


# -- time ----------------------------------------------------------------------------------------
def _quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for a sorted non-empty list."""
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class TimeStats:
    """Seconds per call over `reps` separately timed calls."""

    median_s: float
    min_s: float
    max_s: float
    p25_s: float
    p75_s: float
    iqr_s: float  # p75 - p25: the spread that one slow outlier does not inflate
    reps: int

    @classmethod
    def from_times(cls, times: list[float]) -> TimeStats:
        xs = sorted(times)
        p25, p75 = _quantile(xs, 0.25), _quantile(xs, 0.75)
        return cls(_quantile(xs, 0.5), xs[0], xs[-1], p25, p75, p75 - p25, len(xs))


def _time_once_cpu(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _time_once_cuda(fn: Callable[[], object]) -> float:
    # Events are recorded on the stream, so they time the kernels, not the Python that queued them.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds


def _reps_for(budget_s: float, first_s: float, min_reps: int, max_reps: int) -> int:
    """How many reps (the first included) fit the budget, clamped to [min_reps, max_reps]."""
    fit = int(budget_s / first_s) if first_s > 0 else max_reps
    return max(min_reps, min(max_reps, fit))


def time_call(
    fn: Callable[[], object],
    device: Device,
    budget_s: float = 1.0,
    warmup: int = 2,
    min_reps: int = 3,
    max_reps: int = 100,
) -> TimeStats:
    """Time `fn()`: `warmup` untimed calls, then reps sized so that they fill about `budget_s`.

    The first timed rep estimates the cost; the rep count is budget / cost, clamped to
    [min_reps, max_reps] (min_reps=1 gives a single rep for calls slower than the budget). So `fn`
    runs `warmup + reps` times. CUDA reps are timed with an event pair each, after a synchronise.
    """
    if min_reps < 1 or max_reps < min_reps or warmup < 0:
        raise ValueError(f"need warmup >= 0, 1 <= min_reps <= max_reps; got {warmup}, {min_reps}, {max_reps}")
    cuda = _is_cuda(device)
    ctx = torch.cuda.device(torch.device(device)) if cuda else contextlib.nullcontext()
    time_once = _time_once_cuda if cuda else _time_once_cpu
    with ctx:
        for _ in range(warmup):
            fn()
        sync(device)  # warm-up kernels must not leak into the first timed rep
        times = [time_once(fn)]
        for _ in range(_reps_for(budget_s, times[0], min_reps, max_reps) - 1):
            times.append(time_once(fn))
    return TimeStats.from_times(times)


# -- memory --------------------------------------------------------------------------------------
def _status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)


def _statm_rss_bytes(fd: int) -> int:
    return int(os.pread(fd, 128, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE")  # field 2: resident pages


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: the profiler's C++ layer prints start/stop lines there."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _peak_torch_allocated_cpu(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensor memory allocated during `fn`, from the profiler's allocator events.

    The same figure as CUDA's `max_memory_allocated`, which peak RSS cannot give: glibc reuses memory
    the process freed earlier, so a call's resident set often does not grow at all.
    """
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        with _quiet_stderr():
            prof.export_chrome_trace(os.path.join(tmp, "trace.json"))
        with open(os.path.join(tmp, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0]
    return max([0, *totals])  # "Total Allocated" counts from zero at profiler start


@functools.cache
def cpu_peak_method() -> str | None:
    """Which CPU method `peak_memory_bytes` uses here: "torch_allocated", "vmhwm", "sampled" or None.

    "torch_allocated" (preferred): the torch profiler's allocator events, summed in order; the peak of
    tensor memory the call allocates, like CUDA's figure. Fallbacks measure the resident set instead:
    "vmhwm" (exact): reset VmHWM through /proc/self/clear_refs, run, read VmHWM. Sandboxes may forbid
    the write; then "sampled": a thread reads /proc/self/statm about every millisecond, which misses
    spikes shorter than that and sees nothing while `fn` holds the GIL. None: no /proc (not Linux).
    """
    try:
        if _peak_torch_allocated_cpu(lambda: torch.empty(1 << 20, dtype=torch.uint8)) >= 1 << 20:
            return "torch_allocated"
    except Exception:  # an old or stripped torch without profiler memory events
        pass
    try:
        _reset_hwm()
        _status_bytes("VmHWM")
        return "vmhwm"
    except (OSError, ValueError):
        pass
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            _statm_rss_bytes(fd)
        finally:
            os.close(fd)
        return "sampled"
    except (OSError, ValueError, IndexError):
        return None


def peak_memory_method(device: Device) -> str | None:
    """How `peak_memory_bytes` measures on `device`: "cuda_allocated", or `cpu_peak_method()`."""
    return "cuda_allocated" if _is_cuda(device) else cpu_peak_method()


def _peak_rss_vmhwm(fn: Callable[[], object]) -> int:
    _reset_hwm()
    base = _status_bytes("VmRSS")
    fn()
    return max(0, _status_bytes("VmHWM") - base)


def _peak_rss_sampled(fn: Callable[[], object], interval_s: float = 1e-3) -> int:
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        base = peak = _statm_rss_bytes(fd)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _statm_rss_bytes(fd))
                done.wait(interval_s)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            fn()
        finally:
            done.set()
            thread.join()
        return max(0, peak - base)
    finally:
        os.close(fd)


def peak_memory_bytes(fn: Callable[[], object], device: Device) -> int | None:
    """Peak memory that one call of `fn` adds above what was held before it, in bytes.

    CUDA: `max_memory_allocated` after `reset_peak_memory_stats`, minus the allocated baseline
    (tensors only; the caching allocator's reserve and the CUDA context are not counted).
    CPU: peak tensor bytes allocated by the call (torch profiler), else the peak resident set size
    minus the RSS before the call, by `cpu_peak_method()`; None where nothing works.
    """
    if _is_cuda(device):
        dev = torch.device(device)
        with torch.cuda.device(dev):
            sync(dev)
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            sync(dev)
            return torch.cuda.max_memory_allocated() - base
    method = cpu_peak_method()
    if method == "torch_allocated":
        return _peak_torch_allocated_cpu(fn)
    if method == "vmhwm":
        return _peak_rss_vmhwm(fn)
    if method == "sampled":
        return _peak_rss_sampled(fn)
    return None


# -- energy --------------------------------------------------------------------------------------
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
    if _is_cuda(device):
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


# -- utilisation ---------------------------------------------------------------------------------
# Datasheet peaks: dense bf16 tensor-core FLOP/s and memory bytes/s. First substring match wins,
# so the more specific names come first.
SPEC_PEAKS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756e12, 2.0e12),
    ("H100 NVL", 835e12, 3.9e12),
    ("H100", 989e12, 3.35e12),  # SXM
    ("H200", 989e12, 4.8e12),
    ("A100-SXM4-40GB", 312e12, 1.555e12),
    ("A100-PCIE-40GB", 312e12, 1.555e12),
    ("A100", 312e12, 2.0e12),  # 80 GB
)


def spec_peaks(name: str) -> tuple[float | None, float | None]:
    """(FLOP/s, bytes/s) from the datasheet table for a device name, (None, None) if unknown."""
    for key, flops, bw in SPEC_PEAKS:
        if key.lower() in name.lower():
            return flops, bw
    return None, None


@dataclass(frozen=True)
class Peaks:
    flops_per_s: float | None  # best matmul FLOP/s measured here (None if the probe failed)
    bytes_per_s: float | None  # best copy bytes/s measured here, read + write
    measured: bool
    spec_flops: float | None
    spec_bytes: float | None
    name: str
    dtype: str  # dtype of the matmul probe (bf16 on CUDA, fp32 on CPU)


def _matmul_flops_per_s(device: str, n: int, dtype: torch.dtype) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    b = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    return 2 * n**3 / time_call(lambda: a @ b, device, budget_s=0.5, warmup=1).min_s


def _copy_bytes_per_s(device: str, nbytes: int) -> float:
    src = torch.ones(nbytes, device=device, dtype=torch.uint8)
    dst = torch.empty_like(src)
    seconds = time_call(lambda: dst.copy_(src), device, budget_s=0.5, warmup=1).min_s
    return 2 * nbytes / seconds  # every byte is read once and written once


@functools.cache
def _device_peaks(device: str, matmul_n: int | None, copy_bytes: int | None) -> Peaks:
    cuda = _is_cuda(device)
    dtype = torch.bfloat16 if cuda else torch.float32
    flops_s = bytes_s = None
    try:
        flops_s = _matmul_flops_per_s(device, matmul_n or (8192 if cuda else 2048), dtype)
        # Well past the last-level cache, so the copy streams from memory.
        bytes_s = _copy_bytes_per_s(device, copy_bytes or (1 << 30 if cuda else 1 << 27))
    except (RuntimeError, MemoryError):  # out of memory on a small device: keep what was measured
        pass
    name = device_name(device)
    spec_flops, spec_bytes = spec_peaks(name) if cuda else (None, None)
    dtype_name = str(dtype).removeprefix("torch.")
    return Peaks(flops_s, bytes_s, flops_s is not None, spec_flops, spec_bytes, name, dtype_name)


def device_peaks(device: Device, matmul_n: int | None = None, copy_bytes: int | None = None) -> Peaks:
    """Measured matmul FLOP/s and copy bytes/s (cached per process) plus datasheet peaks where known.

    Defaults: an 8192² bf16 matmul and a 1 GiB copy on CUDA, a 2048² fp32 matmul and a 128 MiB
    copy on CPU. Each figure is the fastest rep, i.e. the best this device shows in practice.
    """
    return _device_peaks(str(torch.device(device)), matmul_n, copy_bytes)


def utilisation(
    flops: float | None, bytes_moved: float | None, seconds: float, peaks: Peaks
) -> dict[str, float | None]:
    """Achieved FLOP/s and bytes/s of a call, and their fractions of the measured and spec peaks."""

    def rate(amount: float | None) -> float | None:
        return amount / seconds if amount is not None and seconds > 0 else None

    def frac(x: float | None, peak: float | None) -> float | None:
        return x / peak if x is not None and peak else None

    flops_s, bytes_s = rate(flops), rate(bytes_moved)
    return {
        "flops_per_s": flops_s,
        "bytes_per_s": bytes_s,
        "flops_frac_measured": frac(flops_s, peaks.flops_per_s),
        "bytes_frac_measured": frac(bytes_s, peaks.bytes_per_s),
        "flops_frac_spec": frac(flops_s, peaks.spec_flops),
        "bytes_frac_spec": frac(bytes_s, peaks.spec_bytes),
    }
