"""Plumbing the ops and mixers share, written once: state dtype, Δ / A initialisers, and a few small
pieces several layers and ops use. (Optional fused kernels and the choice of a call's path are
archs/backends.py's.)

- `state_dtype`: the dtype a scan and its carried state run in.
- `dt_bias_init`, `s4d_real_a_log`, `a_log_uniform`: Mamba's initialisers of the step size Δ and of
  the (negative) state matrix A = -exp(A_log), shared by Mamba, Mamba-2, Mamba-3, Gated DeltaNet, KDA.
- `log_decay_floor`, `mask_bias`, `decayed_scores`: the floor of a per-token log decay, the -inf mask
  added to an exponent, and the pair scores of a chunk under a per-channel decay, used by the chunked ops
  with per-channel decays (wkv, gated_linear, delta_rule, rwkv7); `PER_CHANNEL_CHUNK` and
  `PER_CHANNEL_SUB_CHUNK`, the chunk and sub-chunk those run in.
- `segment_length`, `in_segments`: the pure-PyTorch parallel paths run a cache-sized segment at a time,
  carrying the state, so their time stays linear in T.
- `token_shift`, `depthwise_causal_conv`, `short_conv`: the previous token (RWKV-6, RWKV-7), the causal
  depthwise convolution every layer with a short conv runs, and the optional short convolution with its
  carried inputs (attention, swa, RG-LRU).

Glossary:
    Δ (dt)      step size of the discretised SSM, softplus(raw + dt_bias) > 0
    A, A_log    state matrix (diagonal or scalar per head), stored as A_log so that A = -exp(A_log) < 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    pass


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a scan and its state for activations of `dtype`: float64 stays float64 (exactness
    checks), anything else runs in float32. The state sums unboundedly many decayed inputs; in
    bf16 / fp16 the rounding of every step would compound (mamba-ssm and fla accumulate in float32 too)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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
def to_chunks(t: torch.Tensor, Q: int, pad: int, value: float = 0.0) -> torch.Tensor:
    """(B, T, H, ...) -> (B, H, N, Q, ...) with `pad` tokens of `value` appended (N Q = T + pad): a strided
    view (a copy only where it pads). `chunk_groups` makes each group of chunks contiguous, the one copy
    the batched matmuls then need."""
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad), value=value)
    B, T, H = t.shape[:3]
    return t.view(B, T // Q, Q, H, *t.shape[3:]).movedim(3, 1)


def chunk_groups(tensors: tuple[torch.Tensor | None, ...], size: int) -> Iterator[tuple]:
    """The chunks of (B, H, N, ...) tensors in groups of `size` along N: one tuple per group, each part
    contiguous (None stays None). Contiguous because a batched matmul copies a strided batch on every call
    (the (B, H, n) axes of a `to_chunks` view or of a slice along N do not collapse into one), so each
    group is copied once, and the matmuls that read q, k, v several times copy nothing. Split, not
    sliced: a split's backward concatenates the groups' gradients once, where each slice's backward
    would zero-fill a gradient the size of the whole tensor (quadratic in T over the groups)."""
    parts = [None if t is None else t.split(size, dim=2) for t in tensors]
    count = max(len(p) for p in parts if p is not None)
    for i in range(count):
        yield tuple(None if p is None else p[i].contiguous() for p in parts)


def from_chunks(groups: list[torch.Tensor], T: int) -> torch.Tensor:
    """Outputs of consecutive chunk groups, each (B, H, n, Q, V), as (B, T, H, V): the padding dropped. One
    copy: the concatenation writes the (B, N, Q, H, V) layout, which then reshapes as a view."""
    B, H, _, _, V = groups[0].shape
    o = torch.cat([g.movedim(1, 3) for g in groups], 1) if len(groups) > 1 else groups[0].movedim(1, 3)
    return o.reshape(B, -1, H, V)[:, :T]


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


# The chunk and sub-chunk a per-channel decay runs best in (GLA, HGRN2 and KDA use them): its elementwise
# work per token, K (Q / c + c) in `decayed_scores`, not its matmuls, bounds it on CPU, so a short chunk
# pays. Chosen by interleaved timing on a 2 MiB-L2 Xeon of GLA's op over Q in {8, ..., 128} and c in
# {2, 4, 8, 16} at 1k-16k tokens and at the grid's training shape, and of KDA's over Q in {16, 32, 64} and
# c in {2, 4, 8}: (16, 4) was the fastest or within the noise of it everywhere, in prefill and train. The
# op benchmark (results/op_speed.md) times the ops at it.
PER_CHANNEL_CHUNK = 16
PER_CHANNEL_SUB_CHUNK = 4


# -- working-set size ------------------------------------------------------------------------------------
def _l2_cache_bytes() -> int:
    """One core's L2 cache in bytes, as Linux reports it (sysfs); 1 MiB where it does not say."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data") and size[:-1].isdigit():
            return int(size[:-1]) << {"K": 10, "M": 20}.get(size[-1], 0)
    return 1 << 20


