"""The chunked ops timed one at a time in a fresh worker process: inputs, calls and the FLOP yardstick of
`bench/test_op_speed.py`.

Why a worker per op: an op's time depends on the process's allocator history (glibc's dynamic mmap
threshold rises when a large block is freed, so later allocations come from warm heap pages instead of
fresh mappings); timed in one long process, each op would be measured in whatever state the ops before
it left. `OpWorker` starts a spawned process that builds one op's inputs and times its calls there;
the benchmark asks it for one call at a time over a pipe.

Shapes: batch 1, H = 4 heads of K = V = 64 (the scaling suite's d_model 256), float32, one thread.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from archbench.archs.ops.delta_rule import delta_rule_chunked
from archbench.archs.ops.gated_linear import gated_linear_chunked
from archbench.archs.ops.mamba3 import mamba3_chunked
from archbench.archs.ops.rwkv7 import rwkv7_chunked
from archbench.archs.ops.ssd import ssd_chunked
from archbench.archs.ops.wkv import wkv_chunked

H, K, V = 4, 64, 64
RWKV7_FLOOR = -0.6065306597126334  # the RWKV-7 layer's floor on its log decay (archs/mixers/rwkv7.py)


def _randn(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


# op name -> (inputs at T, the call, its chunk Q)
def _gated_linear(decay: str) -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        q, k, v = (_randn(1, T, H, K, gen=gen) for _ in range(3))
        ld = {"none": None, "head": -torch.rand(H, generator=gen) * 0.1,
              "channel": -torch.rand(1, T, H, K, generator=gen) * 0.1}[decay]
        return [q, k, v] + ([] if ld is None else [ld])
    return inputs, lambda q, k, v, *ld: gated_linear_chunked(q, k, v, *ld)[0], 64


def _delta(decay: str) -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        q, k = (F.normalize(_randn(1, T, H, K, gen=gen), dim=-1) for _ in range(2))
        g = {"none": None, "head": -torch.rand(1, T, H, generator=gen) * 0.5,
             "channel": -torch.rand(1, T, H, K, generator=gen) * 0.5}[decay]
        beta = torch.rand(1, T, H, generator=gen)
        return [q, k, _randn(1, T, H, V, gen=gen), beta] + ([] if g is None else [g])
    return inputs, lambda q, k, v, beta, *g: delta_rule_chunked(q, k, v, beta, *g)[0], 64


def _ssd() -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        dt, A = torch.rand(1, T, H, generator=gen) * 0.1, -torch.rand(H, generator=gen)
        return [_randn(1, T, H, V, gen=gen), dt, A, _randn(1, T, K, gen=gen), _randn(1, T, K, gen=gen)]
    return inputs, lambda *x: ssd_chunked(*x)[0], 64


def _mamba3() -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        q, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        la, dt = -torch.rand(1, T, H, generator=gen) * 0.1, torch.rand(1, T, H, generator=gen) * 0.1
        return [q, k, _randn(1, T, H, V, gen=gen), la, dt, torch.rand(1, T, H, generator=gen)]
    return inputs, lambda *x: mamba3_chunked(*x)[0], 64


def _rwkv7() -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        r, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        kappa = F.normalize(_randn(1, T, H, K, gen=gen), dim=-1)
        lw = RWKV7_FLOOR * torch.rand(1, T, H, K, generator=gen)
        return [r, lw, k, _randn(1, T, H, V, gen=gen), -kappa, kappa * torch.rand(1, T, H, K, generator=gen)]
    return inputs, lambda *x: rwkv7_chunked(*x, chunk_size=64, lower_bound=RWKV7_FLOOR)[0], 64


def _wkv() -> tuple[Callable, Callable, int]:
    def inputs(T, gen):
        r, k = (_randn(1, T, H, K, gen=gen) for _ in range(2))
        return [r, k, _randn(1, T, H, V, gen=gen), -torch.rand(1, T, H, K, generator=gen) * 0.5,
                _randn(H, K, gen=gen)]
    return inputs, lambda *x: wkv_chunked(*x)[0], 64


OPS = {"linear_attention": _gated_linear("none"), "retnet": _gated_linear("head"),
       "gla": _gated_linear("channel"), "deltanet": _delta("none"), "gated_deltanet": _delta("head"),
       "kda": _delta("channel"), "mamba2 (ssd)": _ssd(), "mamba3 (ssd)": _mamba3(), "rwkv6 (wkv)": _wkv(),
       "rwkv7": _rwkv7()}




def yardstick_flops(T: int, chunk: int, train: bool) -> int:
    """The chunked form's matmul FLOPs, 2Q(K + V) + 4KV per token and head (bench/test_op_speed.py),
    forward × 3 for train."""
    forward = T * H * (2 * chunk * (K + V) + 4 * K * V)
    return 3 * forward if train else forward


def _serve(conn, op: str) -> None:
    """The worker: for each (mode, n) asked, one timed call of `op` (inputs built once per (mode, n))."""
    torch.set_num_threads(1)
    make, call, _ = OPS[op]
    inputs: dict[tuple[str, int], list[torch.Tensor]] = {}
    while (msg := conn.recv()) is not None:
        mode, n = msg
        train = mode == "train"
        if msg not in inputs:
            made = make(n, torch.Generator().manual_seed(0))
            inputs[msg] = [x.requires_grad_(train and x.dim() > 1) for x in made]
        xs = inputs[msg]
        start = time.perf_counter()
        if train:
            call(*xs).sum().backward()
        else:
            with torch.no_grad():
                call(*xs)
        conn.send(time.perf_counter() - start)


class OpWorker:
    """A spawned process that times one op's calls (module docstring). `call(mode, n)` returns the seconds
    the call took inside the worker; `close()` ends it."""

    def __init__(self, op: str):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        self.op = op
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, op), daemon=True)
        self._proc.start()
        child.close()

    def call(self, mode: str, n: int) -> float:
        self._conn.send((mode, n))
        return self._conn.recv()

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
