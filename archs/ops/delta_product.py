"""Gated DeltaProduct: n_h delta-rule (generalised Householder) steps per token, under one gate per token.

DeltaProduct (Siems et al. 2025, arXiv 2502.10297, §3 and its gated variant). Checked against
flash-linear-attention's fla/ops/gated_delta_product/naive.py (the loop) and chunk_ref.py (the same
mapping onto the gated delta rule as below), and fla/layers/gated_deltaproduct.py for the layout.

Per head, token t brings n_h keys k_{t,j} (L2-normalised by the layers), values v_{t,j} and write
strengths β_{t,j} (j = 1..n_h), one query q_t and one decay α_t = exp(g_t) (g <= 0, or no gate):
    S_t = α_t Π_{j=n_h..1} H_{t,j} S_{t-1} + Σ_j (Π_{l=n_h..j+1} H_{t,l}) β_{t,j} k_{t,j} v_{t,j}ᵀ,
    H_{t,j} = I − β_{t,j} k_{t,j} k_{t,j}ᵀ,       o_t = S_tᵀ (scale · q_t)   (scale = d_k^-1/2 by default)
that is: decay the state once, then take n_h delta-rule steps S <- S + β k (v − Sᵀk)ᵀ in order, then read.
A scalar α commutes with every H, so decaying first equals the paper's α outside the product. β in
(0, 2) gives the negative eigenvalues of the paper (fla's `allow_neg_eigval`, β = 2σ); the op takes β
as given.

The chunked form is the delta rule (archs/ops/delta_rule.py) run over n_h·T pseudo-tokens, token t's
j-th step at position t·n_h + j, with
    k, v, β   the steps' own,
    g         g_t on the first step of each token, 0 (decay 1) on the others,
    q         0 on every step but the last, q_t on the last,
and the outputs read at every token's last step. This is exact, not an approximation: the delta rule
with a scalar decay is S <- α (I − β k kᵀ) S + β k vᵀ per pseudo-token (decay first, as here), so the n_h
pseudo-tokens of one token compose to the product above, and its output at the last step reads S_t.
`delta_product_fla` runs the same mapping through fla's `chunk_gated_delta_rule` (CUDA), as fla's own
layer does in its recurrent mode: fla's dedicated `chunk_gated_delta_product` refuses float32 inputs,
which the float32 fast-vs-reference check needs, and computes the same product.
`delta_product_chunked` is therefore `delta_rule_chunked` (WY form, values and gradients tested there)
on the interleaved sequence; tests/ops/test_ops_delta_product.py checks the mapping against
`delta_product_sequential`, the definition written out here. Costs of the mapping: the chunk counts
pseudo-tokens (chunk_size / n_h tokens per chunk, and a chunk may end between two steps of one token),
and the n_h − 1 zero queries per token still cost their share of the output products, as in fla's
chunk_ref; delta_rule_chunked also floors each log decay at its dtype's floor (common.log_decay_floor),
far below any decay that changes an output.

Glossary (code -> paper):
    B, T, H, K, V   batch, tokens, heads, key width (d_k), value width (d_v)
    n               Householder steps per token                                     n_h
    q               query (B, T, H, K); the op scales it by `scale`                   q_t
    k, v            keys, values (B, T, n, H, K|V), step j of token t at [:, t, j]     k_{t,j}, v_{t,j}
    beta            write strengths (B, T, n, H)                                       β_{t,j}
    g               log decay (B, T, H), <= 0, or None (DeltaProduct without gate)     log α_t
    S               state (B, H, K, V)                                                 S_t
"""

from __future__ import annotations

import torch
from torch import Tensor

from archbench.archs.ops.delta_rule import delta_rule_chunked, delta_rule_fla


def _default_scale(q: Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


# -- the definition: one token, and the loop over time --------------------------------------------------
def delta_product_step(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None, S: Tensor,
                       scale: float | None = None) -> tuple[Tensor, Tensor]:
    """One token: q (B, H, K), k (B, n, H, K), v (B, n, H, V), beta (B, n, H), g None | (B, H), S
    (B, H, K, V). Returns o (B, H, V) and the new state (a new tensor)."""
    if g is not None:
        S = g.exp()[..., None, None] * S  # α_t S_{t-1}
    for j in range(k.shape[1]):  # H_{t,n} ... H_{t,1}: step 1 acts first
        k_j = k[:, j]
        u = beta[:, j, :, None] * (v[:, j] - torch.einsum("bhk,bhkv->bhv", k_j, S))  # β (v − Sᵀk)
        S = S + k_j[..., None] * u[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q * _default_scale(q, scale), S), S


def delta_product_sequential(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None = None,
                             initial_state: Tensor | None = None,
                             scale: float | None = None) -> tuple[Tensor, Tensor]:
    """The recurrence token by token, the reference. Shapes as in the glossary; returns o (B, T, H, V)
    and the final state (B, H, K, V)."""
    B, T, _, H, K = k.shape
    S = initial_state if initial_state is not None else k.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        o, S = delta_product_step(q[:, t], k[:, t], v[:, t], beta[:, t], None if g is None else g[:, t], S,
                                  _default_scale(q, scale))
        out.append(o)
    return torch.stack(out, 1), S


# -- the chunked form: the delta rule over the interleaved steps ---------------------------------------
def _interleaved(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                 g: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The n·T pseudo-tokens of the module docstring: q on each token's last step, g on its first."""
    B, T, n, H, K = k.shape
    q_steps = torch.cat([q.new_zeros(B, T, n - 1, H, K), q[:, :, None]], 2)
    g_steps = None if g is None else torch.cat([g[:, :, None], g.new_zeros(B, T, n - 1, H)], 2)
    return (q_steps.reshape(B, T * n, H, K), k.reshape(B, T * n, H, K), v.reshape(B, T * n, H, -1),
            beta.reshape(B, T * n, H), None if g_steps is None else g_steps.reshape(B, T * n, H))


def delta_product_chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None = None,
                          initial_state: Tensor | None = None, chunk_size: int = 64,
                          scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Same contract as `delta_product_sequential`: `delta_rule_chunked` over the n·T pseudo-tokens of the
    module docstring, in chunks of `chunk_size` pseudo-tokens, read at each token's last step."""
    B, T, n, H, _ = k.shape
    o, S = delta_rule_chunked(*_interleaved(q, k, v, beta, g), initial_state, chunk_size=chunk_size,
                              scale=_default_scale(q, scale))
    return o.view(B, T, n, H, -1)[:, :, -1], S  # (B, T, H, V), (B, H, K, V)


def delta_product_fla(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None,
                      initial_state: Tensor | None = None, output_final_state: bool = False,
                      scale: float | None = None) -> tuple[Tensor, Tensor | None]:
    """`delta_product_chunked` through fla's gated delta-rule kernel on the interleaved steps (CUDA):
    same arguments, the final state only if `output_final_state`."""
    B, T, n, H, _ = k.shape
    o, S = delta_rule_fla(*_interleaved(q, k, v, beta, g), initial_state, output_final_state,
                          scale=_default_scale(q, scale))
    return o.view(B, T, n, H, -1)[:, :, -1], S
