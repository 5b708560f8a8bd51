"""Linear attention: softmax replaced by a positive feature map, so attention becomes an RNN with a
matrix state (Katharopoulos, Vyas, Pappas, Fleuret 2020, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", arXiv 2006.16236).

Per head, with φ(x) = elu(x) + 1 (§3.2.1) and the causal, normalised form of §3.3:
    S_i = S_{i-1} + φ(k_i) v_iᵀ,   z_i = z_{i-1} + φ(k_i)
    o_i = S_iᵀ φ(q_i) / (φ(q_i)ᵀ z_i)
    y_i = RMSNorm(o_i) W_O                      (per-head output norm of fla's layer)
The layer is flash-linear-attention's `LinearAttention` with `feature_map="elu"` and
`do_feature_map_norm=True` (the paper's φ and normaliser); fla's own defaults differ (a learned Hadamard
feature map and no normaliser). As in fla, both numerator and denominator see q scaled by 1/√d_k (which
cancels) and the denominator gets + 1e-10; heads 8, key and value width D, no gate, no convolution.

The normaliser rides on the shared diagonal-decay op (no decay) as one more value column: with v_i
extended by a constant 1, the op's state is [S | z] and its output [S_iᵀ φ(q_i) | φ(q_i)ᵀ z_i].

Glossary (code -> paper): see gated_linear_layer.py; and
    q, k            (B, T, H, K) φ(query), φ(key)                       φ(Q_i), φ(K_i)
    S, z            (B, H, K, V), (B, H, K) state and normaliser        S_i, Z_i
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.base import State
from archbench.archs.mixer_registry import register
from archbench.archs.mixers.gated_linear_layer import GatedLinearMixer
from archbench.archs.ops.gated_linear import FLA_LINEAR_ATTN

_EPS = 1e-10  # added to the denominator, as fla does


@dataclass(frozen=True)
class Config:
    n_head: int = 8  # H
    expand_k: float = 1.0  # key width H*K = expand_k * d_model
    expand_v: float = 1.0  # value width H*V = expand_v * d_model
    norm_eps: float = 1e-5


def _feature_map(x: Tensor) -> Tensor:
    """φ(x) = elu(x) + 1 > 0 (§3.2.1), so the denominator is positive."""
    return F.elu(x) + 1


@register("linear_attention")
class LinearAttention(GatedLinearMixer):
    Config = Config
    kernels = {"fla": FLA_LINEAR_ATTN}
    decay = "none"
    value_extra = 1  # the normaliser's column
    conformance_configs = ({"n_head": 2, "expand_v": 2.0},)

    def _build(self, d_model: int, cfg: Config) -> None:
        self.norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)

    def _qk(self, q: Tensor, k: Tensor, pos: Tensor | None) -> tuple[Tensor, Tensor]:
        return _feature_map(q), _feature_map(k)

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        return self.o_proj(self.norm(o).flatten(-2))  # per-head RMSNorm, no gate; (B, T, D)

    def _fla(self, q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
             want_state: bool) -> tuple[Tensor, State]:
        # fla divides by (scale q)·z + 1e-10 itself; its layout is (B, T, H, ·). Since fla 0.5.1 it
        # returns the state as (S (B, H, K, V), z (B, 1, H, K)), before that S alone (z = Σ_t k_t).
        o, state = FLA_LINEAR_ATTN(q=q, k=k, v=v, scale=self.scale, normalize=True,
                                   output_final_state=want_state)
        if not want_state:
            return o, None
        S, z = state if isinstance(state, tuple) else (state, k.sum(1, keepdim=True))
        return o, {"S": S, "z": z[:, 0]}

    # -- the normaliser, one more value column of the op (see the module doc) ---------------------------
    def _values(self, v: Tensor) -> Tensor:
        return torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1)  # [v | 1]: the extra column accumulates z

    def _read(self, o: Tensor) -> Tensor:
        return o[..., :-1] / (o[..., -1:] + _EPS)  # [numerator | denominator] -> o

    def _split(self, S: Tensor) -> dict[str, Tensor]:
        return {"S": S[..., :-1], "z": S[..., -1]}  # [S | z]

    def _join(self, state: dict[str, Tensor]) -> Tensor:
        return torch.cat([state["S"], state["z"][..., None]], -1)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, Tensor]:
        state = super().init_state(batch, max_len, device, dtype)
        state["z"] = state["S"].new_zeros(state["S"].shape[:-1])  # (B, H, K)
        return state
