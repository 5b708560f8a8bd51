"""Pure-PyTorch peers of archbench's chunked ops, for `bench/test_peer_speed.py`: which peer stands
against which op, how the op's inputs become the peer's, and a worker that times the two side by side.

The peers are the published pure-PyTorch forms of the same recurrences:
- fla's naive ops (`fla-core`, `fla/ops/*/naive.py`): fla's package imports Triton when it loads, which
  a CPU machine may lack, so `fla_naive` loads the one file it needs straight from the installed package
  (the "import shim"; those files import only torch and einops);
- transformers' torch fallbacks: Qwen3-Next's `torch_chunk_gated_delta_rule` and Kimi Linear's
  `chunk_kimi_delta_attention`, the code those models run without fla's kernels.
Both come with `pip install 'archbench[peers]'`; a peer that is not installed is skipped with the reason.

A pair's inputs are the op benchmark's (`op_timing.OPS`: batch 1, 4 heads of 64, float32), turned into
the peer's layout and conventions before any timing (a transpose, a scale folded into q). Where the peer
computes only part of the op (Mamba-3's SSD form run as fla's simple GLA), the rest is written beside it
as the op writes it, so both sides do the same maths. Before timing, the worker checks the two outputs
agree (relative 1e-4 of the output's largest entry): a peer that computes something else is an error,
not a ratio.

Why one process for both, with interleaved rounds: the two calls then share the allocator state and the
machine's load, and a slow spell hits both, so their ratio is steadier than two separate timings. The
worker is still spawned fresh per pair (`op_timing` explains the allocator history).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from archbench.bench.measure.op_timing import OPS, Worker

TOLERANCE = 1e-4  # largest |ours - peer| over largest |ours|, float32


class PeerMissing(RuntimeError):
    """The peer's package is not installed here."""


class PeerBackwardFails(RuntimeError):
    """The peer's own autograd fails (a train round): a property of the peer, reported, not an error."""


@cache
def fla_naive(path: str, name: str) -> Callable:
    """`name` from fla's `fla/ops/<path>.py`, loaded from the installed fla-core without running fla's
    `__init__` (which imports Triton)."""
    spec = importlib.util.find_spec("fla")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise PeerMissing("fla-core is not installed (pip install 'archbench[peers]')")
    file = Path(next(iter(spec.submodule_search_locations))) / "ops" / f"{path}.py"
    if not file.is_file():
        raise PeerMissing(f"this fla-core has no {file.relative_to(file.parents[2])}")
    loaded = importlib.util.spec_from_file_location(f"_archbench_peer_fla_{path.replace('/', '_')}", file)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return getattr(module, name)


@cache
def transformers_fn(model: str, name: str) -> Callable:
    """`name` from transformers' `models/<model>/modeling_<model>.py`."""
    if importlib.util.find_spec("transformers") is None:
        raise PeerMissing("transformers is not installed (pip install 'archbench[peers]')")
    return getattr(importlib.import_module(f"transformers.models.{model}.modeling_{model}"), name)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Peer:
    op: str  # the op it stands against (a key of op_timing.OPS)
    package: str  # the distribution it comes from: fla-core or transformers
    source: str  # where the function lives in that package
    load: Callable[[], Callable]  # the function (raises PeerMissing)
    adapt: Callable[[list[torch.Tensor]], list[torch.Tensor]]  # the op's inputs -> the peer's arguments
    call: Callable[..., torch.Tensor]  # (function, *arguments) -> the output in the op's layout (B, T, H, V)
    constants: tuple[int, ...] = ()  # peer arguments made from an op input that takes no gradient


def _bhtd(t: torch.Tensor) -> torch.Tensor:  # (B, T, H, ...) -> (B, H, T, ...)
    return t.transpose(1, 2).contiguous()


def _mamba3_via_simple_gla(simple_gla: Callable, q, k, v, la, dt, lam) -> torch.Tensor:
    """Mamba-3's SSD form (archs/ops/mamba3.py) with fla's simple GLA as its scalar-decay recurrence: the
    input weight σ and the diagonal correction are the op's own few elementwise steps."""
    c = (1 - lam) * dt
    c_next = F.pad(c[:, 1:], (0, 0, 0, 1))
    sigma = lam * dt + c_next
    y = simple_gla(q, k, v * sigma[..., None], la, chunk_size=64, scale=1.0)[0]
    return y - (c_next * (q * k).sum(-1))[..., None] * v


