"""Where a call's time goes: torch.profiler over repeated calls, as a table of ops by self time.

`op_profile(fn)` runs `fn` under torch.profiler (CPU activity; CUDA too where present) and returns every
op's self time per call, largest first, with the wall time per call under the profiler. Self times add
up to the time spent inside some recorded op; the rest of the wall time ("outside any op") is Python
between ops, which is what an eager decode step mostly is (bench/experiments/decode.py).

Inductor's generated C++ kernels appear by name ("graph_0_cpp_fused_...") only when the step was
compiled with `torch._inductor.config.cpp.enable_kernel_profile`; otherwise their time is the self
time of the region that calls them ("## Call CompiledFxGraph ...").

Glossary
  self     time in the op itself, not in ops it calls (µs per call of `fn`)
  calls    times the op ran per call of `fn`
  share    self / wall time per call under the profiler
  where    "wrapper" for Dynamo's and AOTAutograd's Python around a compiled graph, else "op"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from archbench.bench.measure.device import Device, is_cuda, sync

# Profiler ranges that are Python around a compiled graph, not the graph's kernels: what a C++ wrapper or
# AOTInductor would remove, and what no kernel tuning can.
WRAPPER_EVENTS = ("Torch-Compiled Region", "TorchDynamo Cache Lookup", "Pregraph bytecode",
                  "AOTDispatcher Runtime Wrapper Prologue", "## Call CompiledFxGraph")
OUTSIDE = "(outside any op: Python between ops)"


@dataclass(frozen=True)
class OpTime:
    name: str
    self_s: float  # per call of fn
    calls: float  # per call of fn
    share: float  # self_s / wall time per call under the profiler
    where: str  # wrapper | op | python


def op_profile(fn: Callable[[], object], device: Device, reps: int = 200,
               warmup: int = 10) -> tuple[list[OpTime], float]:
    """(ops by self time per call, largest first, and the wall seconds per call under the profiler).
    One row, named `OUTSIDE`, is the wall time that no recorded op accounts for."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if is_cuda(device) else [])
    for _ in range(warmup):
        fn()
    sync(device)
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        sync(device)
        wall = (time.perf_counter() - started) / reps
    ops = []
    for event in prof.key_averages():
        self_s = event.self_cpu_time_total / 1e6 / reps
        where = "wrapper" if event.key.startswith(WRAPPER_EVENTS) else "op"
        ops.append(OpTime(event.key, self_s, event.count / reps, self_s / wall, where))
    inside = sum(op.self_s for op in ops)
    ops.append(OpTime(OUTSIDE, max(0.0, wall - inside), 0.0, max(0.0, wall - inside) / wall, "python"))
    ops.sort(key=lambda op: op.self_s, reverse=True)
    return ops, wall


def enable_kernel_names() -> object:
    """A context in which inductor compiles its C++ kernels with profiler ranges (their own names)."""
    return torch._inductor.config.patch({"cpp.enable_kernel_profile": True})
