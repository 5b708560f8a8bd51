"""HGRN2's recurrence: archs/ops/gated_linear.py's diagonal-decay op with the key tied to the forget gate.

Qin et al. 2024, "HGRN2: Gated Linear RNNs with State Expansion" (arXiv:2404.07904), §3. Per head, with
forget gate f_t ∈ [β, 1)^K (β the layer's lower bound) on the key dimension:
    S_t = Diag(f_t) S_{t-1} + (1 − f_t) v_tᵀ,     o_t = S_tᵀ (scale · q_t)
i.e. GLA (S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ) with α_t = f_t and k_t = 1 − f_t: the "state expansion" is
the outer product of the input-gate-as-key with the value. That is `gated_linear` exactly, with a
per-channel log decay (B, T, H, K), so HGRN2 keeps no chunked form of its own: `hgrn2_sequential`,
`hgrn2_chunked` and `hgrn2_step` form k = 1 − f from log f (as −expm1(log f), exact as f → 1) and call
`gated_linear_sequential`, `gated_linear_chunked` and `gated_linear_update`. Gradients reach log f through
both the decay and the key. tests/ops/test_ops_hgrn2.py checks the chunked form against the sequential
one and both against HGRN2 written out from the paper (f in probability space, its own loop).

`hgrn2_log_forget` forms log f from the forget logits and the lower bound, f = β + (1 − β) σ(z), in log
space: log f = logaddexp(log β, log(1 − β) + log σ(z)), finite for any logit (β = 0: log σ(z)).

Checked against fla's `HGRN2Attention` (fla/layers/hgrn2.py: the same gate and key, then `chunk_gla` /
`fused_recurrent_gla`) and fla's `naive_recurrent_gla` (fla/ops/gla/naive.py). Facts for the layer:
fla's query is swish(q_proj x), the scale is fla's default 1/sqrt(K), K = `expand_ratio` (128 by default)
and V = d_model / H; the lower bounds are a learned (n_layer, d_model) parameter turned into
β_l = cumsum(softmax over layers)_l − softmax_0, so β rises with depth and the first layer has β = 0;
then RMSNorm and o_proj. fla stores the state V-first (`state_v_first=True`); here it is (K, V), as in
`gated_linear`.

Glossary (code -> paper):
    B, T, H, K, V   batch, tokens, heads, forget/key width per head (expand ratio), value width
    q               output gate, the query                                     o_t
    v               input, the value                                           i_t
    log_forget      log f_t (<= 0), the per-channel decay                      f_t
    lower_bound     β, broadcast against the logits (e.g. (H, K))              γ / lower bound
    S               state per head (B, H, K, V)                                h_t
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from archbench.archs.ops.gated_linear import (
    gated_linear_chunked,
    gated_linear_sequential,
    gated_linear_update,
)


def hgrn2_log_forget(logits: Tensor, lower_bound: Tensor | None = None) -> Tensor:
    """log f for f = β + (1 − β) σ(logits), β ∈ (0, 1) broadcast against logits, or None for no bound
    (β = 0: log σ(logits)). Pass None rather than a zero β: log β = −inf gives the right value but a NaN
    gradient for β, as fla's layer passes none to its first layer."""
    log_sig = F.logsigmoid(logits)
    if lower_bound is None:
        return log_sig
    return torch.logaddexp(lower_bound.log(), torch.log1p(-lower_bound) + log_sig)


def _key(log_forget: Tensor) -> Tensor:
    return -torch.expm1(log_forget)  # 1 − f


def hgrn2_step(q: Tensor, v: Tensor, log_forget: Tensor, scale: float, S: Tensor) -> tuple[Tensor, Tensor]:
    """One token: q, log_forget (B, H, K), v (B, H, V), S (B, H, K, V) -> o (B, H, V), the new S."""
    return gated_linear_update(S, q, _key(log_forget), v, log_forget, scale)


def hgrn2_sequential(q: Tensor, v: Tensor, log_forget: Tensor, scale: float = 1.0,
                     initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The definition, token by token. q, log_forget (B, T, H, K), v (B, T, H, V), initial_state
    (B, H, K, V) or None (zeros). Returns o (B, T, H, V) and the final state (B, H, K, V)."""
    return gated_linear_sequential(q, _key(log_forget), v, log_forget, scale, initial_state)


def hgrn2_chunked(q: Tensor, v: Tensor, log_forget: Tensor, scale: float = 1.0, chunk_size: int = 64,
                  initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`hgrn2_sequential` through `gated_linear_chunked` (chunks of `chunk_size` tokens)."""
    return gated_linear_chunked(q, _key(log_forget), v, log_forget, scale, chunk_size, initial_state)