def _peers() -> dict[str, Peer]:
    K = 64
    first = lambda f, *a, **kw: f(*a, **kw)[0]  # noqa: E731  (the peers return (output, state))
    simple_gla = lambda: fla_naive("simple_gla/naive", "naive_chunk_simple_gla")  # noqa: E731
    return {
        "linear_attention · fla naive_chunk_linear_attn": Peer(
            "linear_attention", "fla-core", "fla/ops/linear_attn/naive.py",
            lambda: fla_naive("linear_attn/naive", "naive_chunk_linear_attn"),
            lambda x: x, lambda f, q, k, v: f(q, k, v, scale=1.0)),  # returns the output alone
        "retnet · fla naive_chunk_simple_gla": Peer(
            "retnet", "fla-core", "fla/ops/simple_gla/naive.py", simple_gla,
            lambda x: [*x[:3], x[3].expand(*x[0].shape[:3]).contiguous()],
            lambda f, q, k, v, g: first(f, q, k, v, g, chunk_size=64, scale=1.0),
            constants=(3,)),  # RetNet's decay is fixed per head: no gradient on either side
        "gla · fla naive_recurrent_gla": Peer(  # fla's only pure-PyTorch GLA is the token loop
            "gla", "fla-core", "fla/ops/gla/naive.py", lambda: fla_naive("gla/naive", "naive_recurrent_gla"),
            lambda x: [x[0] * K ** 0.5, *x[1:]],  # it scales q by K^-1/2; the op's scale is 1
            lambda f, q, k, v, gk: first(f, q, k, v, gk)),
        "deltanet · fla delta_rule_chunkwise": Peer(
            "deltanet", "fla-core", "fla/ops/delta_rule/naive.py",
            lambda: fla_naive("delta_rule/naive", "delta_rule_chunkwise"),
            lambda x: [_bhtd(t) for t in x],
            lambda f, q, k, v, beta: first(f, q, k, v, beta, chunk_size=32).transpose(1, 2)),
        "gated_deltanet · fla naive_chunk_gated_delta_rule": Peer(
            "gated_deltanet", "fla-core", "fla/ops/gated_delta_rule/naive.py",
            lambda: fla_naive("gated_delta_rule/naive", "naive_chunk_gated_delta_rule"),
            lambda x: x, lambda f, q, k, v, beta, g: first(f, q, k, v, g, beta, chunk_size=64)),
        "gated_deltanet · transformers torch_chunk_gated_delta_rule": Peer(
            "gated_deltanet", "transformers", "transformers/models/qwen3_next/modeling_qwen3_next.py",
            lambda: transformers_fn("qwen3_next", "torch_chunk_gated_delta_rule"),
            lambda x: x, lambda f, q, k, v, beta, g: first(f, q, k, v, g, beta, chunk_size=64)),
        "kda · fla naive_chunk_kda": Peer(
            "kda", "fla-core", "fla/ops/kda/naive.py", lambda: fla_naive("kda/naive", "naive_chunk_kda"),
            lambda x: x, lambda f, q, k, v, beta, g: first(f, q, k, v, g, beta, chunk_size=64)),
        "kda · transformers chunk_kimi_delta_attention": Peer(
            "kda", "transformers", "transformers/models/kimi_linear/modeling_kimi_linear.py",
            lambda: transformers_fn("kimi_linear", "chunk_kimi_delta_attention"),
            lambda x: x, lambda f, q, k, v, beta, g: first(f, q, k, v, g, beta, chunk_size=64)),
        "mamba2 (ssd) · fla naive_chunk_simple_gla": Peer(  # SSD is simple GLA with q = C, k = B, v = Δx
            "mamba2 (ssd)", "fla-core", "fla/ops/simple_gla/naive.py", simple_gla,
            lambda x: [x[4][:, :, None].expand_as(x[0]).contiguous(), x[3][:, :, None].expand_as(x[0])
                       .contiguous(), x[0] * x[1][..., None], x[1] * x[2]],
            lambda f, q, k, v, g: first(f, q, k, v, g, chunk_size=64, scale=1.0)),
        "mamba3 (ssd) · fla naive_chunk_simple_gla": Peer(
            "mamba3 (ssd)", "fla-core", "fla/ops/simple_gla/naive.py", simple_gla,
            lambda x: x, _mamba3_via_simple_gla),
        "rwkv6 (wkv) · fla naive_chunk_rwkv6": Peer(
            "rwkv6 (wkv)", "fla-core", "fla/ops/rwkv6/chunk_naive.py",
            lambda: fla_naive("rwkv6/chunk_naive", "naive_chunk_rwkv6"),
            lambda x: [_bhtd(x[0]), _bhtd(x[1]), _bhtd(x[2]), _bhtd(x[3]), x[4]],
            lambda f, r, k, v, w, u: f(r, k, v, w, u, chunk_size=32).transpose(1, 2)),
        "rwkv7 · fla dplr_chunkwise": Peer(  # RWKV-7 is the DPLR recurrence with α = a, β = b
            "rwkv7", "fla-core", "fla/ops/generalized_delta_rule/dplr/naive.py",
            lambda: fla_naive("generalized_delta_rule/dplr/naive", "dplr_chunkwise"),
            lambda x: [_bhtd(x[0] * K ** 0.5), _bhtd(x[2]), _bhtd(x[3]), _bhtd(x[4]), _bhtd(x[5]),
                       _bhtd(x[1])],  # (q, k, v, α, β, gk); it scales q by K^-1/2, RWKV-7 does not
            lambda f, q, k, v, alpha, beta, gk: first(f, q, k, v, alpha, beta, gk, chunk_size=32)
            .transpose(1, 2)),
    }


