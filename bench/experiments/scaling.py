"""The scaling experiment: the cost of one model's Backbone, in one mode, at one sequence length n.

A cell measures a `Backbone` (the block stack, no embedding or head) of a stated depth, width and MLP
ratio, so a hybrid pattern and the pure stacks beside it have the same shape. Modes:
  prefill  forward over (batch, n, d_model) under inference mode
  train    forward + backward (a mean-square loss) with gradients for parameters and input
  decode   one `step` at context n: the state is filled by `prefill` over n tokens first, and every
           timed call starts from that same state (containers are copied, tensors are not), so the
           context stays exactly n however many repeats the timer needs. The step runs as served
           (bench/experiments/decode.py): `compile_step` compiles it (torch.compile, warmed up before
           timing; CPU suites), `cuda_graph` captures it (CUDA); with neither it is the eager step, whose
           time is then mostly the interpreter's: a measured figure of its own

`requested_backend` is "auto" (each mixer's first available), "reference", a backend name (the layers that
have it), or "fastest" (each backend the model can choose timed briefly on this very cell, the
quickest kept, the trials recorded). On CUDA, decode is a captured CUDA graph of one `step` unless
the spec sets `cuda_graph=False`. The row's `backend` names the decode path too: "chunked+compiled",
"sdpa+cudagraph", or "chunked+eager (compile failed: ...)" where inductor is unavailable.

Each cell measures time (median and spread), peak memory, the model's measured `state_bytes`, energy
where a hardware counter exists (never a guess), and utilisation against the device's peaks. A decode
cell also carries its lower bound: the bytes one step must read and write (every parameter and the
whole state read, the state bytes it changes written; measured) over the copy bandwidth measured here
for a working set of that size (`bound_s`; the report shows time / bound).

Glossary: B batch, n = T sequence length, D d_model, L depth (layers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from archbench.archs import Backbone, ModelSpec, get
from archbench.bench.experiments import decode, register
from archbench.bench.experiments.base import Experiment, Progress, resolved_configs
from archbench.bench.measure import energy, memory, peaks, timing

MODES = ("prefill", "train", "decode")
TRAIN_FLOPS_FACTOR = 3  # backward ≈ 2 × forward: the usual 6N-per-token rule for training


@dataclass(frozen=True)
class ScalingSpec:
    model: ModelSpec
    mode: str  # prefill | train | decode
    seq_len: int  # n; for decode, the context before the timed step
    batch: int
    device: str  # cpu | cuda
    dtype: str  # a torch dtype name
    seed: int = 0
    requested_backend: str = "auto"  # auto | reference | a backend name | fastest; the result names what ran
    cuda_graph: bool = True  # CUDA decode as a captured graph (an eager step measures launch latency)
    # Decode through a compiled step (torch.compile; False: the eager step); grids ask for the step as
    # served on their device (bench/grids/common.py `decode_flags`).
    compile_step: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from: {', '.join(MODES)}")


@dataclass(frozen=True)
class ScalingResult:
    backend: str  # which path ran, e.g. "chunked" or "mamba2:chunked+attention:sdpa"
    time_median_s: float
    time_min_s: float
    time_max_s: float
    time_p25_s: float
    time_p75_s: float
    reps: int
    peak_mem_bytes: int | None
    peak_mem_method: str | None
    state_bytes: int  # measured from the state tensors at (batch, n)
    params: int
    energy_j: float | None  # per call; None without a readable counter
    energy_j_per_token: float | None
    energy_source: str | None
    flops: int  # analytic, of one call
    tokens_per_s: float
    flops_per_s: float | None
    bytes_per_s: float | None
    flops_frac_measured: float | None  # achieved FLOP/s ÷ the measured matmul peak
    bytes_frac_measured: float | None  # achieved bytes/s ÷ the measured copy bandwidth
    flops_frac_spec: float | None  # ÷ the datasheet peak, where known
    bytes_frac_spec: float | None
    backend_trials_s: dict[str, float] | None = None  # "fastest": median seconds of each candidate
    resolved_configs: dict[str, dict[str, Any]] | None = None  # letter -> the Config it ran with
    # Decode only (None in other modes):
    bound_bytes: int | None = None  # bytes one step must read and write: parameters, state, changed state
    bound_bandwidth: float | None = None  # copy bytes/s measured here for a working set of bound_bytes
    bound_s: float | None = None  # bound_bytes / bound_bandwidth: the least time one step can take here
    warmup_s: float | None = None  # compiling / capturing and warm-up calls, outside the timed region


def copy_containers(state: Any) -> Any:
    """A fresh copy of the dicts and lists holding a state; the tensors themselves are shared."""
    if isinstance(state, dict):
        return {k: copy_containers(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(copy_containers(v) for v in state)
    return state


def build_backbone(spec: ScalingSpec, backend: str | None = None) -> Backbone:
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        model = Backbone(spec.model)
    return model.to(device=device, dtype=dtype).set_backend(backend or spec.requested_backend)


def make_call(model: Backbone, spec: ScalingSpec):
    """The zero-argument function the timer repeats, for this cell's mode."""
    if spec.mode == "decode":
        return decode_call(model, spec).call
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    batch, n, d = spec.batch, spec.seq_len, spec.model.d_model
    g = torch.Generator(device=device).manual_seed(spec.seed)
    x = torch.randn(batch, n, d, device=device, dtype=dtype, generator=g)  # (B, n, D)
    if spec.mode == "prefill":
        model.eval()

        def call():
            with torch.inference_mode():
                return model(x)

    else:  # train
        model.train()
        x.requires_grad_(True)

        def call():
            model.zero_grad(set_to_none=True)
            x.grad = None
            model(x).float().square().mean().backward()

    return call


