"""The diagonal-decay ("gated linear attention") recurrence shared by linear attention, RetNet and GLA.

One op, parameterised by its decay, per head (state S of K x V):
    S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ,        o_t = S_tᵀ (scale · q_t)
The decay is passed as its logarithm `log_decay` (<= 0), and its shape says which kind it is:
    None            no decay, α_t = 1                      linear attention (arXiv 2006.16236)
    (H,)            one fixed scalar per head, α_t = γ_h    RetNet (arXiv 2307.08621)
    (B, T, H)       a data-dependent scalar per head        Mamba-2 / SSD, fla's simple GLA
    (B, T, H, K)    a data-dependent value per key channel  GLA (arXiv 2312.06635)
RWKV-6 (per channel, but o_t reads S_{t-1} plus a bonus u on the current token) also maps onto it: delay
k, v and the decay one token against q (a zero token first), and add (q_t ⊙ u ⊙ k_t)·v_t outside.
tests/ops/test_ops_family.py checks both mappings (SSD with q = C, k = B on every head, v = Δ x, decay Δ A);
archs/ops/ssd.py and wkv.py say why each keeps its own chunked form.
`gated_linear_sequential` is the definition (a loop over tokens, `gated_linear_update` per token, which
the layers' `step` also runs); `gated_linear_chunked` computes the same in chunks of Q tokens, linear in
T (the "chunkwise parallel form" of the GLA paper, for linear attention and then with the gate):
  - inside a chunk, with b_t the log decay cumulated from the chunk start through t (inclusive),
        o_i = Σ_{j<=i} (q_i ⊙ exp(b_i - b_j))·k_j v_j + (q_i ⊙ exp(b_i))ᵀ S_in ;
    for a scalar decay exp(b_i - b_j) is one (Q, Q) masked matrix (exponents <= 0; the masked entries get
    -inf before exp, so nothing overflows). For a per-channel decay the score is not a plain q kᵀ, so the
    exponent is split at a reference point: q_i exp(b_i - r) and k_j exp(r - b_j). With r the chunk start,
    the key factor exp(-b_j) grows like the chunk's total decay (64 tokens of log α = -6.3, a GLA gate
    logit of -100, reach exp(400); float32 overflows past exp(88)), so instead the chunk is cut into
    sub-chunks of c = 4 tokens and r is the cumulative decay at the END OF THE SUB-CHUNK BEFORE the
    query's: keys in earlier sub-chunks (j < a <= i) then have r - b_j <= 0 and queries b_i - r <= 0,
    both factors in (0, 1]; pairs inside one sub-chunk are computed elementwise as a (c, c, K) tensor of
    exp(b_i - b_j), i >= j.
  - between chunks the state: S_out = exp(b_Q) ⊙ S_in + Σ_j (k_j ⊙ exp(b_Q - b_j)) v_jᵀ, a short loop.
Every exp here is of a non-positive number (cumulative sums are taken within a chunk only; a difference
of two of them keeps an absolute error of about |b| times the dtype's eps, harmless for GLA's gates,
which is why RWKV-6's layer floors its log decay before its own chunked op). Work per token and head is
O(K V + Q (K + V)), temporaries O(K (Q/c + c) + Q + V); no (B, T, K, V) tensor is formed. Inputs are
computed in float32 (float64 stays float64); the output comes back in the inputs' dtype, the state in
the compute dtype.

Glossary (code -> paper):
    B, T, H, K, V   batch, tokens, heads, key width (d_k), value width (d_v)
    q, k, v         query, key, value per head                              q_t, k_t, v_t
    log_decay       log α_t (<= 0); RetNet log γ_h; GLA log α_t             α_t, γ
    S               state per head (B, H, K, V)                             S_t
    Q, c, N         chunk length, sub-chunk length (per-channel decay), number of chunks
    b               log decay cumulated within a chunk, inclusive of the token
"""

from __future__ import annotations

import math

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
    mask_bias,
    state_dtype,
    to_chunks,
)

_SUB_CHUNK = PER_CHANNEL_SUB_CHUNK  # c: sub-chunk of the per-channel path (the (c, c, K) elementwise blocks)


def gated_linear_update(S: Tensor, q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None,
                        scale: float) -> tuple[Tensor, Tensor]:
    """One token: S (B, H, K, V), q/k (B, H, K), v (B, H, V), log_decay None, (H,), (B, H) or (B, H, K).

    Returns o (B, H, V) and the new state (a new tensor: `step` copies it into its state in place).
    """
    if log_decay is not None:
        alpha = log_decay.exp()
        S = (alpha[..., None] if log_decay.dim() == 3 else alpha[..., None, None]) * S
    S = S + k[..., :, None] * v[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q * scale, S), S