PEERS = _peers()


def peer_version(name: str) -> str:
    return _package_version(PEERS[name].package)


def check_agreement(name: str, ours: torch.Tensor, peer: torch.Tensor) -> None:
    """Raises ValueError unless the peer's output is the op's, to `TOLERANCE` of its largest entry."""
    if ours.shape != peer.shape:
        raise ValueError(f"{name}: the peer's output is {tuple(peer.shape)}, the op's {tuple(ours.shape)}")
    err = float((ours - peer).abs().max() / ours.abs().max())
    if not err <= TOLERANCE:  # a NaN fails too
        raise ValueError(f"{name}: outputs differ by {err:.2e} of the largest (> {TOLERANCE})")


def _serve(conn, name: str) -> None:
    """The worker: for each (mode, n) asked, one round — the op's call and the peer's, in an order that
    alternates round by round — and the seconds each took; or the error that stopped it."""
    torch.set_num_threads(1)
    peer = PEERS[name]
    make, ours = OPS[peer.op].inputs, OPS[peer.op].call
    inputs: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    rounds = 0
    while (msg := conn.recv()) is not None:
        try:
            fn = peer.load()
            mode, n = msg
            train = mode == "train"
            if msg not in inputs:
                xs = make(n, torch.Generator().manual_seed(0))
                ps = peer.adapt(xs)
                with torch.no_grad():
                    check_agreement(name, ours(*xs), peer.call(fn, *ps))
                inputs[msg] = ([x.detach().requires_grad_(train and x.dim() > 1) for x in xs],
                               [p.detach().requires_grad_(train and p.dim() > 1 and i not in peer.constants)
                                for i, p in enumerate(ps)])
            xs, ps = inputs[msg]
            seconds = [0.0, 0.0]
            for i in ((0, 1) if rounds % 2 == 0 else (1, 0)):
                start = time.perf_counter()
                with torch.set_grad_enabled(train):
                    out = ours(*xs) if i == 0 else peer.call(fn, *ps)
                    if train:
                        try:
                            out.sum().backward()
                        except RuntimeError as exc:
                            if i == 0:
                                raise  # archbench's own backward: an error
                            raise PeerBackwardFails(str(exc)) from exc
                seconds[i] = time.perf_counter() - start
            rounds += 1
            conn.send(("ok", seconds))
        except Exception as exc:  # sent to the benchmark, which fails or skips with it
            kind = ("missing" if isinstance(exc, PeerMissing)
                    else "backward" if isinstance(exc, PeerBackwardFails) else "error")
            conn.send((kind, f"{type(exc).__name__}: {exc}"))


class PeerWorker(Worker):
    """A spawned process that times one pair (module docstring), in op_timing's allocator state:
    `round(mode, n)` returns (the op's seconds, the peer's seconds); raises PeerMissing where the peer is
    not installed."""

    def __init__(self, name: str):
        if name not in PEERS:
            raise ValueError(f"unknown pair {name!r}; choose from {', '.join(PEERS)}")
        self.name = name
        super().__init__(_serve, name)

    def round(self, mode: str, n: int) -> tuple[float, float]:
        self._conn.send((mode, n))
        status, value = self._conn.recv()
        if status == "missing":
            raise PeerMissing(value)
        if status == "backward":
            raise PeerBackwardFails(value)
        if status == "error":
            raise RuntimeError(value)
        return tuple(value)
