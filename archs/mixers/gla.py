"""GLA: linear attention with a data-dependent, per-channel forget gate (Yang, Wang, Shen, Panda, Kim 2023,
"Gated Linear Attention Transformers with Hardware-Efficient Training", arXiv 2312.06635).

The layer of §4 ("GLA Transformer") as flash-linear-attention's `GatedLinearAttention` builds it at its
defaults (4 heads, key width D/2, value width D, no short convolution, no feature map). Per head, with
row vectors (§4 writes the decay as G_t = α_tᵀ 1, S_t = G_t ⊙ S_{t-1} + k_tᵀ v_t):
    q_t = x_t W_Q,  k_t = x_t W_K,  v_t = x_t W_V
    α_t = sigmoid(x_t W_α1 W_α2 + b_α)^(1/τ),  τ = 16: a low-rank (rank 16) gate per key channel
    S_t = Diag(α_t) S_{t-1} + k_tᵀ v_t,   o_t = (q_t / √d_k) S_t
    y_t = (RMSNorm(o_t) ⊙ swish(x_t W_r)) W_O     (norm per head, then the output gate, as fla does)
The gate is computed in log space, log α_t = logsigmoid(·) / τ (<= 0), which is what the op takes.

Choices, against the paper: the per-head norm is RMSNorm (the paper writes LayerNorm; fla uses
RMSNorm), the output gate has no bias b_r, and the 1/√d_k scale is fla's — each as in fla's layer.
Parameter names follow fla's layer (q_proj, k_proj, v_proj, g_proj, gk_proj, o_proj), except fla's fused
`g_norm_swish_gate` is `g_norm` here (the same per-head RMSNorm weight; the swish gate has no weight).

Glossary (code -> paper): see gated_linear_layer.py; and
    gk_proj         (down, up + bias) low-rank projection of the gate logits      W_α1, W_α2, b_α
    g               (B, T, H, K) log forget gate logsigmoid(·) / τ                log α_t
    g_proj          output gate projection                                        W_r
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.base import State
from archbench.archs.mixer_registry import register
from archbench.archs.mixers.gated_linear_layer import GatedLinearMixer
from archbench.archs.ops.common import PER_CHANNEL_CHUNK
from archbench.archs.ops.gated_linear import FLA_GLA


@dataclass(frozen=True)
class Config:
    n_head: int = 4  # H
    expand_k: float = 0.5  # key width H*K = expand_k * d_model
    expand_v: float = 1.0  # value width H*V = expand_v * d_model
    gate_low_rank_dim: int = 16  # rank of the gate projection W_α1 W_α2
    gate_logit_normalizer: int = 16  # τ: log α = logsigmoid(·) / τ
    norm_eps: float = 1e-5


@register("gla")
class GLA(GatedLinearMixer):
    Config = Config
    kernels = {"fla": FLA_GLA}
    decay = "vector"
    chunk_size = PER_CHANNEL_CHUNK  # a per-channel decay: archs/ops/common.py says why this chunk
    conformance_configs = ({"n_head": 2, "expand_k": 1.0},)

    def _build(self, d_model: int, cfg: Config) -> None:
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, cfg.gate_low_rank_dim, bias=False),
                                     nn.Linear(cfg.gate_low_rank_dim, self.key_dim, bias=True))
        self.g_norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)

    def _decay(self, x: Tensor) -> Tensor:
        logsig = F.logsigmoid(self.gk_proj(x)).unflatten(-1, (self.n_head, -1))  # (B, T, H, K)
        return logsig / self.cfg.gate_logit_normalizer  # log α = logsigmoid(·) / τ

    def _fla(self, q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
             want_state: bool) -> tuple[Tensor, State]:
        # fla: (B, T, H, ·) layout, g the log gate per key channel, state (B, H, K, V) in float32.
        o, S = FLA_GLA(q=q, k=k, v=v, g=g, scale=self.scale, output_final_state=want_state)
        return o, {"S": S}

    def _gate_flops(self, seq_len: int) -> int:
        r = self.cfg.gate_low_rank_dim
        return 2 * seq_len * (self.d_model * self.value_dim + r * (self.d_model + self.key_dim))  # g, gk