@dataclass
class DecodeCall:
    """One decode step at context n, ready to time, and what it must move at least."""

    call: Callable[[], Any]
    path: str  # how the step runs: "eager", "compiled", "cudagraph", "compiled+cudagraph", ...
    warmup_s: float  # compiling / capturing before timing
    state_read: int  # state bytes one step reads (the whole state)
    state_written: int  # state bytes one step changes (measured)
    state: Any  # the state at context n that every timed call starts from


def decode_call(model: Backbone, spec: ScalingSpec) -> DecodeCall:
    """Prefill n tokens, then the step at context n as the spec asks: eager, compiled, graphed."""
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    batch, n, d = spec.batch, spec.seq_len, spec.model.d_model
    g = torch.Generator(device=device).manual_seed(spec.seed)
    x = torch.randn(batch, n, d, device=device, dtype=dtype, generator=g)  # (B, n, D)
    model.eval()
    # The compiled step updates the state in place outside inference mode (decode.py, item 2).
    with torch.no_grad() if spec.compile_step else torch.inference_mode():
        _, filled = model.prefill(x, max_len=n + 1)
    x_t = torch.randn(batch, d, device=device, dtype=dtype, generator=g)  # (B, D)
    leaves, tree = decode.flatten(filled)
    step = decode.functional(model.step, tree)
    with torch.no_grad() if spec.compile_step else torch.inference_mode():
        read, written = decode.state_traffic(step, x_t, leaves)
    started = time.perf_counter()
    if spec.compile_step:
        # The same inputs every call: the compiled graph is called directly, as served (decode.py, item 7).
        compiled, path = decode.compile_call(step, (x_t, *leaves))

        def call():
            with torch.no_grad():
                return compiled()  # new leaves are dropped: the context stays n
    else:
        path = "eager"

        def call():
            with torch.inference_mode():
                return model.step(x_t, copy_containers(filled))

    if device.type == "cuda" and spec.cuda_graph:
        call = decode.cuda_graph(call)
        path = "cudagraph" if path == "eager" else f"{path}+cudagraph"
    return DecodeCall(call, path, time.perf_counter() - started, read, written, filled)


GRAPH_WARMUP = decode.GRAPH_WARMUP
cuda_graph = decode.cuda_graph


def fastest_backend(spec: ScalingSpec, budget_s: float = 0.2) -> tuple[str, dict[str, float]]:
    """Time every backend the model can choose here, briefly, and return the fastest with the trials:
    "the fastest SDPA kernel on this card" is measured per shape, not assumed."""
    probe = build_backbone(spec, backend="auto")
    trials = {}
    for backend in probe.backend_choices(spec.device):
        try:
            model = build_backbone(spec, backend=backend)
            trials[backend] = timing.time_call(make_call(model, spec), spec.device, budget_s=budget_s,
                                               warmup=1, min_reps=1, max_reps=10).median_s
        except Exception:  # a kernel that refuses this shape or dtype is simply not a candidate
            continue
    if not trials:
        raise RuntimeError(f"no backend of {spec.model.name} runs this cell")
    return min(trials, key=trials.get), trials


