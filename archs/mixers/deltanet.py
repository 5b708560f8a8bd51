"""DeltaNet: linear attention whose state is edited by the delta rule instead of only added to.

Yang, Wang, Zhang, Shen, Kim 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence
Length" (arXiv 2406.06484); the rule itself is Schlag et al. 2021 (arXiv 2102.11174). Per head:

    S_t = (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,     o_t = S_tᵀ q_t / √d_k

i.e. the state first forgets what it held for key k_t (v_old = S_{t-1}ᵀ k_t), then writes the blend
β_t v_t + (1 − β_t) v_old. Trained with the paper's chunkwise WY form (archs/ops/delta_rule.py, g = None).

Block, as fla's DeltaNet layer at its defaults (fla/layers/delta_net.py; delta_layer.py):
  - q, k, v: linear projections, each through a causal depthwise conv of width 4 and SiLU (the
    paper's short convolution and SiLU feature map; fla's qk_activation='silu');
  - q and k L2-normalised per head (k must have unit norm for I − β k kᵀ to be a contraction;
    fla normalises q too, qk_norm='l2');
  - β_t = sigmoid(W_β x_t), one per head;
  - output: a per-head RMSNorm with a weight and NO gate (fla's default use_gate=False), then W_o.
Difference from fla: heads come from head_dim (n_head = d_model // head_dim unless n_head is set;
fla's default is num_heads = 4 whatever d_model).

Glossary (code -> paper): see delta_layer.py; q, k, v, beta (β), S, o_norm (the output norm).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.delta_layer import DeltaRuleMixer, GatedRMSNorm


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K per head
    n_head: int = 0  # 0: d_model // head_dim
    expand_v: float = 1.0  # V = head_dim * expand_v (fla's DeltaNet: 1)
    d_conv: int = 4  # short causal conv width on q, k, v


@register("deltanet")
class DeltaNet(DeltaRuleMixer):
    Config = Config
    decay = "none"
    chunk_size = 64
    conformance_configs = ({"head_dim": 8, "expand_v": 2.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        self.o_norm = GatedRMSNorm(self.head_v_dim, eps=1e-5)

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        return self.o_proj(self.o_norm(o).flatten(-2))  # (B, T, D)
