"""Peak memory of one call `fn()` on a device, and deferring signals around the torch profiler.

CUDA: peak allocated above the baseline. CPU: the peak tensor bytes the call allocates, from the
torch profiler's allocator events, falling back to the peak resident set. None where nothing works
(a missing figure is reported as missing, never replaced by an estimate).

Glossary
  fn          a zero-argument callable: the work being measured (e.g. one forward pass)
  device      "cpu", "cuda", "cuda:1" or a torch.device
  VmRSS       resident set size of this process (/proc/self/status)
  VmHWM       "high water mark": the peak VmRSS; writing "5" to /proc/self/clear_refs resets it
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable

import torch

from archbench.bench.measure.device import Device, compiler_error, is_cuda, sync


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


STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGALRM", "SIGTERM", "SIGHUP")
                     if hasattr(signal, s))


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = STOP_SIGNALS):
    """Hold Ctrl-C, the run loop's per-cell alarm and SIGTERM / SIGHUP until the block ends, then
    deliver them.

    Why: a KeyboardInterrupt (or the alarm's CellTimeout) raised while torch.profiler registers or
    removes its C++ callbacks leaves them half-registered, and the process can crash later (SIGSEGV
    at exit, after "Requested callback is not found"). So only the profiler's start and stop are held,
    never the measured call between them: a call that hangs there still ends at the time limit or
    Ctrl-C. Off the main thread Python delivers no signals, so there is nothing to defer.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    # None: a handler installed outside Python, which could not be put back; such signals pass through
    previous = {s: h for s in signums if (h := signal.getsignal(s)) is not None}
    for signum in previous:
        signal.signal(signum, lambda s, _frame: pending.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):  # each signal once, in arrival order
            signal.raise_signal(signum)


@contextlib.contextmanager
def _profiling():
    """The torch profiler recording CPU memory, started and stopped with signals held
    (`signals_deferred`), while the block between can be interrupted: an interrupt there, or one
    held during the start, stops the profiler (signals held again) before it propagates."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with contextlib.ExitStack() as stop:
        with signals_deferred():
            prof.__enter__()
            stop.callback(_stop, prof)  # before the held signals are delivered, as this block ends
        yield prof


def _stop(prof) -> None:
    with signals_deferred():
        prof.__exit__(None, None, None)


def _peak_torch_allocated_cpu(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensor memory allocated during `fn`, from the profiler's allocator events.

    The same figure as CUDA's `max_memory_allocated`, which peak RSS cannot give: glibc reuses memory
    the process freed earlier, so a call's resident set often does not grow at all.
    """
    with tempfile.TemporaryDirectory() as tmp:
        with _quiet_stderr(), _profiling() as prof:
            fn()
        with _quiet_stderr():
            prof.export_chrome_trace(os.path.join(tmp, "trace.json"))
        with open(os.path.join(tmp, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"
                     and e.get("args", {}).get("Device Type") == 0), key=lambda e: e["ts"])
    if not memory:
        return 0
    # "Total Allocated" is a process-wide tally that keeps what earlier profiled calls left alive
    # (gradients, say), so measure from its level just before this call's first event.
    base = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    return max(0, max(e["args"]["Total Allocated"] for e in memory) - base)


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
        # The profiler imports inductor: where inductor cannot be imported it cannot run either.
        if compiler_error() is None and \
                _peak_torch_allocated_cpu(lambda: torch.empty(1 << 20, dtype=torch.uint8)) >= 1 << 20:
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
    return "cuda_allocated" if is_cuda(device) else cpu_peak_method()


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
    if is_cuda(device):
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
