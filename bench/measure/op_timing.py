"""The chunked ops timed one at a time in a fresh worker process: inputs, calls and the FLOP yardstick of
`bench/test_op_speed.py`.

Why a worker per op: an op's time depends on the process's allocator history (glibc's dynamic mmap
threshold rises when a large block is freed, so later allocations come from warm heap pages instead of
fresh mappings); timed in one long process, each op would be measured in whatever state the ops before
it left. `OpWorker` starts a spawned process that builds one op's inputs and times its calls there;
the benchmark asks it for one call at a time over a pipe.

Which allocator state: every worker starts with glibc's mmap and trim thresholds fixed (`ALLOCATOR`,
through GLIBC_TUNABLES; a GLIBC_TUNABLES of the user's own is kept instead), so large blocks come from
the heap and stay there once freed: the state of a process that has run a while, the same for every
op and peer whatever ran before. With the dynamic thresholds, the same op at 1k measured 20.9 ms in a
fresh process and 12.5 ms in a warm one (issue 27). Each benchmark row records the state it ran in.

Shapes: batch 1, H = 4 heads of K = V = 64 (the scaling suite's d_model 256), float32, one thread.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from archbench.archs.base import Mixer
from archbench.archs.mixers.deltanet import DeltaNet
from archbench.archs.mixers.gated_deltanet import GatedDeltaNet
from archbench.archs.mixers.gla import GLA
from archbench.archs.mixers.kda import KDA
from archbench.archs.mixers.linear_attention import LinearAttention
from archbench.archs.mixers.mamba2 import Mamba2
from archbench.archs.mixers.mamba3 import Mamba3
from archbench.archs.mixers.retnet import RetNet
from archbench.archs.mixers.rwkv import RWKV
from archbench.archs.mixers.rwkv7 import RWKV7
from archbench.archs.ops.delta_rule import delta_rule_chunked, delta_rule_step
from archbench.archs.ops.gated_linear import gated_linear_chunked, gated_linear_update
from archbench.archs.ops.mamba3 import mamba3_chunked, mamba3_step
from archbench.archs.ops.rwkv7 import rwkv7_chunked, rwkv7_step
from archbench.archs.ops.ssd import ssd_chunked, ssd_step
from archbench.archs.ops.wkv import wkv_chunked, wkv_step
from archbench.bench.measure.profile import OUTSIDE, OpTime, op_profile

H, K, V = 4, 64, 64
RWKV7_FLOOR = -0.6065306597126334  # the RWKV-7 layer's floor on its log decay (archs/mixers/rwkv7.py)


def _randn(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


@dataclass(frozen=True)
class Op:
    """One op of the benchmark: its inputs at T tokens, its chunked call, its chunk Q, and its one-token
    step: (the inputs at T = 1, the state) -> (output, new state), from `zero_state(dtype)`: the
    (B, H, K, V) matrix decode carries (RWKV-7's is (B, H, V, K); K = V here, so one shape serves), with
    Mamba-3's previous key and value beside it."""

    inputs: Callable[[int, torch.Generator], list[torch.Tensor]]
    call: Callable[..., torch.Tensor]
    chunk: int
    step: Callable[[list[torch.Tensor], Any], tuple[torch.Tensor, Any]]
    zero_state: Callable[[torch.dtype], Any] = lambda dtype: torch.zeros(1, H, K, V, dtype=dtype)


def _first(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The token of inputs at T = 1: (B, 1, ...) -> (B, ...); per-head constants (no T axis) kept."""
    return [x[:, 0] if x.dim() > 2 else x for x in xs]


def _gated_linear(decay: str, layer: type[Mixer]) -> Op:
    def inputs(T, gen):
        q, k, v = (_randn(1, T, H, K, gen=gen) for _ in range(3))
        ld = {"none": None, "head": -torch.rand(H, generator=gen) * 0.1,
              "channel": -torch.rand(1, T, H, K, generator=gen) * 0.1}[decay]
        return [q, k, v] + ([] if ld is None else [ld])
    def step(xs, S):
        q, k, v, *ld = _first(xs)
        return gated_linear_update(S, q, k, v, ld[0] if ld else None, 1.0)
    chunk = layer.chunk_size
    return Op(inputs, lambda q, k, v, *ld: gated_linear_chunked(q, k, v, *ld, chunk_size=chunk)[0], chunk,
              step)


def _delta(decay: str, layer: type[Mixer]) -> Op:
    def inputs(T, gen):
        q, k = (F.normalize(_randn(1, T, H, K, gen=gen), dim=-1) for _ in range(2))
        g = {"none": None, "head": -torch.rand(1, T, H, generator=gen) * 0.5,
             "channel": -torch.rand(1, T, H, K, generator=gen) * 0.5}[decay]
        beta = torch.rand(1, T, H, generator=gen)
        return [q, k, _randn(1, T, H, V, gen=gen), beta] + ([] if g is None else [g])
    def step(xs, S):
        q, k, v, beta, *g = _first(xs)
        return delta_rule_step(q, k, v, beta, g[0] if g else None, S)
    chunk = layer.chunk_size
    return Op(inputs, lambda q, k, v, beta, *g: delta_rule_chunked(q, k, v, beta, *g, chunk_size=chunk)[0],
              chunk, step)


def _ssd() -> Op:
    def inputs(T, gen):
        dt, A = torch.rand(1, T, H, generator=gen) * 0.1, -torch.rand(H, generator=gen)
        return [_randn(1, T, H, V, gen=gen), dt, A, _randn(1, T, K, gen=gen), _randn(1, T, K, gen=gen)]
    chunk = Mamba2.chunk_size
    return Op(inputs, lambda *x: ssd_chunked(*x, chunk_size=chunk)[0], chunk,
              lambda xs, S: ssd_step(*_first(xs), S))


def _mamba3() -> Op:
    def inputs(T, gen):
        q, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        la, dt = -torch.rand(1, T, H, generator=gen) * 0.1, torch.rand(1, T, H, generator=gen) * 0.1
        return [q, k, _randn(1, T, H, V, gen=gen), la, dt, torch.rand(1, T, H, generator=gen)]
    def step(xs, state):  # the state carries the previous token's k and v (the trapezoid's left end)
        q, k, v, *rest = _first(xs)
        o, S = mamba3_step(q, k, v, *rest, *state)
        return o, (S, k, v)

    def zero_state(dtype):
        return torch.zeros(1, H, V, K, dtype=dtype), torch.zeros(1, H, K, dtype=dtype), torch.zeros(
            1, H, V, dtype=dtype)
    chunk = Mamba3.chunk_size
    return Op(inputs, lambda *x: mamba3_chunked(*x, chunk_size=chunk)[0], chunk, step, zero_state)


def _rwkv7() -> Op:
    def inputs(T, gen):
        r, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        kappa = F.normalize(_randn(1, T, H, K, gen=gen), dim=-1)
        lw = RWKV7_FLOOR * torch.rand(1, T, H, K, generator=gen)
        return [r, lw, k, _randn(1, T, H, V, gen=gen), -kappa, kappa * torch.rand(1, T, H, K, generator=gen)]
    chunk = RWKV7.chunk_size
    return Op(inputs, lambda *x: rwkv7_chunked(*x, chunk_size=chunk, lower_bound=RWKV7_FLOOR)[0], chunk,
              lambda xs, S: rwkv7_step(*_first(xs), S))


def _wkv() -> Op:
    def inputs(T, gen):
        r, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        return [r, k, _randn(1, T, H, V, gen=gen), -torch.rand(1, T, H, K, generator=gen) * 0.5,
                _randn(H, K, gen=gen)]
    chunk = RWKV.chunk_size
    return Op(inputs, lambda *x: wkv_chunked(*x, chunk_size=chunk)[0], chunk,
              lambda xs, S: wkv_step(*_first(xs), S))


# Each op runs in the chunk its layer declares (`chunk_size`), so the benchmark times what the layers run.
OPS = {"linear_attention": _gated_linear("none", LinearAttention), "retnet": _gated_linear("head", RetNet),
       "gla": _gated_linear("channel", GLA), "deltanet": _delta("none", DeltaNet),
       "gated_deltanet": _delta("head", GatedDeltaNet), "kda": _delta("channel", KDA),
       "mamba2 (ssd)": _ssd(), "mamba3 (ssd)": _mamba3(), "rwkv6 (wkv)": _wkv(), "rwkv7": _rwkv7()}
DECODE_STEPS = 100  # steps per decode call: one step is tens of microseconds, too short to time alone


# Where a call's time goes, by the profiler's self time of each aten op (bench/measure/profile.py): the
# matmuls (what the yardstick counts), the copies (layout changes, concatenations, padding), every other
# op (the elementwise decays, masks, exps), and Python between ops.
MATMUL_OPS = frozenset({"aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::mv",
                        "aten::dot", "aten::linalg_solve_triangular"})
COPY_OPS = frozenset({"aten::copy_", "aten::cat", "aten::fill_", "aten::zero_"})
SHARES = ("matmul", "copies", "other ops", "python")


def time_shares(ops: list[OpTime]) -> dict[str, float]:
    """Each of `SHARES` as a fraction of the wall time under the profiler."""
    shares = dict.fromkeys(SHARES, 0.0)
    for op in ops:
        kind = ("python" if op.name == OUTSIDE else "matmul" if op.name in MATMUL_OPS
                else "copies" if op.name in COPY_OPS else "other ops")
        shares[kind] += op.share
    return shares


# The chunk Q of the yardstick, the same for every op (most layers' chunk), whatever chunk the op runs in:
# an op that runs in shorter chunks does fewer matmul FLOPs, and is held to the same count all the same.
YARDSTICK_CHUNK = 64


def yardstick_flops(T: int, chunk: int, train: bool) -> int:
    """The chunked form's matmul FLOPs at chunk Q, 2Q(K + V) + 4KV per token and head
    (bench/test_op_speed.py), forward × 3 for train: Q is `YARDSTICK_CHUNK` for prefill and train, 0 for
    decode's one token (the state's read and write alone)."""
    forward = T * H * (2 * chunk * (K + V) + 4 * K * V)
    return 3 * forward if train else forward


def _serve(conn, op: str) -> None:
    """The worker: for each (mode, n) asked, one timed call of `op` (inputs built once per (mode, n));
    for decode, `DECODE_STEPS` steps from a random state, the seconds per step (n is not used)."""
    torch.set_num_threads(1)
    spec = OPS[op]
    inputs: dict[tuple[str, int], list[torch.Tensor]] = {}
    while (msg := conn.recv()) is not None:
        mode, n = msg
        train = mode == "train"
        if msg not in inputs:
            made = spec.inputs(1 if mode == "decode" else n, torch.Generator().manual_seed(0))
            inputs[msg] = [x.requires_grad_(train and x.dim() > 1) for x in made]
        xs = inputs[msg]
        if mode == "profile":  # prefill under the profiler: the shares of its time
            with torch.no_grad():
                ops, _ = op_profile(lambda xs=xs: spec.call(*xs), "cpu", reps=3, warmup=1)
            conn.send(time_shares(ops))
            continue
        start = time.perf_counter()
        if train:
            spec.call(*xs).sum().backward()
        elif mode == "decode":
            with torch.no_grad():
                S = spec.zero_state(torch.float32)
                for _ in range(DECODE_STEPS):
                    _, S = spec.step(xs, S)
            conn.send((time.perf_counter() - start) / DECODE_STEPS)
            continue
        else:
            with torch.no_grad():
                spec.call(*xs)
        conn.send(time.perf_counter() - start)


ALLOCATOR = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"


def allocator_state() -> str:
    """The GLIBC_TUNABLES the workers start with (module docstring)."""
    return os.environ.get("GLIBC_TUNABLES") or ALLOCATOR


class Worker:
    """A spawned process serving `serve(conn, name)`, started in `allocator_state()`; `close()` ends it."""

    def __init__(self, serve: Callable, name: str):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        before = os.environ.get("GLIBC_TUNABLES")
        os.environ["GLIBC_TUNABLES"] = allocator_state()  # the child inherits the environment at start
        try:
            self._proc = ctx.Process(target=serve, args=(child, name), daemon=True)
            self._proc.start()
        finally:
            if before is None:
                del os.environ["GLIBC_TUNABLES"]
        child.close()

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


@contextmanager
def one_at_a_time(start: Callable[[str], Worker]) -> Iterator[Callable[[str], Worker]]:
    """A getter of workers by name that keeps one alive: asking for another name closes the live one and
    starts a fresh one (a fresh allocator state per op or pair); every worker is closed on exit."""
    live: dict[str, Worker] = {}

    def get(name: str) -> Worker:
        if name not in live:
            for w in live.values():
                w.close()
            live.clear()
            live[name] = start(name)
        return live[name]

    try:
        yield get
    finally:
        for w in live.values():
            w.close()


class OpWorker(Worker):
    """A spawned process that times one op's calls (module docstring). `call(mode, n)` returns the seconds
    the call took inside the worker (decode: per step); `close()` ends it."""

    def __init__(self, op: str):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        self.op = op
        super().__init__(_serve, op)

    def call(self, mode: str, n: int) -> float:
        self._conn.send((mode, n))
        return self._conn.recv()

    def profile(self, n: int) -> dict[str, float]:
        """Where a prefill call's time goes (`time_shares`), from three calls under the profiler."""
        self._conn.send(("profile", n))
        return self._conn.recv()
