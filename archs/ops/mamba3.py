"""The Mamba-3 SISO recurrence: the exponential-trapezoidal update, token by token and chunked (SSD).

Lahoti, Li, Chen, Wang, Bick, Kolter, Dao, Gu 2026, "Mamba-3: Improved Sequence Modeling using State
Space Principles" (arXiv 2603.15569), §3.1 (exponential-trapezoidal discretisation) with the rotary form
of the complex state (§3.2) already applied to q and k by the layer. Per head, with the state S of
P × N, the scalar decay α_t = exp(Δ_t A_t), the trapezoid weight λ_t ∈ (0, 1) and step Δ_t:

    S_t = α_t S_{t-1} + β_t v_{t-1} k_{t-1}ᵀ + γ_t v_t k_tᵀ,    β_t = (1 - λ_t) Δ_t α_t,   γ_t = λ_t Δ_t
    y_t = S_t q_t

(q, k are the paper's rotated C̃, B̃; v is x; (k_{-1}, v_{-1}) is the previous token, carried in the state,
zero at the start.) `mamba3_sequential` is that loop, the reference; `mamba3_step` one token of it.

The chunked form is an SSD (Mamba-2's state-space dual, arXiv 2405.21060 §6) with a modified input.
Fold the half-step that token t still owes to the next update into the state,
S'_t = S_t + c_{t+1} v_t k_tᵀ with c_{t+1} = (1 - λ_{t+1}) Δ_{t+1} (0 after the last token): since
β_{t+1} = c_{t+1} α_{t+1},

    S'_t = α_t S'_{t-1} + σ_t v_t k_tᵀ,    σ_t = γ_t + c_{t+1}
    y_t  = S'_t q_t - c_{t+1} (q_t · k_t) v_t,      S'_{-1} = S_{-1} + c_0 v_{-1} k_{-1}ᵀ

a scalar-decay linear recurrence with input weight σ_t (one token of lookahead, available in parallel
mode) and a diagonal correction; its last state S'_{T-1} is S_{T-1} since c_T = 0. `mamba3_chunked` runs
it in chunks of Q tokens: inside a chunk the masked (Q, Q) matrix exp(L_t - L_s) (q_t · k_s) (L the
within-chunk cumulative log decay, differences <= 0 below the diagonal, -inf above), between chunks the
(P, N) state; linear in T, and no (B, T, P, N) tensor.

Glossary (code -> paper):
    B, T, H     batch, sequence length, heads;  P head_dim (v width), N d_state (q/k width)
    q, k, v     rotated C̃_t, B̃_t (B, T, H, N) and x_t (B, T, H, P)
    la          log decay Δ_t A_t <= 0 (B, T, H);  dt  Δ_t;  lam  λ_t (trapezoid weight)
    S           state (B, H, P, N);  k0, v0  previous token's k, v (B, H, N), (B, H, P)
    Q, L        chunk length, cumulative log decay within a chunk
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archbench.archs.backends import Kernel
from archbench.archs.ops.common import (
    SCORE_TEMPORARIES,
    cache_elements,
    chunk_groups,
    from_chunks,
    mask_bias,
    to_chunks,
)

# size of the (B, H, chunks, Q, Q) decay tensor built at once; None: one core's L2 (common.cache_elements);
# tests set a number
_BLOCK_ELEMENTS: int | None = None


def mamba3_step(q, k, v, la, dt, lam, S, k0, v0):
    """One token: q, k, k0 (B, H, N), v, v0 (B, H, P), la, dt, lam (B, H), S (B, H, P, N) -> y, new S."""
    alpha = la.exp()[..., None, None]
    beta = ((1 - lam) * dt)[..., None, None] * alpha
    gamma = (lam * dt)[..., None, None]
    S = alpha * S + beta * (v0[..., :, None] * k0[..., None, :]) + gamma * (v[..., :, None] * k[..., None, :])
    return (S @ q[..., None]).squeeze(-1), S


def mamba3_sequential(q, k, v, la, dt, lam, initial_state=None, k0=None, v0=None):
    """Reference: the recurrence token by token. Returns y (B, T, H, P) and the final S (B, H, P, N).
    (The final k, v to carry are the inputs' last token.)"""
    B, T, H, N = q.shape
    P = v.shape[-1]
    S = q.new_zeros(B, H, P, N) if initial_state is None else initial_state
    k_prev = q.new_zeros(B, H, N) if k0 is None else k0
    v_prev = q.new_zeros(B, H, P) if v0 is None else v0
    ys = []
    for t in range(T):
        y, S = mamba3_step(q[:, t], k[:, t], v[:, t], la[:, t], dt[:, t], lam[:, t], S, k_prev, v_prev)
        k_prev, v_prev = k[:, t], v[:, t]
        ys.append(y)
    return torch.stack(ys, 1), S


def mamba3_chunked(q, k, v, la, dt, lam, chunk_size: int = 64, initial_state=None, k0=None, v0=None):
    """The SSD form (module docstring): same arguments and results as `mamba3_sequential`."""
    B, T, H, N = q.shape
    P = v.shape[-1]
    c = (1 - lam) * dt  # (B, T, H): c_t, the weight of token t-1 in update t
    c_next = F.pad(c[:, 1:], (0, 0, 0, 1))  # c_{t+1}, 0 after the last token
    sigma = lam * dt + c_next  # σ_t
    S = q.new_zeros(B, H, P, N) if initial_state is None else initial_state
    if k0 is not None and v0 is not None:
        S = S + c[:, 0, :, None, None] * (v0[..., :, None] * k0[..., None, :])  # S'_{-1}
    Q = min(chunk_size, T)
    n = -(-T // Q)
    pad = n * Q - T  # zero steps: log decay 0 and no input, so the state passes them unchanged

    def blocks(t):  # (B, T, H, ...) -> (B, H, n, Q, ...)
        return to_chunks(t, Q, pad)

    qc, kc, vc = blocks(q), blocks(k), blocks(v)  # (B, H, n, Q, N or P)
    L = blocks(la).cumsum(-1)  # (B, H, n, Q), non-increasing
    # σ and c_{t+1} go into the chunk groups with v: there the input weight and the diagonal correction
    # are applied to cache-sized pieces, not as passes over whole (B, T, H, P) tensors, each a trip to
    # memory at 4k-16k tokens (results/op_speed.md and peer_speed.md time the op).
    weights = blocks(sigma), blocks(c_next)  # (B, H, n, Q) each
    g = max(1, (_BLOCK_ELEMENTS or cache_elements(q.dtype)) // (B * H * Q * Q * SCORE_TEMPORARIES))
    ys = []
    for group in chunk_groups((qc, kc, vc, L, *weights), g):
        y, S = _ssd_chunks(*group, S)
        ys.append(y)
    return from_chunks(ys, T), S


def _ssd_chunks(q, k, v, L, sigma, c_next, S):
    """SSD over consecutive chunks, with Mamba-3's input weight and diagonal correction: q, k (B, H, c, Q,
    N), v (B, H, c, Q, P), L (B, H, c, Q) the cumulative log decay within each chunk, sigma and c_next
    (B, H, c, Q) σ_t and c_{t+1}, S (B, H, P, N) the state before them.
    Returns y (B, H, c, Q, P) and the state after them."""
    Q = L.shape[-1]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=L.device).tril()
    # Within a chunk: y_t = Σ_{s<=t} exp(L_t - L_s) (q_t·k_s) σ_s v_s - c_{t+1} (q_t·k_t) v_t; the differences
    # are <= 0 where s <= t and the mask sends the rest to exp(-inf) = 0.
    decay = (L[..., :, None] - L[..., None, :]).add_(mask_bias(causal, L)[..., 0]).exp_()  # (B, H, c, Q, Q)
    vs = v * sigma[..., None]  # σ_s v_s
    scores = q @ k.transpose(-1, -2)
    qk = scores.diagonal(dim1=-2, dim2=-1).clone()  # q_t·k_t, kept before the scores are decayed in place
    # in place on the fresh products: the decays on the scores, the correction on their product with σ v
    y = (scores.mul_(decay) @ vs).addcmul_(v, (c_next * qk)[..., None], value=-1)
    to_end = (L[..., -1:] - L).exp()  # (B, H, c, Q)
    chunk_states = (vs * to_end[..., None]).transpose(-1, -2) @ k  # (B, H, c, P, N)
    chunk_decay = L[..., -1].exp()  # (B, H, c)
    starts = []
    for i in range(L.shape[2]):  # the only sequential part: a (P, N) state per chunk
        starts.append(S)
        S = chunk_decay[..., i, None, None] * S + chunk_states[:, :, i]
    starts = torch.stack(starts, 2)  # (B, H, c, P, N)
    return y.addcmul_(L.exp()[..., None], q @ starts.transpose(-1, -2)), S  # what the carried-in state adds


# mamba-ssm's fused SISO kernel (CUDA): it takes the normalised B/C, their biases, the raw angles and
# trap, and applies rotation, trapezoid, D and the gate itself (archs/mixers/mamba3.py hands them over).
MAMBA_SSM = Kernel("mamba_ssm.ops.triton.mamba3.mamba3_siso_combined", "mamba3_siso_combined", "mamba-ssm")