def call_flops(model: Backbone, mode: str, batch: int, n: int) -> int:
    if mode == "decode":  # the cost of the (n+1)-th token alone
        return batch * (model.flops(n + 1) - model.flops(n))
    return batch * model.flops(n) * (TRAIN_FLOPS_FACTOR if mode == "train" else 1)


@register("scaling")
class Scaling(Experiment):
    Spec = ScalingSpec
    Result = ScalingResult
    summary_columns = ("model", "depth", "mode", "seq_len", "backend", "status", "time_median_s",
                       "peak_mem_bytes", "state_bytes")
    key_result = "time_median_s"
    default_time_limit_s = 120.0  # seconds of timed repeats, plus the peaks probe once per process

    @classmethod
    def run(cls, spec: ScalingSpec, budget_s: float, progress: Progress | None = None) -> ScalingResult:
        device = torch.device(spec.device)
        trials = None
        if spec.requested_backend == "fastest":
            best, trials = fastest_backend(spec)
            spec = dataclasses.replace(spec, requested_backend=best)
        model = build_backbone(spec)
        mode, batch, n = spec.mode, spec.batch, spec.seq_len
        dec = decode_call(model, spec) if mode == "decode" else None
        call = dec.call if dec else make_call(model, spec)

        # A compiled step is called with the same inputs every time: its guards are skipped (decode.py).
        with decode.serving() if dec and spec.compile_step else contextlib.nullcontext():
            stats = timing.time_call(call, device, budget_s=budget_s)
            peak, peak_method = memory.peak_memory_bytes(call, device), memory.peak_memory_method(device)
            reading = energy.energy_joules(call, device)
        tokens = batch * (1 if mode == "decode" else n)
        flops = call_flops(model, mode, batch, n)
        state_bytes = model.state_bytes(batch, n)
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        bound: dict[str, Any] = {}
        bytes_moved = None
        backend = model.last_backend
        if dec:
            # Decode reads every parameter and the whole state, and writes what it changes: its traffic.
            bytes_moved = param_bytes + dec.state_read + dec.state_written
            bandwidth, _ = peaks.copy_bandwidth(device, bytes_moved)
            bound = dict(bound_bytes=bytes_moved, bound_bandwidth=bandwidth, bound_s=bytes_moved / bandwidth,
                         warmup_s=dec.warmup_s)
            if dec.path != "eager":  # eager rows keep the mixers' path alone, as stored rows have it
                backend += f"+{dec.path}"
        return ScalingResult(
            backend=backend, backend_trials_s=trials,
            time_median_s=stats.median_s, time_min_s=stats.min_s, time_max_s=stats.max_s,
            time_p25_s=stats.p25_s, time_p75_s=stats.p75_s, reps=stats.reps,
            peak_mem_bytes=peak, peak_mem_method=peak_method,
            state_bytes=state_bytes, params=sum(p.numel() for p in model.parameters()),
            energy_j=reading.joules_per_call if reading else None,
            energy_j_per_token=reading.joules_per_call / tokens if reading else None,
            energy_source=reading.source if reading else None,
            flops=flops, tokens_per_s=tokens / stats.median_s,
            resolved_configs=resolved_configs(model), **bound,
            **peaks.utilisation(flops, bytes_moved, stats.median_s, peaks.device_peaks(device)),
        )

    @classmethod
    def skip_reason(cls, spec: ScalingSpec) -> str | None:
        if spec.mode == "decode":
            for mixer in spec.model.mixers.values():
                if not get(mixer).supports_step:
                    return f"{mixer} has no recurrent step"
        return None

    @classmethod
    def series(cls, spec: ScalingSpec) -> tuple[ScalingSpec, int]:
        return dataclasses.replace(spec, seq_len=0), spec.seq_len

    @classmethod
    def label(cls, spec: ScalingSpec) -> str:
        return f"{spec.model.name} ×{spec.model.depth} {spec.mode} n={spec.seq_len} d={spec.model.d_model}"
