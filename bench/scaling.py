"""One scaling cell: the cost of one mixer, in one mode, at one sequence length n.

Modes:
  prefill  forward over (batch, n, d_model) under inference mode
  train    forward + backward (a mean-square loss) with gradients for parameters and input
  decode   one `step` at context n: the state is filled by `prefill` over n tokens first, and every
           timed call starts from that same state (containers are copied, tensors are not), so the
           context stays exactly n however many repeats the timer needs

`backend` is "auto" (the mixer's first available), a backend name, or "fastest" (each usable
backend timed briefly on this very cell, the quickest kept, the trials recorded). On CUDA, decode is
a captured CUDA graph of one `step` unless the cell sets "cuda_graph": false.

Each cell measures time (median and spread), peak memory, the mixer's measured `state_bytes`, energy
where a hardware counter exists (never a guess), and utilisation against the device's measured peak.
"""

from __future__ import annotations

from typing import Any

import torch

from archbench.archs import create
from archbench.bench import measure
from archbench.bench.measure import energy, peaks

MODES = ("prefill", "train", "decode")
TRAIN_FLOPS_FACTOR = 3  # backward ≈ 2 × forward: the usual 6N-per-token rule for training


def copy_containers(state: Any) -> Any:
    """A fresh copy of the dicts and lists holding a state; the tensors themselves are shared."""
    if isinstance(state, dict):
        return {k: copy_containers(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(copy_containers(v) for v in state)
    return state


def build_mixer(spec: dict[str, Any]) -> torch.nn.Module:
    device, dtype = torch.device(spec["device"]), getattr(torch, spec["dtype"])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.get("seed", 0))
        mixer = create(spec["arch"], spec["d_model"], **spec.get("arch_cfg", {}))
    return mixer.to(device=device, dtype=dtype).set_backend(spec.get("backend", "auto"))


def make_call(mixer, spec: dict[str, Any]):
    """The zero-argument function the timer repeats, for this cell's mode."""
    device, dtype = torch.device(spec["device"]), getattr(torch, spec["dtype"])
    batch, n, d = spec["batch"], spec["seq_len"], spec["d_model"]
    g = torch.Generator(device=device).manual_seed(spec.get("seed", 0))
    x = torch.randn(batch, n, d, device=device, dtype=dtype, generator=g)
    mode = spec["mode"]
    if mode == "prefill":
        mixer.eval()

        def call():
            with torch.inference_mode():
                return mixer(x)

    elif mode == "train":
        mixer.train()
        x.requires_grad_(True)

        def call():
            mixer.zero_grad(set_to_none=True)
            x.grad = None
            mixer(x).float().square().mean().backward()

    elif mode == "decode":
        mixer.eval()
        with torch.inference_mode():
            _, filled = mixer.prefill(x, max_len=n + 1)
        x_t = torch.randn(batch, d, device=device, dtype=dtype, generator=g)

        def call():
            with torch.inference_mode():
                return mixer.step(x_t, copy_containers(filled))

        if device.type == "cuda" and spec.get("cuda_graph", True):
            return cuda_graph(call)

    else:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    return call


GRAPH_WARMUP = 3  # eager calls before capture, as torch.cuda.graphs requires


def cuda_graph(call):
    """Capture `call` once and return a replay that gives the captured output: an eager decode step
    is a few dozen tiny kernels, so without a graph the figure is launch latency, not the
    architecture (see shared/anchors)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(GRAPH_WARMUP):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call()

    def replay():
        graph.replay()
        return out

    return replay


def fastest_backend(spec: dict[str, Any], budget_s: float = 0.2) -> tuple[str, dict[str, float]]:
    """Time every backend usable here for this cell, briefly, and return the fastest with the trials:
    "the fastest SDPA kernel on this card" is measured per shape, not assumed."""
    from archbench.archs import get

    trials = {}
    for backend in get(spec["arch"]).available_backends(spec["device"]):
        try:
            mixer = build_mixer({**spec, "backend": backend})
            trials[backend] = measure.time_call(make_call(mixer, spec), spec["device"], budget_s=budget_s,
                                                warmup=1, min_reps=1, max_reps=10).median_s
        except Exception:  # a kernel that refuses this shape or dtype is simply not a candidate
            continue
    if not trials:
        raise RuntimeError(f"no backend of {spec['arch']} runs this cell")
    return min(trials, key=trials.get), trials


def call_flops(mixer, mode: str, batch: int, n: int) -> int:
    if mode == "decode":  # the cost of the (n+1)-th token alone
        return batch * (mixer.flops(n + 1) - mixer.flops(n))
    return batch * mixer.flops(n) * (TRAIN_FLOPS_FACTOR if mode == "train" else 1)


def measure_cell(spec: dict[str, Any], budget_s: float = 1.0) -> dict[str, Any]:
    """Measure one scaling cell; returns the row fields (the run loop adds status and provenance)."""
    device = torch.device(spec["device"])
    trials = None
    if spec.get("backend") == "fastest":
        best, trials = fastest_backend(spec)
        spec = {**spec, "backend": best}
    mixer = build_mixer(spec)
    call = make_call(mixer, spec)
    mode, batch, n = spec["mode"], spec["batch"], spec["seq_len"]

    stats = measure.time_call(call, device, budget_s=budget_s)
    peak, peak_method = measure.peak_memory_bytes(call, device), measure.peak_memory_method(device)
    reading = energy.energy_joules(call, device)
    tokens = batch * (1 if mode == "decode" else n)
    flops = call_flops(mixer, mode, batch, n)
    state_bytes = mixer.state_bytes(batch, n)
    param_bytes = sum(p.numel() * p.element_size() for p in mixer.parameters())
    # Decode reads every parameter and the whole state once per token: that is its memory traffic.
    bytes_moved = state_bytes + param_bytes if mode == "decode" else None
    device_peaks = peaks.device_peaks(device)
    backend = mixer.last_backend or mixer.resolve_backend(device)
    if mode == "decode" and device.type == "cuda" and spec.get("cuda_graph", True):
        backend += "+cudagraph"
    return {
        "backend": backend, "backend_trials_s": trials,
        "time_median_s": stats.median_s, "time_min_s": stats.min_s, "time_max_s": stats.max_s,
        "time_p25_s": stats.p25_s, "time_p75_s": stats.p75_s, "reps": stats.reps,
        "peak_mem_bytes": peak, "peak_mem_method": peak_method,
        "state_bytes": state_bytes, "params": sum(p.numel() for p in mixer.parameters()),
        "energy_j": reading.joules_per_call if reading else None,
        "energy_j_per_token": reading.joules_per_call / tokens if reading else None,
        "energy_source": reading.source if reading else None,
        "flops": flops, "tokens_per_s": tokens / stats.median_s,
        **peaks.utilisation(flops, bytes_moved, stats.median_s, device_peaks),
    }


def skip_reason(spec: dict[str, Any]) -> str | None:
    """Why a cell cannot run at all (a decode cell for a mixer without a recurrent step), or None."""
    from archbench.archs import get

    if spec["mode"] == "decode" and not get(spec["arch"]).supports_step:
        return f"{spec['arch']} has no recurrent step"
    return None
