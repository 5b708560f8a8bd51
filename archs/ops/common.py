"""Plumbing the mixers share, written once: state dtype, optional fused kernels, the choice of the path a
call runs, Δ / A initialisers, and a few small pieces several layers and ops use.

- `state_dtype`: the dtype a scan and its carried state run in.
- `Kernel`: one optional fused kernel (flash-linear-attention, mamba-ssm, causal-conv1d, flash-attn):
  where it is imported from (lazily, through `archs/kernels.py`), the dtypes it is built for, why it
  cannot run here, and, for a kernel that may refuse its backward at run time (fla on Hopper with
  Triton < 3.7.1, fla #640), a tiny probe. A mixer lists its kernels in `Mixer.kernels`
  (backend -> Kernel), which also answers `Mixer.backend_unavailable`.
- `pick_backend`: the backend a parallel call really runs, after the checks that can only happen at
  run time (the input's dtype, a shape the kernel does not take, a refused backward), with the label
  `Mixer.last_backend` shows.
- `probe_leaves`: the tiny random inputs of a backward probe.
- `dt_bias_init`, `s4d_real_a_log`, `a_log_uniform`: Mamba's initialisers of the step size Δ and of
  the (negative) state matrix A = -exp(A_log), shared by Mamba, Mamba-2, Mamba-3, Gated DeltaNet, KDA.
- `log_decay_floor`, `mask_bias`, `decayed_scores`: the floor of a per-token log decay, the -inf mask
  added to an exponent, and the pair scores of a chunk under a per-channel decay, used by the chunked ops
  with per-channel decays (wkv, gated_linear, delta_rule, rwkv7).
- `segment_length`, `in_segments`: the pure-PyTorch parallel paths run a cache-sized segment at a time,
  carrying the state, so their time stays linear in T.
- `token_shift`, `short_conv`: the previous token (RWKV-6, RWKV-7) and the optional short causal
  convolution with its carried inputs (attention, swa).

Glossary:
    Δ (dt)      step size of the discretised SSM, softplus(raw + dt_bias) > 0
    A, A_log    state matrix (diagonal or scalar per head), stored as A_log so that A = -exp(A_log) < 0
    probe       (fn, device) -> None: a tiny forward+backward of kernel `fn` on `device`; raises on refusal
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from archbench.archs.kernels import backward_refusal, optional_kernel

if TYPE_CHECKING:
    from archbench.archs.base import Mixer


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a scan and its state for activations of `dtype`: float64 stays float64 (exactness
    checks), anything else runs in float32. The state sums unboundedly many decayed inputs; in
    bf16 / fp16 the rounding of every step would compound (mamba-ssm and fla accumulate in float32 too)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# -- optional fused kernels ----------------------------------------------------------------------------
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what fla's and mamba-ssm's kernels take


@dataclass(frozen=True)
class Kernel:
    """An optional fused kernel `from module import attr`, shipped by `package` (for messages)."""

    module: str
    attr: str
    package: str
    probe: Callable[[Callable, str], None] | None = None  # set where the backward may be refused
    dtypes: tuple[torch.dtype, ...] = _TRITON_DTYPES  # the input dtypes it is built for

    def load(self) -> Callable | None:
        """The kernel function, or None when it cannot be imported (cached by `optional_kernel`)."""
        return optional_kernel(self.module, self.attr)[0]

    def __call__(self, *args, **kwargs):
        fn, reason = optional_kernel(self.module, self.attr)
        if fn is None:
            raise RuntimeError(reason)
        return fn(*args, **kwargs)

    def unavailable(self, device: torch.device | str) -> str | None:
        """Why the kernel cannot run on `device` here, or None. Every kernel here is CUDA-only."""
        if torch.device(device).type != "cuda":
            return f"{self.package} needs a CUDA device"
        return optional_kernel(self.module, self.attr)[1]

    def backward_refusal(self, device: torch.device | str) -> str | None:
        """Why the kernel's backward fails on `device` (probed once per device), or None."""
        if self.probe is None:
            return None
        device = str(device)
        return backward_refusal(f"{self.module}.{self.attr}", device, lambda: self.probe(self.load(), device))


