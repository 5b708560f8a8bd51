"""RetNet: multi-scale retention, linear attention with a fixed decay per head (Sun, Dong, Huang, Ma, Xia,
Xue, Wang, Wei 2023, "Retentive Network: A Successor to Transformer for Large Language Models",
arXiv 2307.08621).

The layer as flash-linear-attention's `MultiScaleRetention` builds it at its defaults (8 heads, key width
D, value width 2D, no short convolution, no feature map). Per head h, with row vectors:
    q_n = (x_n W_Q) ⊙ Θ_n,  k_n = (x_n W_K) ⊙ Θ̄_n,  v_n = x_n W_V   (eq. 5; Θ_n = e^{inθ}: rotary positions)
    S_n = γ_h S_{n-1} + k_nᵀ v_n,   o_n = (q_n / √d_k) S_n                        (eq. 6, recurrent form)
    γ_h = 1 - 2^(-5-h),  h = 0 .. H-1                                             (eq. 8)
    y_n = (swish(x_n W_G) ⊙ Norm_h(o_n)) W_O                                       (eq. 8)
`forward` uses the chunked form (eq. 7) through the shared diagonal-decay op; `step` runs eq. 6
(the block both share with gla and linear attention: gated_linear_layer.py).

Choices, each as in fla's layer: the rotation Θ is rotary embedding (RoPE, base 10000) over the whole
key width in the half-split layout (feature j is paired with j + d_k/2; archs/ops/rope.py); the per-head
GroupNorm of eq. 8 is an RMSNorm per head (fla's fused `g_norm_swish_gate`, called `g_norm` here); the
scale is 1/√d_k.
Left out: the paper's retention-score normalisations (§2.2), which a per-head norm cancels up to eps.

Glossary (code -> paper): see gated_linear_layer.py; and
    V               value width per head, d_v = 2 d_k by default
    q, k            rotated query and key                                              Q, K
    g               (H,) log γ_h                                                       log γ
    g_proj          output gate projection                                             W_G
    pos             position of the next token (rotary phase), in the state            n
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archbench.archs.base import State
from archbench.archs.mixer_registry import register
from archbench.archs.mixers.gated_linear_layer import GatedLinearMixer
from archbench.archs.ops.common import state_dtype
from archbench.archs.ops.gated_linear import FLA_RETENTION
from archbench.archs.ops.rope import rope, rope_rotation


@dataclass(frozen=True)
class Config:
    n_head: int = 8  # H
    expand_k: float = 1.0  # key width H*K = expand_k * d_model
    expand_v: float = 2.0  # value width H*V = expand_v * d_model
    rope_base: float = 10000.0
    norm_eps: float = 1e-5


def log_gamma(n_head: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """log γ_h = log(1 - 2^(-5-h)) for h = 0 .. H-1 (eq. 8), taken in float64 then cast."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(n_head, dtype=torch.float64))).to(device, dtype)


@register("retnet")
class RetNet(GatedLinearMixer):
    Config = Config
    kernels = {"fla": FLA_RETENTION}
    decay = "fixed"
    positional = True
    conformance_configs = ({"n_head": 2, "expand_v": 1.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if self.head_k % 2:  # the rotation turns feature pairs (j, j + K/2)
            raise ValueError(f"retnet: key width per head {self.head_k} (d_model * expand_k / n_head) "
                             f"must be even")

    def _build(self, d_model: int, cfg: Config) -> None:
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.g_norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)

    def _qk(self, q: Tensor, k: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        # one phase per position for every head: (T, 1, K/2); the half-split pairing of fla's rotary
        rotation = rope_rotation(pos, self.head_k, self.cfg.rope_base, q.dtype)[:, None]
        return rope(q, rotation, interleaved=False), rope(k, rotation, interleaved=False)

    def _decay(self, x: Tensor) -> Tensor:
        return log_gamma(self.n_head, state_dtype(x.dtype), x.device)  # (H,), in the op's dtype

    def _fla(self, q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
             want_state: bool) -> tuple[Tensor, State]:
        # fla: (B, T, H, ·) layout; it derives the same γ_h = 1 - 2^(-5-h) from the head count.
        o, S = FLA_RETENTION(q=q, k=k, v=v, scale=self.scale, output_final_state=want_state)
        return o, {"S": S}

    def _gate_flops(self, seq_len: int) -> int:
        return 2 * seq_len * self.d_model * self.value_dim  # g_proj
