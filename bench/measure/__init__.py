"""Measurements: functions from a zero-argument callable `fn` (the work) to numbers, one job per file.

    device.py   the device's name and total memory; `sync` waits for its queued kernels
    timing.py   time_call(fn, device) -> TimeStats (median, quartiles, min/max over timed repeats)
    memory.py   peak_memory_bytes(fn, device); signals_deferred (Ctrl-C held around the profiler)
    energy.py   energy_joules(fn, device) -> joules per call from NVML / RAPL, or None; counter(device)
    peaks.py    device_peaks(device) (measured and datasheet), utilisation(flops, bytes, seconds, peaks),
                copy_bandwidth(device, working_set_bytes) (copy rate at that size: a decode step's yardstick)
    train_flops.py  train_step_flops(model, batch, seq_len, scored) and the one-thread matmul peak: the
                bound a training step's examples/s is read against (bench/test_train_speed.py)

A figure that cannot be measured here is None ("n/a" in the tables), never an estimate.
"""

from archbench.bench.measure.device import Device, device_name, is_cuda, sync
from archbench.bench.measure.energy import EnergyReading, energy_joules
from archbench.bench.measure.memory import (
    cpu_peak_method,
    peak_memory_bytes,
    peak_memory_method,
    signals_deferred,
)
from archbench.bench.measure.peaks import Peaks, copy_bandwidth, device_peaks, utilisation
from archbench.bench.measure.timing import TimeStats, time_call

__all__ = ["Device", "EnergyReading", "Peaks", "TimeStats", "copy_bandwidth", "cpu_peak_method",
           "device_name", "device_peaks", "energy_joules", "is_cuda", "peak_memory_bytes",
           "peak_memory_method", "signals_deferred", "sync", "time_call", "utilisation"]