def pick_backend(mixer: Mixer, x: torch.Tensor, unsupported: str | None = None) -> str:
    """The backend a parallel call on `x` runs; sets `mixer.last_backend` to say which, and why.

    A fused kernel of `mixer.kernels` falls back to the mixer's reference backend where it cannot serve
    this call: an input dtype it is not built for (fla's and mamba-ssm's have no float64, flash-attn
    takes fp16 / bf16 only), a call the mixer says it cannot take (`unsupported`, the reason, e.g. a
    head width the kernel does not support), or a call that will be differentiated on a device where
    the kernel refuses its backward — which it does only inside `.backward()`, too late to switch,
    hence the probe before the forward."""
    backend = mixer.resolve_backend(x.device)
    mixer.last_backend = backend
    kernel, fallback = mixer.kernels.get(backend), mixer.reference_backend
    if kernel is None:
        return backend
    if x.dtype not in kernel.dtypes:
        mixer.last_backend = f"{fallback} ({backend} has no {str(x.dtype).removeprefix('torch.')} kernels)"
        return fallback
    if unsupported:
        mixer.last_backend = f"{fallback} ({unsupported})"
        return fallback
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in mixer.parameters()))
    refusal = kernel.backward_refusal(x.device) if needs_grad else None
    if refusal:
        mixer.last_backend = f"{fallback} ({backend} backward refused: {refusal})"
        return fallback
    return backend


def probe_leaves(device: str, n: int = 3, shape: tuple[int, ...] = (1, 16, 1, 16),
                 sample: Callable[..., torch.Tensor] = torch.randn) -> list[torch.Tensor]:
    """`n` tiny random tensors that require grad, (B, T, H, K) = (1, 16, 1, 16) by default: the inputs of
    a backward probe."""
    return [sample(*shape, device=device).requires_grad_() for _ in range(n)]


