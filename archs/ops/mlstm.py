"""The mLSTM recurrence of xLSTM: a matrix memory with an exponential input gate, kept finite by a stabiliser.

xLSTM (Beck et al. 2024, arXiv 2405.04517, §2.3 and App. A.3 "stabilized mLSTM"); xLSTM 7B (Beck et al.
2025, arXiv 2503.13427) runs the same cell with a sigmoid forget gate. Checked against the published
PyTorch code: NX-AI/mlstm_kernels, mlstm_kernels/torch/recurrent/native_step.py (the step) and
torch/chunkwise/native/fw.py (the chunkwise form), which transformers' models/xlstm/modeling_xlstm.py
carries too.

Per head, with input gate i_t = exp(ĩ_t) and forget gate f_t = exp(log f_t) (log f = logsigmoid(f̃) in
xLSTM 7B), the paper's recurrence is
    C_t = f_t C_{t-1} + i_t k_t v_tᵀ        (K × V, stored key-major like the other ops' S)
    n_t = f_t n_{t-1} + i_t k_t             (K)
    h_t = C_tᵀ q̃_t / max(|n_tᵀ q̃_t|, 1)     q̃ = scale · q, scale = K^-1/2 by default
exp(ĩ) overflows, so the state is held divided by e^{m_t}, with the stabiliser
    m_t = max(log f_t + m_{t-1}, ĩ_t),   C̃_t = e^{-m_t} C_t,   ñ_t = e^{-m_t} n_t,
    C̃_t = e^{log f_t + m_{t-1} − m_t} C̃_{t-1} + e^{ĩ_t − m_t} k_t v_tᵀ   (both exponents <= 0)
    h_t = C̃_tᵀ q̃_t / (max(|ñ_tᵀ q̃_t|, e^{-m_t}) + ε)
which is the paper's h_t exactly when ε = 0 (numerator and denominator both carry e^{-m_t}). The state
is the triple (C̃, ñ, m), zeros to start, as in mlstm_kernels. ε (1e-6 there, the default here) keeps
the division finite once e^{-m} underflows; in unstabilised terms it adds ε e^{m_t} to the denominator,
so the output depends on m_t a little, and the chunked form below reproduces m_t token for token, not
only at chunk ends, so that the two forms agree to rounding, ε included.

Chunked form (the chunkwise-parallel mLSTM of Beck et al. 2025, "Tiled Flash Linear Attention", arXiv
2503.14376, as mlstm_kernels' native chunkwise code computes it). In a chunk of Q tokens entering with
(C̃, ñ, m_in), let b_i = Σ_{j<=i} log f_j (from the chunk's start, inclusive). Unrolling the
recurrence, token i sees the entering state with log weight b_i + m_in and token j <= i's write with log
weight b_i − b_j + ĩ_j; the running max unrolls to
    m_i = max(b_i + m_in, max_{j<=i} (b_i − b_j + ĩ_j)),
and with D_ij = e^{b_i − b_j + ĩ_j − m_i} (0 for j > i)
    numerator_i   = e^{b_i + m_in − m_i} q̃_iᵀ C̃ + Σ_j D_ij (q̃_i · k_j) v_j
    denominator_i = e^{b_i + m_in − m_i} q̃_iᵀ ñ + Σ_j D_ij (q̃_i · k_j)
n follows C's recurrence with v replaced by 1, so the code carries [C̃ | ñ] as one K × (V + 1) matrix and
v as [v, 1]. Between chunks, with a_j = b_Q − b_j + ĩ_j and a* = max_j a_j:
    m_out = max(b_Q + m_in, a*),
    [C̃|ñ]_out = e^{b_Q + m_in − m_out} [C̃|ñ] + e^{a* − m_out} Σ_j e^{a_j − a*} k_j [v_j, 1]ᵀ,
the sum computed for every chunk at once, then a short loop over chunks. Every exponent is a log weight
minus a max over it, so <= 0, however large ĩ gets. Padded tokens get ĩ = −inf (no write, no say in m)
and log f = 0. Work per token and head O(Q (K + V) + K V); one state per chunk is held, nothing of size
(B, T, K, V). No fused kernel: fla has no mLSTM op, mlstm_kernels' Triton kernels are not wired in.

Glossary (code -> paper):
    B, T, H, K, V   batch, tokens, heads, query/key width (d_qk), value width (d_v)
    q, k, v         query, key, value per head (B, T, H, K|V); the op scales q by `scale`   q, k, v
    log_i           input gate pre-activation, the log of the input gate (B, T, H)        ĩ = log i
    log_f           log forget gate (B, T, H), <= 0 for a sigmoid gate                    log f
    C, n, m         stabilised memory (B, H, K, V), normaliser (B, H, K), stabiliser (B, H)  C̃, ñ, m
    Q, N            chunk length, number of chunks
    b               log forget gate cumulated within a chunk (inclusive)
    Cn              [C̃ | ñ], the memory with the normaliser as an extra value column (B, H, K, V + 1)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from archbench.archs.ops.common import chunk_groups, from_chunks, state_dtype, to_chunks

MLSTMState = tuple[Tensor, Tensor, Tensor]  # (C̃ (B, H, K, V), ñ (B, H, K), m (B, H))

_BLOCK_ELEMENTS = 1 << 20  # elements of the largest per-block temporary of `mlstm_chunked`
_EPS = 1e-6  # mlstm_kernels' and xLSTM 7B's ε


def _default_scale(q: Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


def mlstm_zero_state(batch: int, heads: int, K: int, V: int, like: Tensor) -> MLSTMState:
    """The state before any token: C̃ = 0, ñ = 0, m = 0 (mlstm_kernels' initial state)."""
    z = like.new_zeros
    return z(batch, heads, K, V), z(batch, heads, K), z(batch, heads)


# -- the definition: one token, and the loop over time --------------------------------------------------
def mlstm_step(q: Tensor, k: Tensor, v: Tensor, log_i: Tensor, log_f: Tensor, state: MLSTMState,
               scale: float | None = None, eps: float = _EPS) -> tuple[Tensor, MLSTMState]:
    """One token: q, k (B, H, K), v (B, H, V), log_i, log_f (B, H), state (C̃, ñ, m). Returns h (B, H, V)
    and the new state (new tensors)."""
    C, n, m = state
    m_new = torch.maximum(log_f + m, log_i)  # m_t
    f = (log_f + m - m_new).exp()  # e^{log f_t + m_{t-1} − m_t} <= 1
    i = (log_i - m_new).exp()  # e^{ĩ_t − m_t} <= 1
    C = f[..., None, None] * C + i[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f[..., None] * n + i[..., None] * k
    q = q * _default_scale(q, scale)
    num = torch.einsum("bhk,bhkv->bhv", q, C)
    den = torch.maximum((q * n).sum(-1).abs(), (-m_new).exp()) + eps
    return num / den[..., None], (C, n, m_new)


def mlstm_sequential(q: Tensor, k: Tensor, v: Tensor, log_i: Tensor, log_f: Tensor,
                     initial_state: MLSTMState | None = None, scale: float | None = None,
                     eps: float = _EPS) -> tuple[Tensor, MLSTMState]:
    """The recurrence token by token, the reference. (B, T, H, ·) inputs, gates (B, T, H); returns h
    (B, T, H, V) in the inputs' dtype and the final state (C̃, ñ, m) in the compute dtype."""
    B, T, H, K = q.shape
    dtype, cd = q.dtype, state_dtype(q.dtype)
    q, k, v, log_i, log_f = (t.to(cd) for t in (q, k, v, log_i, log_f))
    state = (mlstm_zero_state(B, H, K, v.shape[-1], q) if initial_state is None
             else tuple(s.to(cd) for s in initial_state))
    out = []
    for t in range(T):
        h, state = mlstm_step(q[:, t], k[:, t], v[:, t], log_i[:, t], log_f[:, t], state,
                              _default_scale(q, scale), eps)
        out.append(h)
    return torch.stack(out, 1).to(dtype), state


# -- the chunked parallel form ----------------------------------------------------------------------------
def mlstm_chunked(q: Tensor, k: Tensor, v: Tensor, log_i: Tensor, log_f: Tensor,
                  initial_state: MLSTMState | None = None, chunk_size: int = 64,
                  scale: float | None = None, eps: float = _EPS) -> tuple[Tensor, MLSTMState]:
    """Same contract as `mlstm_sequential`, in chunks of `chunk_size` tokens (module docstring): the same
    stabiliser per token, so values and gradients match the reference to rounding; time linear in T."""
    B, T, H, K = q.shape
    V, dtype, cd = v.shape[-1], q.dtype, state_dtype(q.dtype)
    Q = min(chunk_size, T)
    N = -(-T // Q)
    pad = N * Q - T

    def blocks(t: Tensor, value: float = 0.0) -> Tensor:  # (B, T, H, ...) -> (B, H, N, Q, ...)
        return to_chunks(t.to(cd), Q, pad, value)

    q = blocks(q * _default_scale(q, scale))
    k = blocks(k)
    v1 = blocks(torch.cat([v, v.new_ones(B, T, H, 1)], -1))  # [v, 1]: the normaliser as a value column
    li = blocks(log_i[..., None], -math.inf)[..., 0]  # padded tokens write nothing and never set m
    b = blocks(log_f[..., None])[..., 0].cumsum(-1)  # (B, H, N, Q)
    C, n, m = (mlstm_zero_state(B, H, K, V, q) if initial_state is None
               else tuple(s.to(cd) for s in initial_state))
    Cn = torch.cat([C, n[..., None]], -1)  # (B, H, K, V + 1)

    g = max(1, _BLOCK_ELEMENTS // (B * H * Q * max(Q, K, V + 1)))  # chunks per block
    outs = []
    for group in chunk_groups((q, k, v1, li, b), g):
        h, Cn, m = _chunk_block(*group, Cn, m, eps)
        outs.append(h)
    h = from_chunks(outs, T)
    return h.to(dtype), (Cn[..., :V], Cn[..., V], m)


def _chunk_block(q: Tensor, k: Tensor, v1: Tensor, li: Tensor, b: Tensor, Cn: Tensor, m: Tensor,
                 eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Consecutive whole chunks: q (scaled), k (B, H, n, Q, K), v1 = [v, 1] (B, H, n, Q, V + 1), li the
    input gate pre-activations and b the cumulative log forget gates (B, H, n, Q), and the state before
    them: Cn = [C̃ | ñ] (B, H, K, V + 1), m (B, H). Returns h (B, H, n, Q, V) and the state after them."""
    Q = q.shape[-2]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=q.device).tril()  # j <= i

    # 1. Every chunk's own writes at its end, stabilised by their own max a*.
    a = b[..., -1:] - b + li  # a_j = b_Q − b_j + ĩ_j  (B, H, n, Q)
    a_max = a.amax(-1)  # a*  (B, H, n)
    W = (k * (a - a_max[..., None]).exp()[..., None]).transpose(-1, -2) @ v1  # (B, H, n, K, V + 1)

    # 2. The short loop over chunks: the stabiliser and the state entering each chunk.
    starts, m_starts = [], []
    for c in range(q.shape[2]):
        starts.append(Cn)
        m_starts.append(m)
        m_out = torch.maximum(b[:, :, c, -1] + m, a_max[:, :, c])
        Cn = ((b[:, :, c, -1] + m - m_out).exp()[..., None, None] * Cn
              + (a_max[:, :, c] - m_out).exp()[..., None, None] * W[:, :, c])
        m = m_out
    S_in, m_in = torch.stack(starts, 2), torch.stack(m_starts, 2)  # (B, H, n, K, V + 1), (B, H, n)

    # 3. Outputs: the per-token stabiliser m_i, then the entering state's part and the chunk's own writes.
    log_D = (b[..., :, None] - b[..., None, :] + li[..., None, :]).masked_fill(~causal, -math.inf)
    m_inter = b + m_in[..., None]  # log weight of the entering state at token i  (B, H, n, Q)
    m_i = torch.maximum(m_inter, log_D.amax(-1))  # = the sequential m_t
    D = (log_D - m_i[..., None]).exp()  # (B, H, n, Q, Q), 0 above the diagonal
    o = (q * (m_inter - m_i).exp()[..., None]) @ S_in + ((q @ k.transpose(-1, -2)) * D) @ v1
    num, den = o[..., :-1], o[..., -1]
    return num / (torch.maximum(den.abs(), (-m_i).exp()) + eps)[..., None], Cn, m
