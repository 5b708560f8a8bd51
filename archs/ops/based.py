"""Based's linear attention: the 2nd-order Taylor feature map of exp(q·k / √d), normalised.

Based (Arora et al. 2024, "Simple linear attention language models balance the recall-throughput
tradeoff", arXiv 2402.18668, §3). Checked against Zoology's zoology/mixers/based.py (train_view
"linear", its normaliser and ε) with zoology/mixers/feature_maps/taylor.py (TaylorExp), and against
flash-linear-attention's fla/ops/based/naive.py and fla/modules/feature_map.py (TaylorFeatureMap). The
Based model mixes this with sliding-window softmax attention (archs/ops/sliding_window.py) and short
gated convolutions; those belong to the layers, not to this op.

Per head, on a small feature width d (16 in the paper), with s = scale · q_t·k_j (scale = d^-1/2):
    φ(q)ᵀφ(k) = 1 + s + s²/2,        φ(x) = [1, x, x⊗x/√2] with x scaled by √scale
    S_t = S_{t-1} + φ(k_t) v_tᵀ,     z_t = z_{t-1} + φ(k_t)
    y_t = S_tᵀ φ(q_t) / (z_tᵀ φ(q_t) + ε)          ε = 1e-12 as Zoology
The normaliser is Zoology's: a plain sum, no absolute value, no clamp. It needs none: 1 + s + s²/2 >= 1/2
for every s, so each token adds at least 1/2 to the denominator (the constant feature alone adds 1 to z's
first entry), and ε only guards an empty history. The state is (S, z).

φ is stored compact: x⊗x is symmetric, so its d(d+1)/2 upper-triangle entries, the diagonal divided by √2
and the rest kept once, give the same (xᵀx')²/2; φ has D = 1 + d + d(d+1)/2 entries (153 at d = 16), as
Zoology's `expanded_size` and fla's TaylorFeatureMap, where Zoology's forward builds all d² products
(1 + d + d² = 273). Same outputs; the state is S (D × d_v) and z (D).

Chunked form (linear attention's chunkwise form, as fla's naive_chunk_based). z follows S's recurrence
with the value 1, so the code carries [S | z] as one D × (V + 1) matrix and v as [v, 1]. In a chunk of
Q tokens entering with [S | z]:
    [num | den]_i = φ(q_i)ᵀ [S | z] + Σ_{j<=i in the chunk} (1 + s_ij + s_ij²/2) [v_j, 1]
    [S | z]      <- [S | z] + φ(K)ᵀ [V, 1]
so inside a chunk only the (Q, Q) scores q kᵀ are needed, never φ of them; φ enters only against the
carried state. Work per token and head O(Q (d + V) + D V); one state per chunk is held. Padded tokens
have [v, 1] = 0, so they write nothing (φ(0) = [1, 0, 0] is not 0).

Glossary (code -> paper):
    B, T, H         batch, tokens, heads
    d, V            feature width of q and k (the paper's d', 16), value width
    D               width of φ: 1 + d + d(d+1)/2
    q, k, v         query, key (B, T, H, d), value (B, T, H, V)
    S, z            Σ φ(k) vᵀ (B, H, D, V) and Σ φ(k) (B, H, D), the state
    Q, N            chunk length, number of chunks
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from archbench.archs.ops.common import chunk_groups, from_chunks, state_dtype, to_chunks

BasedState = tuple[Tensor, Tensor]  # (S (B, H, D, V), z (B, H, D))

_BLOCK_ELEMENTS = 1 << 20  # elements of the largest per-block temporary of `based_chunked`
_EPS = 1e-12  # Zoology's ε


def _default_scale(q: Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


def taylor_width(d: int) -> int:
    """D, the number of entries of φ for feature width d: 1 + d + d(d+1)/2."""
    return 1 + d + d * (d + 1) // 2


def taylor_features(x: Tensor, scale: float) -> Tensor:
    """φ(x) (..., D) for x (..., d): [1, √scale x, the upper triangle of scale x⊗x with its diagonal
    divided by √2], so that φ(q)ᵀφ(k) = 1 + s + s²/2 with s = scale q·k."""
    d = x.shape[-1]
    x = x * math.sqrt(scale)
    i, j = torch.triu_indices(d, d, device=x.device)
    weight = x.new_ones(i.shape).masked_fill(i == j, 2 ** -0.5)  # x's dtype: 1/√2 not rounded to float32
    quad = x[..., i] * x[..., j] * weight
    return torch.cat([torch.ones_like(x[..., :1]), x, quad], -1)


def based_zero_state(batch: int, heads: int, d: int, V: int, like: Tensor) -> BasedState:
    D = taylor_width(d)
    return like.new_zeros(batch, heads, D, V), like.new_zeros(batch, heads, D)


# -- the definition: one token, and the loop over time --------------------------------------------------
def based_step(q: Tensor, k: Tensor, v: Tensor, state: BasedState, scale: float | None = None,
               eps: float = _EPS) -> tuple[Tensor, BasedState]:
    """One token: q, k (B, H, d), v (B, H, V), state (S, z). Returns y (B, H, V) and the new state."""
    S, z = state
    scale = _default_scale(q, scale)
    phi_k, phi_q = taylor_features(k, scale), taylor_features(q, scale)  # (B, H, D)
    S = S + phi_k[..., :, None] * v[..., None, :]
    z = z + phi_k
    num = torch.einsum("bhd,bhdv->bhv", phi_q, S)
    return num / ((phi_q * z).sum(-1) + eps)[..., None], (S, z)


def based_sequential(q: Tensor, k: Tensor, v: Tensor, initial_state: BasedState | None = None,
                     scale: float | None = None, eps: float = _EPS) -> tuple[Tensor, BasedState]:
    """The recurrence token by token, the reference. q, k (B, T, H, d), v (B, T, H, V); returns y
    (B, T, H, V) in the inputs' dtype and the final state (S, z) in the compute dtype."""
    B, T, H, d = q.shape
    dtype, cd = q.dtype, state_dtype(q.dtype)
    q, k, v = q.to(cd), k.to(cd), v.to(cd)
    state = (based_zero_state(B, H, d, v.shape[-1], q) if initial_state is None
             else tuple(s.to(cd) for s in initial_state))
    out = []
    for t in range(T):
        y, state = based_step(q[:, t], k[:, t], v[:, t], state, _default_scale(q, scale), eps)
        out.append(y)
    return torch.stack(out, 1).to(dtype), state


