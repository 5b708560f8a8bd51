"""The RWKV-7 recurrence: a diagonal-plus-low-rank (DPLR) state transition, one token at a time and chunked.

Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution" (arXiv 2503.14456), the
"wkv" of §4 (eq. 15-17 in the paper's numbering of the time-mixing block). Per head, with the state
S of d_v × d_k (the paper's layout):

    S_t = S_{t-1} (Diag(w_t) + a_t b_tᵀ) + v_t k_tᵀ          w_t = exp(lw_t) in (0, 1]
    o_t = S_t r_t

The layer passes a = -κ̂ (the L2-normalised removal key) and b = κ̂ ⊙ η (η the in-context learning
rate), which makes the transition Diag(w) - κ̂ (κ̂ ⊙ η)ᵀ a delta-rule step; the op itself takes any a, b.
This is flash-linear-attention's `chunk_rwkv7(r, w, k, v, a, b)` with w the LOG decay and scale 1, whose
state is the transpose, (B, H, d_k, d_v).

`rwkv7_sequential` is the definition (a loop over time, the reference). `rwkv7_chunked` is the WY form
(the chunkwise DPLR algorithm of Yang et al. 2024, arXiv 2406.06484, generalised to a per-channel
decay), linear in T and with no (B, T, d_k, d_v) tensor. Written with X = Sᵀ (d_k × d_v) and, inside a
chunk of C tokens starting from the state X_0, Γ_t = w_1 ⊙ … ⊙ w_t (a product in (0, 1]):

    u_t := X_{t-1}ᵀ a_t  (the low-rank read), so  X_t = Diag(w_t) X_{t-1} + b_t u_tᵀ + k_t v_tᵀ, and
    u_t = X_0ᵀ (Γ_{t-1} ⊙ a_t) + Σ_{s<t} [a_t·(Γ_{t-1}/Γ_s ⊙ k_s)] v_s + [a_t·(Γ_{t-1}/Γ_s ⊙ b_s)] u_s

i.e. (I - A_ab) U = Ã X_0 + A_ak V with A_ab, A_ak strictly lower triangular (C × C): one unit-triangular
solve per chunk gives U = W X_0 + Ũ (W = (I - A_ab)⁻¹ Ã, Ũ = (I - A_ab)⁻¹ A_ak V). Then

    o_t     = X_0ᵀ (Γ_t ⊙ r_t) + Σ_{s<=t} [r_t·(Γ_t/Γ_s ⊙ k_s)] v_s + [r_t·(Γ_t/Γ_s ⊙ b_s)] u_s
    X_C     = M X_0 + Z,   M = Diag(Γ_C) + Bdᵀ W,   Z = Kdᵀ V + Bdᵀ Ũ   (Kd, Bd: k, b decayed to C)

so between chunks only X_{n+1} = M_n X_n + Z_n runs sequentially. The decay ratios Γ_t/Γ_s (s <= t) in
the four pair matrices are built one of two ways:

  exact     each ratio as exp of a DIFFERENCE of within-chunk cumulative log decays, <= 0, in a
            (C, C, d_k) tensor per chunk (masked to -inf above the diagonal before the exp): no decay
            however strong can overflow, at O(C d_k) elementwise work per token (`_pairs_exact`);
  factored  Γ_t/Γ_s = e^{G_t} · e^{-G_s}, so each pair matrix is one matmul (`_pairs_factored`). e^{-G}
            grows with the chunk's whole decay, so this is used only where the caller guarantees a
            floor on the log decay (`lower_bound`, as fla's `safe_gate`) that keeps a chunk's decay
            within `_FACTORED_NATS`. RWKV-7's layer floors it at -e^{-1/2}, so chunks of 64 qualify.

Chunks are processed a group at a time so the temporaries stay cache-sized.

Glossary (code -> paper):
    B, T, H     batch, sequence length, heads;  K = d_k, V = d_v (head widths)
    r, k, v     receptance (query), key, value: (B, T, H, K) / (B, T, H, V)
    lw          log decay log w_t <= 0 (B, T, H, K)
    a, b        the low-rank pair of the transition, (B, T, H, K)
    S           state (B, H, V, K), the paper's S_t ∈ R^{d_v × d_k};  X = Sᵀ inside the chunked form
    C, N        chunk length, number of chunks;  G / Gx cumulative log decay incl. / excl. token t
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archbench.archs.backends import Kernel, probe_leaves
from archbench.archs.ops.common import cache_elements, chunk_groups, from_chunks, mask_bias, to_chunks

# elements of the largest temporary built for a group of chunks at once; None: one core's L2
# (common.cache_elements); tests set a number
_GROUP_ELEMENTS: int | None = None
# A chunk's whole cumulative log decay up to which its decays may be factored (`_pairs_factored`):
# e^{40} is ~2e17, far inside float32's 3e38, and e^{-40} far above its smallest normal number.
_FACTORED_NATS = 40.0


def rwkv7_step(r, lw, k, v, a, b, S):
    """One token: r, lw, k, a, b (B, H, K), v (B, H, V), S (B, H, V, K) -> o (B, H, V), new S."""
    S = (S * lw.exp().unsqueeze(-2) + (S @ a.unsqueeze(-1)) * b.unsqueeze(-2)  # S (Diag(w) + a bᵀ)
         + v.unsqueeze(-1) * k.unsqueeze(-2))
    return (S @ r.unsqueeze(-1)).squeeze(-1), S


def rwkv7_sequential(r, lw, k, v, a, b, initial_state=None):
    """Reference: the recurrence token by token. (B, T, H, ·) inputs -> o (B, T, H, V), S (B, H, V, K)."""
    B, T, H, K = r.shape
    S = r.new_zeros(B, H, v.shape[-1], K) if initial_state is None else initial_state
    out = []
    for t in range(T):
        o, S = rwkv7_step(r[:, t], lw[:, t], k[:, t], v[:, t], a[:, t], b[:, t], S)
        out.append(o)
    return torch.stack(out, 1), S


def rwkv7_chunked(r, lw, k, v, a, b, chunk_size: int = 16, initial_state=None,
                  lower_bound: float | None = None):
    """The WY chunked form (module docstring): same arguments and results as `rwkv7_sequential`.

    `lower_bound`: a floor the caller guarantees on every log decay (RWKV-7's layer bounds it at
    -e^{-1/2}, as fla's `safe_gate` does). Where the chunk's whole decay then stays within
    `_FACTORED_NATS`, the pair matrices are plain matmuls of factored decays (`_pairs_factored`);
    otherwise every decay ratio is built elementwise (`_pairs_exact`), safe for any decay."""
    B, T, H, K = r.shape
    V, C = v.shape[-1], chunk_size
    factored = lower_bound is not None and C * -lower_bound <= _FACTORED_NATS
    N = -(-T // C)
    pad = N * C - T  # zero k, v, a, b and zero log decay: the padded steps leave the state unchanged

    def blocks(t):  # (B, T, H, X) -> (B, H, N, C, X)
        return to_chunks(t, C, pad)

    r, lw, k, v, a, b = (blocks(t) for t in (r, lw, k, v, a, b))
    X = (r.new_zeros(B, H, V, K) if initial_state is None else initial_state).transpose(-1, -2)  # (B,H,K,V)
    largest = B * H * C * (4 * C if factored else C * K)  # per chunk: the pair scores, or the decay tensor
    g = max(1, (_GROUP_ELEMENTS or cache_elements(r.dtype)) // largest)
    pairs = _pairs_factored if factored else _pairs_exact
    out = []
    for group in chunk_groups((r, lw, k, v, a, b), g):
        o, X = _chunk_group(*group, X, pairs)
        out.append(o)
    return from_chunks(out, T), X.transpose(-1, -2)


def _pairs_exact(r, k, a, b, lw, G, Gx):
    """The four (C, C) pair matrices of each chunk, [t, s]: A_ab = a_t·(Γ_{t-1}/Γ_s ⊙ b_s) and A_ak (s < t),
    A_rb = r_t·(Γ_t/Γ_s ⊙ b_s) and A_rk (s <= t), every decay ratio built elementwise from a difference of
    cumulative log decays (any decay, however strong)."""
    C = r.shape[-2]
    later = torch.ones(C, C, dtype=torch.bool, device=r.device).triu(1)  # [s, t]: t > s
    # E[s, t] = Γ_{t-1} / Γ_s for t > s, else 0: exp of a difference <= 0, the rest sent to exp(-inf).
    # (adding a -inf bias is one cheap broadcast pass; masked_fill_ with a broadcast mask is slower)
    E = (Gx.unsqueeze(-3) - G.unsqueeze(-2)).add_(mask_bias(later, G)).exp_()  # (.., s, t, K)
    rw = r * lw.exp()  # Γ_t / Γ_s = w_t Γ_{t-1} / Γ_s: the r-side pairs reuse E
    # All four pair matrices in one batched matmul over s: [a_t; rw_t] ⊙ E[s, t] against [b_s, k_s].
    left = (E.unsqueeze(-3) * torch.stack([a, rw], -3).unsqueeze(-4)).flatten(-3, -2)  # (.., s, 2C, K)
    pairs = (left @ torch.stack([b, k], -1)).unflatten(-2, (2, C))  # (.., s, 2, t, 2)
    A_ab, A_ak, A_rb, A_rk = pairs.permute(-3, -1, *range(pairs.dim() - 4), -2, -4).flatten(0, 1)
    eye = torch.eye(C, dtype=r.dtype, device=r.device)
    return A_ab, A_ak, A_rb + eye * (r * b).sum(-1, keepdim=True), A_rk + eye * (r * k).sum(-1, keepdim=True)


def _pairs_factored(r, k, a, b, lw, G, Gx):
    """`_pairs_exact`'s matrices as one matmul per chunk: Γ_t/Γ_s = e^{G_t} e^{-G_s}, so
    [a ⊙ e^{Gx}; r ⊙ e^{G}] against [b ⊙ e^{-G}; k ⊙ e^{-G}], then masked. Only where the chunk's
    cumulative log decay is bounded (`_FACTORED_NATS`): e^{-G} then stays far inside float32's range, and
    nothing underflows to 0."""
    C = r.shape[-2]
    inv = (-G).exp()
    left = torch.cat([a * Gx.exp(), r * G.exp()], -2)  # (.., 2C, K)
    right = torch.cat([b * inv, k * inv], -2)  # (.., 2C, K)
    pairs = (left @ right.transpose(-1, -2)).unflatten(-2, (2, C)).unflatten(-1, (2, C))  # (.., 2, C, 2, C)
    keep = torch.ones(C, C, dtype=torch.bool, device=r.device)
    below, on_or_below = keep.tril(-1), keep.tril()
    return (pairs[..., 0, :, 0, :] * below, pairs[..., 0, :, 1, :] * below,
            pairs[..., 1, :, 0, :] * on_or_below, pairs[..., 1, :, 1, :] * on_or_below)


def _chunk_group(r, lw, k, v, a, b, X, pairs):
    """A few consecutive chunks (B, H, n, C, ·) from the state X (B, H, K, V) entering the first one, the
    pair matrices by `pairs`. Returns their outputs (B, H, n, C, V) and the state after the last."""
    C = r.shape[-2]
    G = lw.cumsum(-2)  # (B, H, n, C, K) inclusive
    Gx = F.pad(G, (0, 0, 1, -1))  # exclusive (G_{t-1}): a shift, not G - lw, which would cancel badly
    A_ab, A_ak, A_rb, A_rk = pairs(r, k, a, b, lw, G, Gx)
    eye = torch.eye(C, dtype=r.dtype, device=r.device)
    # One unit-lower-triangular solve for both right-hand sides: [W, Ũ] = (I - A_ab)⁻¹ [Ã, A_ak V].
    K = r.shape[-1]
    W, U_ = torch.linalg.solve_triangular(eye - A_ab, torch.cat([a * Gx.exp(), A_ak @ v], -1), upper=False,
                                          unitriangular=True).split([K, v.shape[-1]], -1)
    to_end = (G[..., -1:, :] - G).exp()  # (B, H, n, C, K) Γ_C / Γ_s
    Kd, Bd = k * to_end, b * to_end
    M = torch.diag_embed(G[..., -1, :].exp()) + Bd.transpose(-1, -2) @ W  # (B, H, n, K, K)
    Z = Kd.transpose(-1, -2) @ v + Bd.transpose(-1, -2) @ U_  # (B, H, n, K, V)
    starts = []
    for i in range(r.shape[2]):  # the only sequential part: one (K, K) @ (K, V) per chunk
        starts.append(X)
        X = torch.baddbmm(Z[:, :, i].flatten(0, 1), M[:, :, i].flatten(0, 1), X.flatten(0, 1)).view_as(X)
    X0 = torch.stack(starts, 2)  # (B, H, n, K, V) state entering each chunk
    U = W @ X0 + U_  # (B, H, n, C, V) the low-rank reads u_t
    o = (r * G.exp()) @ X0 + A_rk @ v + A_rb @ U
    return o, X


# -- fla's kernel (CUDA) --------------------------------------------------------------------------------
def _probe_rwkv7(chunk_rwkv7, device: str) -> None:
    """A tiny forward+backward of fla's kernel: it raises where fla refuses its backward (Hopper with
    Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to switch paths."""
    r, k, v = probe_leaves(device)
    lw = (-0.5 * torch.rand(1, 16, 1, 16, device=device)).requires_grad_(True)
    kk = F.normalize(torch.randn(1, 16, 1, 16, device=device), dim=-1).requires_grad_(True)
    chunk_rwkv7(r=r, w=lw, k=k, v=v, a=-kk, b=kk * 0.5, scale=1.0)[0].sum().backward()


# `chunk_rwkv7(r, w, k, v, a, b)`: w the LOG decay, state (B, H, K, V), the transpose of this op's.
FLA = Kernel("fla.ops.rwkv7", "chunk_rwkv7", "flash-linear-attention", probe=_probe_rwkv7)
