"""The RG-LRU, the recurrence of Griffin and Hawk: its definition, its chunked scan, and one token.

De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models" (arXiv:2402.19427), §2.4; RecurrentGemma (arXiv:2404.07839) is the released model. A
diagonal recurrence, no matrix state, one value per channel:
    log a_t = c · r_t · log σ(Λ)                       (a_t = a^(c r_t), a = σ(Λ), computed in log space)
    h_t = a_t ⊙ h_{t-1} + sqrt(1 − a_t²) ⊙ x_t,   y_t = h_t
where x_t is the gated input i_t ⊙ x_t of the paper (the layer forms it) and r_t, i_t are sigmoid gates.
Checked against transformers' `RecurrentGemmaRglru` (models/recurrent_gemma/modeling_recurrent_gemma.py),
which stores the parameter with the opposite sign (log a = −softplus(p), i.e. p = −Λ) and fixes c = 8.
Facts for the layer: Griffin initialises Λ so that a^c is uniform in [0.9, 0.999]; RecurrentGemma's
gates r_t, i_t are sigmoids of block-diagonal (per head) linear maps of the conv output x_t.

`rglru_sequential` is the loop over tokens, the definition; `rglru_step` one token, which a layer's `step`
decodes with; `rglru_chunked` the same in chunks of Q tokens, linear in T, checked against the sequential
one, values and gradients (tests/ops/test_ops_rglru.py):
  - inside every chunk, all chunks side by side, the recurrence runs from a zero state for Q steps:
    products of factors a_t in (0, 1] only, so nothing overflows however strong the decay;
  - a scan over the chunks carries the state: S_out = exp(b_Q) ⊙ S_in + (the chunk's own end state), with
    b_i the log decay cumulated from the chunk start through token i (b <= 0);
  - each token then adds exp(b_i) ⊙ S_in, the carried-in state decayed to it.
Python steps Q + T/Q; work O(T D). The closed form exp(B_t) Σ_j exp(−B_j) u_j over the whole sequence
would be one cumsum, but exp(−B_j) overflows after a few hundred tokens of a strong decay, and the sum
cancels catastrophically before that; every exponent here is <= 0.

Choices, against the paper and RecurrentGemma:
  - the normaliser sqrt(1 − a_t²) is computed as sqrt(−expm1(2 log a_t)), exact near a = 1, and its
    derivative in (1 − a²) is bounded at 1000, as RecurrentGemma bounds it (`SqrtBoundDerivative`): as
    r_t → 0, a_t → 1 and the true derivative grows without bound;
  - no document reset: RecurrentGemma sets a_t = 0 and the normaliser to 1 at position 0 of each document,
    so its first token enters un-normalised; here every token is normalised alike, and a zero initial
    state is the start of a sequence (prefill-then-step then matches one pass exactly).

Inputs are computed in float32 (float64 stays float64); y comes back in the inputs' dtype, the state in
the compute dtype, as RecurrentGemma keeps its recurrent state in float32.

Glossary (code -> paper):
    B, T, D     batch, tokens, channels (the RG-LRU width)
    x           the gated input i_t ⊙ x_t                                    (B, T, D)
    log_a       log a_t = c r_t log σ(Λ) <= 0                                (B, T, D)
    r, lam, c   recurrence gate r_t, Λ, the constant c (8)                   r_t, Λ, c
    h           hidden state, y_t = h_t                                      (B, D)
    Q, N, b     chunk length, number of chunks, log decay cumulated within a chunk (inclusive)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from archbench.archs.ops.common import state_dtype

C = 8.0  # the paper's fixed scale of the recurrence gate's exponent
_MAX_SQRT_GRAD = 1000.0  # bound on d sqrt(z)/dz, RecurrentGemma's `_MAX_SQRT_GRADIENT`


def rglru_log_a(r: Tensor, lam: Tensor, c: float = C) -> Tensor:
    """log a_t = c · r_t · log σ(Λ) (Griffin §2.4, in log space: σ(Λ)^(c r_t) underflows for a small σ(Λ)).
    r (B, T, D) in (0, 1), lam (D,). Returns log a_t (B, T, D), <= 0."""
    return c * r * F.logsigmoid(lam)


class _BoundedSqrt(torch.autograd.Function):
    """sqrt(z), whose derivative 1 / (2 sqrt z) is bounded at `_MAX_SQRT_GRAD` (infinite at z = 0)."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        s = z.sqrt()
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (s,) = ctx.saved_tensors
        return grad / (2 * s).clamp(min=1 / _MAX_SQRT_GRAD)


