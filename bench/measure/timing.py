"""Time of one call `fn()` on a device: warm-up, then timed repeats filling a budget.

Glossary
  fn      a zero-argument callable: the work being measured (e.g. one forward pass)
  device  "cpu", "cuda", "cuda:1" or a torch.device
  rep     one timed call of fn; warm-up calls are not timed
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from archbench.bench.measure.device import Device, is_cuda, sync


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
    cuda = is_cuda(device)
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
