"""The generation experiment: serve a batch (prefill P prompt tokens, then generate G tokens greedily)
and find the largest batch a memory budget holds.

A cell is one model (an `LM` of a stated depth, width, MLP ratio and vocabulary) × P × G × batch b ×
budget. The suite sweeps b = 1, 2, 4, ... (doubling): a batch whose parameters and state / KV cache at
P+G alone exceed the budget is skipped by design (counted exactly, on meta tensors, before anything is
allocated), and a batch that fails (out of memory, time-out) skips the larger ones.

The phases, as a server runs them:
  prefill  the batch in prefill calls of `prefill_batch` = max(1, prefill_tokens // P) sequences (a
           server's token budget per prefill call, so the prefill's transient memory does not grow with
           the batch), each `LM.prefill`, its state copied into the batch's state (allocated for P+G
           tokens). Time to first token (TTFT): all of it, the first token of every sequence included.
  decode   G-1 steps of `LM.decode_step` over the whole batch on the decode backend
           (bench/experiments/decode.py: compiled on CPU, a CUDA graph on CUDA, or eager), compiled and
           warmed up on the batch's state before the prefill fills it; every step timed.
The tokens are `LM.generate`'s (tests/harness/test_generation.py checks it for every backend).

Figures: TTFT; per-token latency (median step: one token for every sequence); decode tokens/s =
b(G-1) / decode time; end-to-end tokens/s = bG / (TTFT + decode time); memory needed = parameters +
state at P+G (measured from the state tensors) + the larger transient peak of one prefill call and one
decode step (measured as scaling's peak memory), and whether it fits the budget; the bound per step
(bytes that must move over the copy bandwidth at that working set, as scaling's decode rows); energy
per generated token where a counter exists, read around the decode phase.

Glossary: P prompt_len, G gen_len, b batch, V vocab_size, TTFT time to first token, leaves the state's
tensors (decode.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from archbench.archs import LM, ModelSpec, get
from archbench.bench.experiments import decode, register
from archbench.bench.experiments.base import Experiment, Progress, resolved_configs
from archbench.bench.measure import energy, memory, peaks
from archbench.bench.measure.device import sync

PREFILL_TOKENS = 8192  # tokens per prefill call: vLLM's max_num_batched_tokens is of this order


@dataclass(frozen=True)
class GenerationSpec:
    model: ModelSpec
    prompt_len: int  # P
    gen_len: int  # G: tokens generated per sequence, the first one by the prefill
    batch: int  # b
    vocab_size: int  # V
    memory_budget_bytes: int  # the budget this batch is measured against
    device: str
    dtype: str
    decode_backend: str = "auto"  # auto | eager | compiled | cudagraph (bench/experiments/decode.py)
    prefill_tokens: int = PREFILL_TOKENS  # prompt tokens per prefill call (at least one sequence)
    seed: int = 0

    def __post_init__(self) -> None:
        # batch 0 is no cell: it is the key of a series of batches (`Generation.series`)
        if self.prompt_len < 1 or self.gen_len < 2 or self.batch < 0 or self.vocab_size < 2:
            raise ValueError(f"need prompt_len >= 1, gen_len >= 2 (a decode step), batch >= 1, vocab_size "
                             f">= 2; got {self.prompt_len}, {self.gen_len}, {self.batch}, {self.vocab_size}")
        if self.memory_budget_bytes < 1 or self.prefill_tokens < 1:
            raise ValueError(f"need memory_budget_bytes >= 1 and prefill_tokens >= 1; got "
                             f"{self.memory_budget_bytes}, {self.prefill_tokens}")
        if self.decode_backend not in decode.DECODE_BACKENDS:
            raise ValueError(f"unknown decode backend {self.decode_backend!r}; choose from: "
                             f"{', '.join(decode.DECODE_BACKENDS)}")

    @property
    def prefill_batch(self) -> int:
        """Sequences per prefill call."""
        return max(1, min(self.batch, self.prefill_tokens // self.prompt_len))


@dataclass(frozen=True)
class GenerationResult:
    backend: str  # the mixers' paths and the decode path, e.g. "chunked+compiled"
    ttft_s: float  # prefill of the whole batch, first tokens included
    token_latency_s: float  # median decode step: one new token for every sequence of the batch
    token_latency_p25_s: float
    token_latency_p75_s: float
    decode_s: float  # all G-1 decode steps
    tokens_per_s: float  # decode throughput: b (G-1) / decode_s
    e2e_tokens_per_s: float  # b G / (ttft_s + decode_s)
    params: int
    param_bytes: int
    state_bytes: int  # state / KV cache of the whole batch at P+G, measured from the state tensors
    prefill_peak_bytes: int | None  # transient peak of one prefill call (None: not measurable here)
    step_peak_bytes: int | None  # transient peak of one decode step of the batch
    peak_mem_method: str | None
    memory_needed_bytes: int  # param_bytes + state_bytes + the larger transient peak
    fits_budget: bool  # memory_needed_bytes <= the spec's memory_budget_bytes
    bound_bytes: int  # bytes one decode step must read and write: parameters, state, changed state
    bound_bandwidth: float  # copy bytes/s measured here for a working set of bound_bytes
    bound_s: float  # bound_bytes / bound_bandwidth: the least time one step can take here
    energy_j_per_token: float | None  # per generated token of the decode phase; None without a counter
    energy_source: str | None
    energy_window_s: float | None  # how long the counter was read over (the decode phase)
    warmup_s: float  # compiling / capturing the step, before anything is timed
    resolved_configs: dict[str, dict[str, Any]] | None = None  # letter -> the Config it ran with


def build_lm(spec: GenerationSpec, device: torch.device | str | None = None) -> LM:
    device = torch.device(device or spec.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        with torch.device("meta") if device.type == "meta" else torch.device("cpu"):
            lm = LM(spec.model, spec.vocab_size)
    return lm.to(device=device, dtype=getattr(torch, spec.dtype)).eval()


def param_bytes(lm: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in lm.parameters())


def batched_leaves(lm: LM, max_len: int) -> list[bool]:
    """Which state tensors have the batch as dim 0 (attention's position has none): from the state's
    shapes at batch 1 and 2, on meta tensors."""
    one, _ = decode.flatten(lm.backbone.init_state(1, max_len, device="meta"))
    two, _ = decode.flatten(lm.backbone.init_state(2, max_len, device="meta"))
    return [a.shape != b.shape for a, b in zip(one, two, strict=True)]


@dataclass
class Served:
    """What one served batch measured (`serve`)."""

    tokens: torch.Tensor  # (b, G) generated tokens
    ttft_s: float
    step_s: list[float]  # seconds of each decode step
    label: str  # the decode path that ran
    warmup_s: float
    state_bytes: int  # of the batch's state at P+G
    state_read: int  # state bytes one step reads (all of it)
    state_written: int  # state bytes one step changes (measured on one prefill call's state, scaled)
    prefill_peak: int | None
    step_peak: int | None
    energy_j: float | None  # over the decode phase
    energy_source: str | None


def serve(lm: LM, prompt: torch.Tensor, gen_len: int, backend: str, prefill_batch: int,
          measure_memory: bool = True, compile_backend: str = "inductor") -> Served:
    """Prefill `prompt` (b, P) in calls of `prefill_batch` sequences, then `gen_len - 1` greedy decode
    steps on the resolved decode `backend`; see the module docstring."""
    device = prompt.device
    b, P = prompt.shape
    max_len = P + gen_len
    mb = min(prefill_batch, b)
    batched = batched_leaves(lm, max_len)
    states = lm.backbone.init_state(b, max_len, device=device)
    leaves, _ = decode.flatten(states)
    state_bytes = sum(leaf.numel() * leaf.element_size() for leaf in leaves)
    token = torch.zeros(b, dtype=torch.long, device=device)
    # The step is compiled / captured on the batch's own state tensors while they are still scratch.
    step = decode.prepare_in_place(lm.decode_step, backend, token, states, compile_backend)

    with decode.serving():
        # One prefill call untimed: the warm-up, its transient peak, and the traffic of one step.
        warm = lambda: lm.prefill(prompt[:mb], max_len)  # noqa: E731
        prefill_peak = memory.peak_memory_bytes(warm, device) if measure_memory else None
        first, part = warm()
        part_leaves, tree = decode.flatten(part)
        read, written = decode.state_traffic(decode.functional(lm.decode_step, tree), first, part_leaves)
        del part, part_leaves
        state_written = written * b // mb

        sync(device)
        started = time.perf_counter()
        for i in range(0, b, mb):
            tok, part = lm.prefill(prompt[i:i + mb], max_len)
            for leaf, src, in_batch in zip(leaves, decode.flatten(part)[0], batched, strict=True):
                (leaf[i:i + mb] if in_batch else leaf).copy_(src)
            token[i:i + mb] = tok
        sync(device)
        ttft = time.perf_counter() - started

        out = [token.clone()]
        step_s = []
        with energy.counter(device) as meter:
            joules0 = meter[0].read() if meter else None
            for _ in range(gen_len - 1):
                t0 = time.perf_counter()
                token = step(token)
                sync(device)
                step_s.append(time.perf_counter() - t0)
                out.append(token.clone())  # a graph's output is its own buffer, rewritten every replay
            joules = meter[0].read() - joules0 if meter else None
        # One more step fits the cache (room for P+G tokens, P+G-1 used): its transient peak.
        step_peak = memory.peak_memory_bytes(lambda: step(token), device) if measure_memory else None
    return Served(torch.stack(out, 1), ttft, step_s, step.label, step.warmup_s, state_bytes, state_bytes,
                  state_written, prefill_peak, step_peak, joules, meter[1] if meter else None)


def _quantile(xs: list[float], q: float) -> float:
    return torch.quantile(torch.tensor(xs, dtype=torch.float64), q).item()


@register("generation")
class Generation(Experiment):
    Spec = GenerationSpec
    Result = GenerationResult
    summary_columns = ("model", "depth", "prompt_len", "gen_len", "batch", "status", "backend", "ttft_s",
                       "token_latency_s", "tokens_per_s", "memory_needed_bytes", "fits_budget")
    key_result = "tokens_per_s"
    default_time_limit_s = 1800.0  # compiling, a batch of prefills, G steps

    @classmethod
    def run(cls, spec: GenerationSpec, budget_s: float, progress: Progress | None = None) -> GenerationResult:
        device = torch.device(spec.device)
        lm = build_lm(spec)
        g = torch.Generator(device=device).manual_seed(spec.seed)
        prompt = torch.randint(0, spec.vocab_size, (spec.batch, spec.prompt_len), device=device,
                               generator=g)  # (b, P)
        backend = decode.resolve(spec.decode_backend, device)
        served = serve(lm, prompt, spec.gen_len, backend, spec.prefill_batch)

        b, steps = spec.batch, spec.gen_len - 1
        decode_s = sum(served.step_s)
        weights = param_bytes(lm)
        peaks_ = [p for p in (served.prefill_peak, served.step_peak) if p is not None]
        needed = weights + served.state_bytes + max(peaks_, default=0)
        # One step reads every parameter but the embedding table, of which it reads b rows.
        row = lm.embed.weight[0]
        read_params = weights - max(0, spec.vocab_size - b) * row.numel() * row.element_size()
        bound_bytes = read_params + served.state_read + served.state_written
        bandwidth, _ = peaks.copy_bandwidth(device, bound_bytes)
        backend = lm.backbone.last_backend + ("" if served.label == "eager" else f"+{served.label}")
        return GenerationResult(
            backend=backend, ttft_s=served.ttft_s,
            token_latency_s=_quantile(served.step_s, 0.5),
            token_latency_p25_s=_quantile(served.step_s, 0.25),
            token_latency_p75_s=_quantile(served.step_s, 0.75), decode_s=decode_s,
            tokens_per_s=b * steps / decode_s, e2e_tokens_per_s=b * spec.gen_len / (served.ttft_s + decode_s),
            params=sum(p.numel() for p in lm.parameters()), param_bytes=weights,
            state_bytes=served.state_bytes,
            prefill_peak_bytes=served.prefill_peak, step_peak_bytes=served.step_peak,
            peak_mem_method=memory.peak_memory_method(device), memory_needed_bytes=needed,
            fits_budget=needed <= spec.memory_budget_bytes,
            bound_bytes=bound_bytes, bound_bandwidth=bandwidth, bound_s=bound_bytes / bandwidth,
            energy_j_per_token=served.energy_j / (b * steps) if served.energy_j is not None else None,
            energy_source=served.energy_source,
            energy_window_s=decode_s if served.energy_j is not None else None,
            warmup_s=served.warmup_s, resolved_configs=resolved_configs(lm.backbone),
        )

    @classmethod
    def skip_reason(cls, spec: GenerationSpec) -> str | None:
        for mixer in spec.model.mixers.values():
            if not get(mixer).supports_step:
                return f"{mixer} has no recurrent step"
        held = held_bytes(spec)
        if held > spec.memory_budget_bytes:
            return (f"over the memory budget: parameters + state at P+G = {held / 2**20:.1f} MiB > "
                    f"{spec.memory_budget_bytes / 2**20:.1f} MiB")
        return None

    series_name = "batch"

    @classmethod
    def series(cls, spec: GenerationSpec) -> tuple[GenerationSpec, int]:
        return dataclasses.replace(spec, batch=0), spec.batch  # a failed batch skips the larger ones

    @classmethod
    def label(cls, spec: GenerationSpec) -> str:
        return (f"{spec.model.name} ×{spec.model.depth} generate P={spec.prompt_len} G={spec.gen_len} "
                f"b={spec.batch} d={spec.model.d_model}")


def held_bytes(spec: GenerationSpec) -> int:
    """Parameters + state / KV cache of the batch at P+G: counted on meta tensors, nothing allocated."""
    lm = build_lm(spec, "meta")
    return param_bytes(lm) + lm.state_bytes(spec.batch, spec.prompt_len + spec.gen_len)