# -- initialisers ------------------------------------------------------------------------------------
def dt_bias_init(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """Mamba's Δ init (Gu & Dao 2023, §3.6 and its code): Δ drawn log-uniform in [dt_min, dt_max]
    (floored at 1e-4), returned as softplus⁻¹(Δ), so that softplus(bias) starts at Δ. (n,) float32."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(n) * (hi - lo) + lo).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))  # softplus⁻¹(Δ) = Δ + log(1 - e^-Δ)


def s4d_real_a_log(channels: int, d_state: int) -> torch.Tensor:
    """S4D-real init (Gu et al. 2022): A = -(1, 2, ..., N) in every channel, as A_log (channels, N)."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)


def a_log_uniform(n: int, low: float = 1.0, high: float = 16.0) -> torch.Tensor:
    """Mamba-2's init of its scalar A per head: A = -exp(A_log) uniform in [-high, -low]. (n,)"""
    return torch.log(torch.empty(n).uniform_(low, high))


# -- pieces of the chunked ops ---------------------------------------------------------------------------
def log_decay_floor(dtype: torch.dtype) -> float:
    """-20 in float32, -40 in float64. A one-token decay below e^floor wipes the state to below the
    dtype's resolution, so raising it to e^floor changes no output bit that matters; it bounds the
    cumulative log decay of a chunk of Q tokens by Q |floor|, so differences of cumulative sums keep
    their precision in the chunked ops however strong the learned decay gets."""
    return math.log(torch.finfo(dtype).eps) - 4


def mask_bias(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """0 where `keep`, -inf elsewhere, with a trailing axis for K, in `like`'s dtype and device: added to
    an exponent, it masks before exp, so a positive exponent of a pair that is not causal never overflows."""
    bias = torch.zeros(keep.shape, dtype=like.dtype, device=like.device).masked_fill(~keep.to(like.device),
                                                                                    -math.inf)
    return bias.unsqueeze(-1)


def decayed_scores(q: torch.Tensor, k: torch.Tensor, bq: torch.Tensor, bk: torch.Tensor, sub_chunk: int,
                   diagonal: bool = True) -> torch.Tensor:
    """Pair scores with a per-channel decay inside each chunk: S[i, j] = Σ_c q_ic k_jc exp(bq_ic − bk_jc)
    for j <= i (j < i if not `diagonal`), 0 elsewhere. q, k, bq, bk (..., Q, K), Q a multiple of
    `sub_chunk`; bq, bk cumulative log decays within the chunk (<= 0, bk non-increasing along the chunk,
    bq_i <= bk_{i-1}: the same cumulative sum, or the one of the token before). Returns (..., Q, Q).

    The decay differs per channel, so S is not a plain q kᵀ; building the (Q, Q, K) tensor of
    exp(bq_i − bk_j) costs Q K elementwise work per token. Instead the chunk is cut into sub-chunks of c
    tokens: for keys j in an earlier sub-chunk than the query's (j < a <= i, a the query sub-chunk's first
    token) the exponent splits at r = bk_{a-1}, the key decay at the end of the sub-chunk before, into
    q_i exp(bq_i − r) and k_j exp(r − bk_j), both exponents <= 0, so the pairs are one matmul; only pairs
    inside one sub-chunk are built elementwise, a (c, c, K) tensor. Work per token: Q K (matmul) plus
    (Q / c + c) K elementwise, against Q K elementwise; every exp is of a number <= 0 (or -inf, masked)."""
    Q, K = q.shape[-2:]
    c = sub_chunk
    nI = Q // c
    q_s, bq_s, k_s, bk_s = (t.unflatten(-2, (nI, c)) for t in (q, bq, k, bk))  # (..., nI, c, K)
    r = F.pad(bk_s[..., -1:, :], (0, 0, 0, 0, 1, -1))  # (..., nI, 1, K): bk_{a-1}, 0 before the first
    q_r = q_s * (bq_s - r).exp()
    earlier = torch.arange(Q, device=q.device) < torch.arange(0, Q, c, device=q.device)[:, None]  # (nI, Q)
    k_r = k.unsqueeze(-3) * (r - bk.unsqueeze(-3) + mask_bias(earlier, bk)).exp()  # (..., nI, Q, K)
    scores = q_r @ k_r.transpose(-1, -2)  # (..., nI, c, Q): 0 at keys of the query's own sub-chunk or later
    keep = torch.ones(c, c, dtype=torch.bool, device=q.device).tril(0 if diagonal else -1)
    decay = (bq_s.unsqueeze(-2) - bk_s.unsqueeze(-3) + mask_bias(keep, bq)).exp()  # (..., nI, c, c, K)
    own = torch.einsum("...ik,...ijk->...ij", q_s, k_s.unsqueeze(-3) * decay)  # (..., nI, c, c)
    blocks = scores.unflatten(-1, (nI, c))  # (..., nI, c, nI, c): query sub-chunk, key sub-chunk
    blocks.diagonal(dim1=-4, dim2=-2).add_(own.movedim(-3, -1))  # the own sub-chunk's pairs
    return scores.flatten(-3, -2)  # (..., Q, Q)


# -- the pure-PyTorch parallel paths, a segment at a time ------------------------------------------------
# Working set of one segment: about this many elements of the layer's widest per-token activations.
_SEGMENT_ELEMENTS = 1 << 20


def segment_length(batch: int, width: int, multiple: int) -> int:
    """Tokens per segment of a pure-PyTorch parallel path: whole multiples of `multiple` (the chunk), about
    `_SEGMENT_ELEMENTS` elements of activations `width` wide per token (at least one chunk).

    Why segments: run on a whole 16k-token sequence at once, every activation of the layer is tens of MB,
    past the caches and past glibc's mmap threshold (32 MB at most), so each one is a fresh mapping whose
    pages fault in on first touch; time per token then grows with T. Segments of ~4 MB tensors stay in
    cache and are reused by the allocator, so time stays linear in T."""
    return max(multiple, _SEGMENT_ELEMENTS // (batch * width) // multiple * multiple)


def in_segments(fn: Callable, x: torch.Tensor, carry, length: int) -> tuple[torch.Tensor, object]:
    """Run `fn(x_segment, carry) -> (y_segment, carry)` over consecutive segments of `length` tokens of
    x (B, T, ·), carrying the recurrent state across; returns y (B, T, ·) and the carry after x. With
    segments of whole chunks the chunked ops do the same arithmetic as on the whole sequence."""
    if length >= x.shape[1]:
        return fn(x, carry)
    ys = []
    for s in range(0, x.shape[1], length):
        y, carry = fn(x[:, s:s + length], carry)
        ys.append(y)
    return torch.cat(ys, 1), carry


# -- pieces of the layers --------------------------------------------------------------------------------
def token_shift(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """The previous token along T of x (B, T, D), with `first` (B, D) before position 0."""
    return torch.cat([first.unsqueeze(1), x[:, :-1]], 1)


def short_conv(conv: torch.nn.Conv1d, x: torch.Tensor,
               history: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise `conv` (width W) of x (B, T, D), after the W - 1 inputs `history` (B, W - 1, D;
    zeros at the start). Returns the window of inputs (B, W - 1 + T, D), whose last W - 1 rows are the
    next call's history, and the output (B, T, D)."""
    if history is None:
        history = x.new_zeros(x.shape[0], conv.kernel_size[0] - 1, x.shape[2])
    window = torch.cat([history, x], 1)
    return window, F.conv1d(window.transpose(1, 2), conv.weight, conv.bias,
                            groups=x.shape[2]).transpose(1, 2)