def rglru_norm(log_a: Tensor) -> Tensor:
    """sqrt(1 − a_t²), the input normaliser, from log a_t: sqrt(−expm1(2 log a)), exact as a → 1."""
    return _BoundedSqrt.apply(-torch.expm1(2 * log_a))


# -- the definition: one token, and the loop over time -------------------------------------------------
def rglru_step(x: Tensor, log_a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """One token: x, log_a (B, D), h (B, D) -> y (B, D), the new h (the same tensor: y_t = h_t)."""
    h = log_a.exp() * h + rglru_norm(log_a) * x
    return h, h


def rglru_sequential(x: Tensor, log_a: Tensor, state0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The definition, token by token. x, log_a (B, T, D); state0 (B, D) or None (zeros).
    Returns y (B, T, D) and the final state h (B, D)."""
    B, T, D = x.shape
    dtype, cd = x.dtype, state_dtype(x.dtype)
    x, log_a = x.to(cd), log_a.to(cd)
    h = x.new_zeros(B, D) if state0 is None else state0.to(cd)
    ys = []
    for t in range(T):
        y, h = rglru_step(x[:, t], log_a[:, t], h)
        ys.append(y)
    return torch.stack(ys, 1).to(dtype), h


# -- the chunked scan ------------------------------------------------------------------------------------
def rglru_chunked(x: Tensor, log_a: Tensor, state0: Tensor | None = None,
                  chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """`rglru_sequential` in chunks of `chunk_size` tokens (see the module doc): same arguments and
    results, to rounding, values and gradients; time and memory linear in T."""
    B, T, D = x.shape
    dtype, cd = x.dtype, state_dtype(x.dtype)
    Q = min(chunk_size, T)
    N = -(-T // Q)
    pad = N * Q - T  # padded tokens: log a = 0 (a = 1) and input 0, so the state passes unchanged
    u = rglru_norm(log_a.to(cd)) * x.to(cd)  # the normalised input, before padding (the norm of a = 1 is 0)
    u = F.pad(u, (0, 0, 0, pad)).reshape(B, N, Q, D)
    la = F.pad(log_a.to(cd), (0, 0, 0, pad)).reshape(B, N, Q, D)

    # Every chunk from a zero state, all chunks side by side: h_i = a_i h_{i-1} + u_i.
    a = la.exp()
    h, local = u.new_zeros(B, N, D), []
    for i in range(Q):
        h = a[:, :, i] * h + u[:, :, i]
        local.append(h)
    local = torch.stack(local, 2)  # (B, N, Q, D)

    # The state entering each chunk: S_{n+1} = exp(b_Q) ⊙ S_n + the chunk's own end state.
    b = la.cumsum(2)  # (B, N, Q, D), <= 0, non-increasing along the chunk
    decay = b[:, :, -1].exp()  # (B, N, D)
    S = u.new_zeros(B, D) if state0 is None else state0.to(cd)
    starts = []
    for n in range(N):
        starts.append(S)
        S = decay[:, n] * S + local[:, n, -1]
    S_in = torch.stack(starts, 1)  # (B, N, D)

    y = local + b.exp() * S_in[:, :, None]  # (B, N, Q, D): the carried-in state decayed to each token
    return y.reshape(B, N * Q, D)[:, :T].to(dtype), S