# Read once at import: the ops call `cache_elements` inside code torch.compile traces, which must not
# read files.
L2_CACHE_BYTES = _l2_cache_bytes()


def cache_elements(dtype: torch.dtype) -> int:
    """How many elements of `dtype` fill one core's L2: the size a chunked op's largest temporary per group
    of chunks is held to, so a group's pair scores are reused from cache rather than memory (grouping
    RetNet's chunks this way made its op 2x faster at 4k on a 2 MiB-L2 Xeon than groups of 8 MB)."""
    return L2_CACHE_BYTES // dtype.itemsize


# A scalar-decay (or no-decay) chunk holds about this many (Q, Q) temporaries at once — the scores, the
# decay matrix, their product, the state's share — so its group of chunks fits L2 when each is a quarter
# of it. Chosen by timing each op's prefill at 1k-16k over group sizes from L2/32 to 4 L2 on a 2 MiB-L2
# Xeon: a quarter of L2 was the fastest for linear attention, SSD and the delta rule at 4k and within the
# noise of the fastest at 1k and 16k; the per-channel paths (GLA, KDA, RWKV-6/7), whose larger elementwise
# temporaries set their own group, were fastest with that temporary at the whole L2.
SCORE_TEMPORARIES = 4


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


def depthwise_causal_conv(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                          dim: int = 1) -> torch.Tensor:
    """A causal depthwise convolution over `window`, whose first W - 1 steps along `dim` are the carried
    inputs: out[t] = bias + Σ_i weight[:, i] · window[t + i] (`nn.Conv1d`'s cross-correlation, tap 0 on the
    oldest input). weight (D, W); window (B, W - 1 + T, D) with dim=1, or (B, D, W - 1 + T) with dim=-1.

    Why W shifted multiply-adds and not `F.conv1d`: on CPU a depthwise conv1d is a oneDNN call that
    neither fuses with its neighbours under torch.compile nor runs near memory speed (its backward least
    of all), and needs a (B, D, T) copy of time-major activations; the shifted sum is one elementwise
    pass per tap (docs/methods.md, "The frontier grid", says why the training step changed)."""
    width = weight.shape[-1]
    steps = window.shape[dim] - width + 1
    per_channel = (-1,) if dim == 1 else (-1, 1)  # a (D,) vector broadcast along the window's channels
    taps = weight.t().reshape(width, *per_channel)  # tap i: (D,) or (D, 1)
    out = window.narrow(dim, 0, steps) * taps[0]
    for i in range(1, width):
        out = torch.addcmul(out, window.narrow(dim, i, steps), taps[i])
    return out if bias is None else out + bias.view(per_channel)


def short_conv(conv: torch.nn.Conv1d, x: torch.Tensor,
               history: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise `conv` (width W) of x (B, T, D), after the W - 1 inputs `history` (B, W - 1, D;
    zeros at the start). Returns the window of inputs (B, W - 1 + T, D), whose last W - 1 rows are the
    next call's history, and the output (B, T, D)."""
    if history is None:
        history = x.new_zeros(x.shape[0], conv.kernel_size[0] - 1, x.shape[2])
    window = torch.cat([history, x], 1)
    return window, depthwise_causal_conv(window, conv.weight[:, 0], conv.bias)