def gated_linear_sequential(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None = None,
                            scale: float = 1.0, initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The definition, token by token. q/k (B, T, H, K), v (B, T, H, V), log_decay as in the module doc,
    initial_state (B, H, K, V) or None (zeros). Returns o (B, T, H, V) and the final state (B, H, K, V)."""
    B, T, H, K = q.shape
    dtype, cd = q.dtype, state_dtype(q.dtype)
    q, k, v = q.to(cd), k.to(cd), v.to(cd)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(cd)
    out = []
    for t in range(T):
        a_t = None if log_decay is None else (log_decay if log_decay.dim() == 1 else log_decay[:, t]).to(cd)
        o_t, S = gated_linear_update(S, q[:, t], k[:, t], v[:, t], a_t, scale)
        out.append(o_t)
    return torch.stack(out, 1).to(dtype), S


def gated_linear_chunked(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None = None,
                         scale: float = 1.0, chunk_size: int = 64,
                         initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`gated_linear_sequential` in chunks of `chunk_size` tokens (see the module doc): same arguments
    and results, to rounding, values and gradients; time and memory linear in T."""
    B, T, H, K = q.shape
    V, dtype, cd = v.shape[-1], q.dtype, state_dtype(q.dtype)
    per_channel = log_decay is not None and log_decay.dim() == 4
    fixed = log_decay is not None and log_decay.dim() == 1  # one decay per head (RetNet)
    if per_channel:  # chunks of whole sub-chunks
        c = math.gcd(chunk_size, _SUB_CHUNK)
        Q = min(chunk_size, -(-T // c) * c)
    else:
        c, Q = 1, min(chunk_size, T)
    N = -(-T // Q)
    pad = N * Q - T  # padded tokens: zero q, k, v and log decay 0, so outputs and state pass unchanged
    if fixed and pad:  # the padded tokens need decay 1: one decay per token then
        log_decay, fixed = log_decay.expand(B, T, H), False

    def blocks(t: Tensor) -> Tensor:  # (B, T, H, X) -> (B, H, N, Q, X)
        return to_chunks(t.to(cd), Q, pad)

    q, k, v = blocks(q * scale), blocks(k), blocks(v)
    if fixed:  # every chunk decays alike: its cumulative log decays (i + 1) log γ, built once (1, H, 1, Q, 1)
        steps = torch.arange(1, Q + 1, dtype=cd, device=q.device)
        b = (log_decay.to(cd)[:, None] * steps).view(1, H, 1, Q, 1)
    elif log_decay is not None:  # (B, H, N, Q, 1 or K), non-increasing along the chunk
        b = blocks(log_decay.unsqueeze(-1) if log_decay.dim() == 3 else log_decay).cumsum(3)
    else:
        b = None
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(cd)

    # A few chunks at a time, so the (Q, Q) and (Q/c, Q, K) temporaries fit one core's L2.
    per_chunk = B * H * Q * (max(Q, K * (Q // c + c)) if per_channel else SCORE_TEMPORARIES * Q)
    g = max(1, cache_elements(cd) // per_chunk)
    outs = []
    for qg, kg, vg, bg in chunk_groups((q, k, v, None if fixed else b), g):
        o, S = _chunks(qg, kg, vg, b if fixed else bg, S, c)  # a fixed decay: every group shares b
        outs.append(o)
    return from_chunks(outs, T).to(dtype), S


def _chunks(q: Tensor, k: Tensor, v: Tensor, b: Tensor | None, S: Tensor, c: int) -> tuple[Tensor, Tensor]:
    """Consecutive whole chunks: q/k (B, H, n, Q, K), v (B, H, n, Q, V), b the cumulative log decay
    (B, H, n, Q, 1 or K; n may be 1 where every chunk shares it) or None, S (B, H, K, V) the state before
    them. Returns o (B, H, n, Q, V) and the state after them."""
    o = _intra(q, k, v, b, c)

    # Each chunk's own contribution to the state at its end, and the decay of the state across it.
    if b is None:
        dS, decay = k.transpose(-1, -2) @ v, None  # (B, H, n, K, V)
    else:
        b_end = b[..., -1:, :]  # (B, H, n, 1, 1 or K)
        dS = (k * (b_end - b).exp()).transpose(-1, -2) @ v
        decay = b_end.exp().transpose(-1, -2)  # (B, H, n, 1 or K, 1)
    if decay is None:  # no decay: the state entering each chunk is a running sum, one cumsum
        ends = S.unsqueeze(2) + dS.cumsum(2)  # (B, H, n, K, V) the state at each chunk's end
        S_in, S = torch.cat([S.unsqueeze(2), ends[:, :, :-1]], 2), ends[:, :, -1]
    else:
        starts = []
        for i in range(q.shape[2]):  # the short scan over chunks
            starts.append(S)
            S = decay[:, :, i if decay.shape[2] > 1 else 0] * S + dS[:, :, i]
        S_in = torch.stack(starts, 2)  # (B, H, n, K, V) the state entering each chunk

    # What the carried-in state adds: (q_i ⊙ exp(b_i))ᵀ S_in.
    return o.add_((q if b is None else q * b.exp()) @ S_in), S  # in place on `_intra`'s fresh product


def _intra(q: Tensor, k: Tensor, v: Tensor, b: Tensor | None, c: int) -> Tensor:
    """Σ_{j<=i in the chunk} (q_i ⊙ exp(b_i - b_j))·k_j v_j for every token i: (B, H, n, Q, V)."""
    Q = q.shape[-2]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=q.device).tril()
    if b is None:  # linear attention: the causal mask is the whole decay matrix
        return (q @ k.transpose(-1, -2)).masked_fill_(~causal, 0) @ v  # in place: a fresh product
    if b.shape[-1] == 1:  # scalar decay: D_ij = exp(b_i - b_j) for i >= j (RetNet eq. 5's D, per chunk)
        D = (b - b.transpose(-1, -2)).add_(mask_bias(causal, b)[..., 0]).exp_()  # (B, H, n, Q, Q)
        return (q @ k.transpose(-1, -2)).mul_(D) @ v  # in place on the fresh product

    # Per-channel decay: the exponent split at sub-chunk starts (see the module doc; common.py).
    return decayed_scores(q, k, b, b, c) @ v


def gated_linear_flops(seq_len: int, n_head: int, K: int, V: int, chunk_size: int,
                       per_channel: bool = False) -> int:
    """Analytic FLOPs (multiply-add = 2) of `gated_linear_chunked` over one sequence, elementwise work
    left out: per token and head, the (Q, Q) scores and their product with v, Q (K + V); the read of the
    carried-in state and the chunk's write to it, 2 K V; and for a per-channel decay the elementwise
    (c, c, K) blocks with their product with v, c (K + V)."""
    c = math.gcd(chunk_size, _SUB_CHUNK)
    Q = min(chunk_size, -(-seq_len // c) * c) if per_channel else min(chunk_size, seq_len)
    per_token = Q * (K + V) + 2 * K * V + (c * (K + V) if per_channel else 0)
    return 2 * seq_len * n_head * per_token


# -- fla's kernels of the three layers (CUDA) -------------------------------------------------------------
# Each probe is a tiny forward+backward: it raises where fla refuses its backward (Hopper with
# Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to switch paths.
def _probe_linear_attn(chunk_linear_attn, device: str) -> None:
    q, k, v = probe_leaves(device, sample=torch.rand)  # positive, as after elu + 1
    chunk_linear_attn(q=q, k=k, v=v, scale=1.0, normalize=True)[0].sum().backward()


def _probe_retention(chunk_retention, device: str) -> None:
    q, k, v = probe_leaves(device)
    chunk_retention(q=q, k=k, v=v, scale=1.0)[0].sum().backward()


def _probe_gla(chunk_gla, device: str) -> None:
    q, k, v = probe_leaves(device)
    gk = F.logsigmoid(torch.randn(1, 16, 1, 16, device=device)).requires_grad_()
    chunk_gla(q=q, k=k, v=v, g=gk, scale=1.0)[0].sum().backward()


_FLA = "flash-linear-attention"
FLA_LINEAR_ATTN = Kernel("fla.ops.linear_attn", "chunk_linear_attn", _FLA, probe=_probe_linear_attn)
FLA_RETENTION = Kernel("fla.ops.retention", "chunk_retention", _FLA, probe=_probe_retention)
FLA_GLA = Kernel("fla.ops.gla", "chunk_gla", _FLA, probe=_probe_gla)