# -- the chunked parallel form ----------------------------------------------------------------------------
def based_chunked(q: Tensor, k: Tensor, v: Tensor, initial_state: BasedState | None = None,
                  chunk_size: int = 64, scale: float | None = None,
                  eps: float = _EPS) -> tuple[Tensor, BasedState]:
    """Same contract as `based_sequential`, in chunks of `chunk_size` tokens (module docstring); values
    and gradients match the reference to rounding, time linear in T."""
    B, T, H, d = q.shape
    V, dtype, cd = v.shape[-1], q.dtype, state_dtype(q.dtype)
    scale = _default_scale(q, scale)
    Q = min(chunk_size, T)
    N = -(-T // Q)
    pad = N * Q - T

    def blocks(t: Tensor) -> Tensor:  # (B, T, H, X) -> (B, H, N, Q, X), zeros in the padding
        return to_chunks(t.to(cd), Q, pad)

    q, k = blocks(q), blocks(k)
    v1 = blocks(torch.cat([v, v.new_ones(B, T, H, 1)], -1))  # [v, 1], padded AFTER the 1 is appended
    S, z = (based_zero_state(B, H, d, V, q) if initial_state is None
            else tuple(s.to(cd) for s in initial_state))
    Sz = torch.cat([S, z[..., None]], -1)  # (B, H, D, V + 1)

    D = taylor_width(d)
    g = max(1, _BLOCK_ELEMENTS // (B * H * Q * max(Q, D)))  # chunks per block
    outs = []
    for group in chunk_groups((q, k, v1), g):
        y, Sz = _chunk_block(*group, Sz, scale, eps)
        outs.append(y)
    y = from_chunks(outs, T)
    return y.to(dtype), (Sz[..., :V], Sz[..., V])


def _chunk_block(q: Tensor, k: Tensor, v1: Tensor, Sz: Tensor, scale: float,
                 eps: float) -> tuple[Tensor, Tensor]:
    """Consecutive whole chunks: q, k (B, H, n, Q, d), v1 = [v, 1] (B, H, n, Q, V + 1), Sz = [S | z]
    (B, H, D, V + 1) the state before them. Returns y (B, H, n, Q, V) and the state after them."""
    Q = q.shape[-2]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=q.device).tril()
    s = scale * (q @ k.transpose(-1, -2))  # (B, H, n, Q, Q)
    A = (1 + s + 0.5 * s * s).masked_fill(~causal, 0)  # φ(q_i)ᵀφ(k_j) for j <= i
    phi_k = taylor_features(k, scale)  # (B, H, n, Q, D)
    dSz = phi_k.transpose(-1, -2) @ v1  # each chunk's writes  (B, H, n, D, V + 1)
    starts = []
    for c in range(q.shape[2]):  # the short scan over chunks
        starts.append(Sz)
        Sz = Sz + dSz[:, :, c]
    o = taylor_features(q, scale) @ torch.stack(starts, 2) + A @ v1  # (B, H, n, Q, V + 1)
    return o[..., :-1] / (o[..., -1:] + eps), Sz
