"""Device peaks and utilisation: how close a call comes to the best this device can do.

The measured peaks are a large matmul and a large copy timed here (once per process); the spec
peaks are vendor datasheet figures, known for a few GPUs only. `copy_bandwidth` is the copy rate for
a working set of a given size (a cache holds a small one), the yardstick of a decode step's bound.

Glossary
  device      "cpu", "cuda", "cuda:1" or a torch.device
  peaks       achieved matmul FLOP/s and copy bytes/s on this device, measured once per process
  spec        vendor datasheet peaks (dense bf16 tensor-core FLOP/s, HBM bytes/s)
  frac        achieved rate / peak rate, against the measured or the spec peak
  working set the bytes a loop touches over and over: a copy's source and destination together
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from archbench.bench.measure.device import Device, device_name
from archbench.bench.measure.timing import time_call

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
    cuda = torch.device(device).type == "cuda"
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


WORKING_SET_MIN = 1 << 16  # 64 KiB: smaller copies measure the call, not the memory


@functools.cache
def _copy_bandwidth(device: str, working_set: int) -> float:
    copy = functools.partial(_copy_bytes_per_s, device, working_set // 2)  # half read, half written
    if torch.device(device).type == "cuda" or torch.get_num_threads() == 1:
        return copy()
    # A bound takes the best rate the device shows: a small copy may run faster on one thread than
    # split across cores (an OpenMP barrier costs more than the copy; far more on a shared machine).
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = copy()
    finally:
        torch.set_num_threads(threads)
    return max(single, copy())


def copy_bandwidth(device: Device, working_set_bytes: int) -> tuple[float, int]:
    """(copy bytes/s, the working set it was measured at): read + write bytes per second of a copy
    whose source and destination together hold `working_set_bytes`, rounded up to a power of two
    (at least 64 KiB). Measured once per process and size (about a second each): the fastest rep, as
    `device_peaks`, on all threads and on one (the faster). A working set that fits a cache copies
    faster than one that streams from memory, so a bound uses the rate of its own size."""
    ws = max(WORKING_SET_MIN, 1 << (max(1, int(working_set_bytes)) - 1).bit_length())
    return _copy_bandwidth(str(torch.device(device)), ws), ws
