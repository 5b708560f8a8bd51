"""Kimi Delta Attention (KDA): the delta rule with a per-channel, data-dependent decay.

Kimi Team 2025, "Kimi Linear: An Expressive, Efficient Attention Architecture" (arXiv 2510.26692).
Per head, with α_t in (0, 1)^{d_k} one decay per key channel:

    S_t = (I − β_t k_t k_tᵀ) Diag(α_t) S_{t-1} + β_t k_t v_tᵀ,     o_t = S_tᵀ q_t / √d_k

The decay acts first, then the delta update reads the decayed state (the order of fla's naive KDA;
for a scalar α it coincides with Gated DeltaNet). Trained with the chunked WY form with per-channel
decays (archs/ops/delta_rule.py builds the (Q, Q, d_k) pair decays a few chunks at a time).

Block, as fla's KimiDeltaAttention layer at its defaults (fla/layers/kda.py; delta_layer.py):
  - q, k, v: projections through a causal depthwise conv of width 4 and SiLU, q and k L2-normalised
    per head, β_t = sigmoid(W_β x_t) per head;
  - decay: log α_t = −exp(A_log_h) · softplus(W_f↑ W_f↓ x_t + dt_bias), a low-rank projection of
    rank d_v per (head, channel) (the paper's channel-wise decay), A_log per head starting with
    A uniform in [1, 16], dt_bias per (head, channel) with softplus log-uniform in [0.001, 0.1];
  - output: per-head RMSNorm with a weight, times sigmoid(W_g↑ W_g↓ x_t + b_g) (a low-rank gate of rank
    d_v with a bias on its up-projection: the paper's output gate), then W_o. expand_v = 1 (fla's default).
Differences from fla: heads come from head_dim (n_head = d_model // head_dim unless set), which at
fla's defaults (head_dim 128, 16 heads, d_model 2048) is the same count; fla's optional
safe_gate / lower_bound variant (a sigmoid-bounded decay) is not offered.

Glossary (code -> paper): see delta_layer.py; and
    f_proj      (down, up) low-rank projection of the decay logits                   W_f
    A_log, dt_bias                                                                   A, b of the gate
    g_proj      (down, up + bias) low-rank output gate                               W_g
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.delta_layer import DeltaRuleMixer, GatedRMSNorm
from archbench.archs.ops.common import PER_CHANNEL_CHUNK, a_log_uniform, dt_bias_init


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K per head
    n_head: int = 0  # 0: d_model // head_dim
    expand_v: float = 1.0  # V = head_dim * expand_v (fla's default 1)
    d_conv: int = 4  # short causal conv width on q, k, v
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1


@register("kda")
class KDA(DeltaRuleMixer):
    Config = Config
    decay = "vector"
    # Smaller than the others' 64: the per-channel pair decays, not the matmuls, bound the op on CPU
    # (archs/ops/common.py, PER_CHANNEL_CHUNK, says how the chunk was chosen).
    chunk_size = PER_CHANNEL_CHUNK
    conformance_configs = ({"head_dim": 8, "expand_v": 2.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        H, K, V = self.n_head, self.head_k_dim, self.head_v_dim
        self.f_proj = nn.Sequential(nn.Linear(d_model, V, bias=False), nn.Linear(V, H * K, bias=False))
        self.A_log = nn.Parameter(a_log_uniform(H, 1, 16))  # A = exp(A_log) uniform in [1, 16], as fla
        self.dt_bias = nn.Parameter(dt_bias_init(H * K, cfg.dt_min, cfg.dt_max))
        self.g_proj = nn.Sequential(nn.Linear(d_model, V, bias=False),
                                    nn.Linear(V, self.value_dim, bias=True))
        self.o_norm = GatedRMSNorm(V, eps=1e-5, activation="sigmoid")

    def _decay(self, x: Tensor) -> Tensor:
        logits = (self.f_proj(x) + self.dt_bias).unflatten(-1, (self.n_head, self.head_k_dim))  # (B,T,H,K)
        return -self.A_log.exp()[:, None] * F.softplus(logits)  # log α <= 0, per channel

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        gate = self.g_proj(x).unflatten(-1, (self.n_head, self.head_v_dim))  # (B, T, H, V)
        return self.o_proj(self.o_norm(o, gate).flatten(-2))  # (B, T, D)

    def _gate_flops(self, seq_len: int) -> int:
        D, V = self.d_model, self.head_v_dim
        return 2 * seq_len * (D * V + V * self.key_dim + D * V + V * self.value_dim)  # f_proj, g_proj
