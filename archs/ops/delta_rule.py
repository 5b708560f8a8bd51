"""The delta rule with an optional decay: one op for DeltaNet, Gated DeltaNet and Kimi Delta Attention.

Per head, with key k_t (L2-normalised by the layers), value v_t, write strength β_t in (0, 1) and decay
α_t = exp(g_t) in (0, 1] (g the log decay, <= 0):

    S_t = (I − β_t k_t k_tᵀ) Diag(α_t) S_{t-1} + β_t k_t v_tᵀ        (state, d_k × d_v)
    o_t = S_tᵀ (scale · q_t)                                          (scale = d_k^-1/2 by default)

The decay is the op's parameter:
    g = None          α = 1                       DeltaNet (Yang et al. 2024, arXiv 2406.06484)
    g (B, T, H)       α a scalar per head, token  Gated DeltaNet (arXiv 2412.06464)
    g (B, T, H, K)    α a vector per channel      KDA (Kimi Linear, arXiv 2510.26692)
The decay is applied first, then the delta update reads the decayed state, as flash-linear-attention's
naive references do (fla/ops/{gated_delta_rule,kda}/naive.py). Gated DeltaNet's paper writes
S_t = α_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ; a scalar α commutes with the matrix, so the two agree.

Chunked form (the WY / UT representation of the three papers' chunkwise algorithms). In a chunk of
Q tokens entering with state S, let Γ_i = Σ_{j<=i} g_j be the cumulative log decay from the chunk's
start, and u_i = β_i (v_i − k_iᵀ Diag(α_i) S_{i-1}) the value token i actually writes. Then
    S_i = Diag(e^{Γ_i}) S + Σ_{j<=i} Diag(e^{Γ_i − Γ_j}) k_j u_jᵀ
and the u_i solve a unit-lower-triangular system (I + A) U = diag(β) (V − (K ⊙ e^Γ) S) with
    A_ij = β_i Σ_c k_ic k_jc e^{Γ_ic − Γ_jc}  for j < i,
so U = Ũ − W S where Ũ = (I + A)⁻¹ diag(β) V and W = (I + A)⁻¹ diag(β) (K ⊙ e^Γ) come from ONE
triangular solve per chunk, in parallel over all chunks. Then, chunk by chunk:
    o_i = (q̃_i ⊙ e^{Γ_i})ᵀ S + Σ_{j<=i} (Σ_c q̃_ic k_jc e^{Γ_ic − Γ_jc}) u_j
    S  <- Diag(e^{Γ_Q}) S + (K ⊙ e^{Γ_Q − Γ})ᵀ U
Every exponent is a difference Γ_i − Γ_j with j <= i (the other pairs are masked to −inf BEFORE exp),
or Γ_i, or Γ_Q − Γ_j: all <= 0, so nothing overflows. Log decays are clamped at `log_decay_floor`
(−20 in float32, −40 in float64) first: below it one token already wipes the state, so no output
changes visibly, and the differences of cumulative sums keep their precision. For a per-channel
decay the pair weights are not plain matmuls; `decayed_scores` (archs/ops/common.py) splits the
exponent at sub-chunk starts, so only (c, c, K) blocks are elementwise, and chunks are processed a few
at a time, so the working set stays bounded and time linear in T. Nothing of size (B, T, d_k, d_v) is
held: only one state per chunk.

Glossary (code -> paper):
    B, T, H         batch, sequence length, heads
    K, V            key and value width per head (d_k, d_v)
    q, k, v         query, key, value (B, T, H, K|V); the op scales q by `scale`     q, k, v
    beta            write strength (B, T, H)                                          β
    g               log decay, None | (B, T, H) | (B, T, H, K), <= 0                  log α
    S               state (B, H, K, V)                                                S
    Q, N            chunk length, number of chunks
    G               cumulative log decay inside a chunk (inclusive)                   Γ
    A               strictly lower (Q, Q) matrix of the triangular system             A
    u, w            solved values and decayed keys (the WY factors)                   Ũ, W
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from archbench.archs.backends import Kernel, probe_leaves
from archbench.archs.ops.common import (
    PER_CHANNEL_SUB_CHUNK,
    SCORE_TEMPORARIES,
    cache_elements,
    chunk_groups,
    decayed_scores,
    from_chunks,
    log_decay_floor,
    mask_bias,
    to_chunks,
)

# elements of the largest per-block temporary of `delta_rule_chunked`; None: one core's L2
# (common.cache_elements); tests set a number
_BLOCK_ELEMENTS: int | None = None
_SUB_CHUNK = PER_CHANNEL_SUB_CHUNK  # c: sub-chunk of the per-channel pair scores (`decayed_scores`)

def _default_scale(q: Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


# -- the definition: one token, and the loop over time --------------------------------------------------
def delta_rule_step(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None, S: Tensor,
                    scale: float | None = None) -> tuple[Tensor, Tensor]:
    """One token: q, k (B, H, K), v (B, H, V), beta (B, H), g None | (B, H) | (B, H, K), S (B, H, K, V).
    Returns o (B, H, V) and the new state (a new tensor; `step` copies it into place)."""
    if g is not None:
        S = (g.exp()[..., None, None] if g.dim() == 2 else g.exp()[..., None]) * S  # Diag(α_t) S_{t-1}
    u = beta[..., None] * (v - torch.einsum("bhk,bhkv->bhv", k, S))  # β_t (v_t − S_{t-1}ᵀ k_t)
    S = S + k[..., None] * u[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q * _default_scale(q, scale), S), S


def delta_rule_sequential(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None = None,
                          initial_state: Tensor | None = None,
                          scale: float | None = None) -> tuple[Tensor, Tensor]:
    """The recurrence token by token, the reference. (B, T, H, ·) layout; returns o (B, T, H, V) and the
    final state (B, H, K, V)."""
    B, T, H, K = k.shape
    S = initial_state if initial_state is not None else k.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        o, S = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], None if g is None else g[:, t], S,
                               _default_scale(q, scale))
        out.append(o)
    return torch.stack(out, 1), S


# -- the chunked parallel form ----------------------------------------------------------------------------
def delta_rule_chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None = None,
                       initial_state: Tensor | None = None, chunk_size: int = 64,
                       scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Same contract as `delta_rule_sequential`, in chunks of `chunk_size` tokens (see the module
    docstring): a triangular solve per chunk in parallel, then a short loop carrying the state. Float32
    or float64 inputs; the result matches the reference to rounding, gradients too."""
    B, T, H, K = k.shape
    V, Q = v.shape[-1], min(chunk_size, T)
    N = -(-T // Q)
    pad = N * Q - T  # zero k and β, and g = 0, in the padding: no write and decay 1, the state passes

    def blocks(t: Tensor) -> Tensor:  # (B, T, H, ...) -> (B, H, N, Q, ...)
        return to_chunks(t, Q, pad)

    q = blocks(q * _default_scale(q, scale))
    k, v, beta = blocks(k), blocks(v), blocks(beta)
    G = None if g is None else blocks(g.clamp(min=log_decay_floor(g.dtype))).cumsum(3)  # Γ, inclusive
    S = initial_state if initial_state is not None else k.new_zeros(B, H, K, V)

    per_chunk = B * H * Q * Q * SCORE_TEMPORARIES  # the (Q, Q) pair weights; a per-channel decay's:
    if G is not None and G.dim() == 5:
        c = math.gcd(Q, _SUB_CHUNK)
        per_chunk = B * H * Q * max(Q, K * (Q // c + c))
    n = max(1, (_BLOCK_ELEMENTS or cache_elements(k.dtype)) // per_chunk)  # chunks per block
    outs = []
    for group in chunk_groups((q, k, v, beta, G), n):
        o, S = _chunk_block(*group, S)
        outs.append(o)
    return from_chunks(outs, T), S  # (B, T, H, V), (B, H, K, V)


def _chunk_block(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, G: Tensor | None,
                 S: Tensor) -> tuple[Tensor, Tensor]:
    """Consecutive whole chunks: q, k (B, H, n, Q, K) (q already scaled), v (B, H, n, Q, V), beta
    (B, H, n, Q), G None | (B, H, n, Q) | (B, H, n, Q, K) cumulative log decay, S (B, H, K, V) the state
    before them. Returns o (B, H, n, Q, V) and the state after them."""
    Q = q.shape[-2]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=q.device).tril()  # j <= i
    # 1. Pair weights k_iᵀ Diag(e^{Γ_i − Γ_j}) k_j and the same with q̃_i, for j <= i (0 above).
    if G is None:  # DeltaNet: no decay
        kk, qk = k @ k.transpose(-1, -2), q @ k.transpose(-1, -2)  # (B, H, n, Q, Q)
        qk = qk.masked_fill_(~causal, 0)  # in place: a fresh product
        k_in, q_in, k_out, decay_end = k, q, k, None
    elif G.dim() == 4:  # a scalar per head and token: one (Q, Q) decay matrix per chunk
        D = (G[..., :, None] - G[..., None, :]).add_(mask_bias(causal, G)[..., 0]).exp_()  # (B, H, n, Q, Q)
        kk, qk = (k @ k.transpose(-1, -2)).mul_(D), (q @ k.transpose(-1, -2)).mul_(D)  # fresh products
        e = G.exp()[..., None]  # e^{Γ_i} (B, H, n, Q, 1)
        k_in, q_in = k * e, q * e
        k_out = k * (G[..., -1:] - G).exp()[..., None]  # K ⊙ e^{Γ_Q − Γ_j}
        decay_end = G[..., -1].exp()[..., None, None]  # (B, H, n, 1, 1)
    else:  # per channel: the exponent split at sub-chunk starts (common.py, `decayed_scores`)
        c = math.gcd(Q, _SUB_CHUNK)
        # k·k and q·k under one decay: both queries in one call, so the key-side decays are built once
        # (k·k's diagonal, e^0 = 1, is dropped below: only j < i enters A)
        kk, qk = decayed_scores(torch.stack([k, q]), k, G, G, c)
        k_in, q_in = k * G.exp(), q * G.exp()
        k_out = k * (G[..., -1:, :] - G).exp()
        decay_end = G[..., -1, :].exp()[..., None]  # (B, H, n, K, 1)

    # 2. The WY factors of every chunk at once: (I + A) [Ũ W] = diag(β) [V  K ⊙ e^Γ], A strictly lower,
    #    through the inverse T = (I + A)⁻¹ (one solve against the identity, then two matmuls: cheaper than
    #    a solve against the (Q, V + K) right-hand side, which LAPACK would also copy to column order).
    A = (beta[..., None] * kk).tril_(-1)
    eye = torch.eye(Q, dtype=A.dtype, device=A.device)
    T_inv = torch.linalg.solve_triangular(A + eye, eye.expand_as(A), upper=False, unitriangular=True)
    T_beta = T_inv * beta[..., None, :]  # T diag(β): β scales the right-hand side's rows
    u, w = T_beta @ v, T_beta @ k_in

    # 3. Chunk by chunk: the values actually written given the state, then the state at the chunk's end.
    #    The (B, H) batch as one axis, so each step is one fused multiply-add call (baddbmm) per product:
    #    this loop runs once per chunk, and its op count is what it costs at these sizes.
    B, H, n, _, K = k.shape
    V = v.shape[-1]
    u, w = u.reshape(B * H, n, Q, V), w.reshape(B * H, n, Q, K)
    k_out = k_out.transpose(-1, -2).reshape(B * H, n, K, Q)
    decay_end = None if decay_end is None else decay_end.reshape(B * H, n, -1, 1)  # (BH, n, 1 or K, 1)
    S = S.reshape(B * H, K, V)
    U, starts = [], []
    for c in range(n):
        starts.append(S)
        U_c = torch.baddbmm(u[:, c], w[:, c], S, alpha=-1)  # u_c - w_c S, (BH, Q, V)
        U.append(U_c)
        S = torch.baddbmm(S if decay_end is None else decay_end[:, c] * S, k_out[:, c], U_c)
    U = torch.stack(U, 1).view(B, H, n, Q, V)
    starts = torch.stack(starts, 1).view(B, H, n, K, V)

    # 4. Outputs: what the entering state gives, plus the chunk's own writes (in place on a fresh product).
    return (q_in @ starts).add_(qk @ U), S.view(B, H, K, V)


# -- the optional fla kernels -----------------------------------------------------------------------------
def _probe(decay: str) -> Callable[[Callable, str], None]:
    """A tiny forward+backward through fla's kernel for a decay kind: it raises where fla refuses its
    backward (Hopper with Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to
    switch paths."""
    def probe(_kernel: Callable, device: str) -> None:  # delta_rule_fla calls the kernel itself
        q, k, v = probe_leaves(device)
        (beta,) = probe_leaves(device, 1, (1, 16, 1), sample=torch.rand)
        g = None if decay == "none" else -torch.rand(1, 16, 1, *((16,) if decay == "vector" else ()),
                                                      device=device, requires_grad=True)
        delta_rule_fla(q, F.normalize(k, dim=-1), v, beta, g)[0].sum().backward()
    return probe


# fla's kernels by decay kind: the decay-free rule runs as the gated one with g = 0, because
# `chunk_delta_rule` refuses float32 inputs (an assert since 2024), which the float32 fast-vs-reference
# check needs.
_GATED = ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", "flash-linear-attention")
FLA = {"none": Kernel(*_GATED, probe=_probe("none")),
       "scalar": Kernel(*_GATED, probe=_probe("scalar")),
       "vector": Kernel("fla.ops.kda", "chunk_kda", "flash-linear-attention", probe=_probe("vector"))}


def delta_rule_fla(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None,
                   initial_state: Tensor | None = None, output_final_state: bool = False,
                   scale: float | None = None) -> tuple[Tensor, Tensor | None]:
    """The same op through fla's chunked Triton kernels (CUDA). fla takes (B, T, H, ·) tensors, g as a
    LOG decay in float32, β after the sigmoid, the scale explicitly, and a float32 (B, H, K, V) state;
    q and k arrive already L2-normalised, so the kernels' own normalisation stays off."""
    if g is None:
        g = q.new_zeros(q.shape[:3])
    kernel = FLA["vector" if g.dim() == 4 else "scalar"]
    h0 = None if initial_state is None else initial_state.float().contiguous()
    o, S = kernel(q=q, k=k, v=v, g=g.float(), beta=beta.to(q.dtype), scale=_default_scale(q, scale),
                  initial_state=h0, output_final_state=output_final_state)
    return o, S
