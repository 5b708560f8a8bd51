"""Gated DeltaProduct: n_h delta-rule steps per token under one Mamba-2-style decay of the whole state.

Siems, Carstensen, Zela, Hutter, Pontil, Grazzi 2025, "DeltaProduct: Improving State-Tracking in Linear
RNNs via Householder Products" (arXiv 2502.10297), its gated variant. Per head, token t brings n_h keys,
values and write strengths and one query:

    S_t = α_t Π_{j=n_h..1} (I − β_{t,j} k_{t,j} k_{t,j}ᵀ) S_{t-1} + Σ_j (…) β_{t,j} k_{t,j} v_{t,j}ᵀ,
    o_t = S_tᵀ q_t / √d_k

(archs/ops/delta_product.py writes the sum out): n_h = 1 is Gated DeltaNet, more steps per token give the
state transition a product of Householder reflections, which is what state tracking needs.

Block, as fla's GatedDeltaProduct layer at its defaults (fla/layers/gated_deltaproduct.py;
delta_layer.py holds the shared body):
  - q (one per token), k and v (n_h per token: W_k, W_v and W_β n_h times wider, the steps outermost),
    each through a causal depthwise conv of width 4 and SiLU; q and every k L2-normalised per head;
  - β_{t,j} = 2 σ(W_β x_t) (`allow_neg_eigval`, fla's default: reflections with eigenvalues in (−1, 1]),
    or σ(W_β x_t);
  - decay as Gated DeltaNet's: log α_t = −exp(A_log) · softplus(W_a x_t + dt_bias), A uniform in (0, 16)
    and softplus(dt_bias) log-uniform in [0.001, 0.1] at the start (fla's initialisation);
  - output: per-head RMSNorm with a weight times SiLU(W_g x_t) (fla's FusedRMSNormGated), then W_o;
    values expand_v = 2 times wider than keys.
Differences from fla: heads come from head_dim (n_head = d_model // head_dim unless set), as in
gated_deltanet.py; one value head per key head (fla's num_v_heads = num_heads, its default).

Backends: "fla" runs the n_h T interleaved delta steps through fla's `chunk_gated_delta_rule` (CUDA; fla's
dedicated `chunk_gated_delta_product` refuses float32, see the op), "chunked" the same mapping through
archs/ops/delta_rule.py's chunked WY form. The chunk counts steps: `chunk_size` steps, chunk_size / n_h
tokens.

Glossary (code -> paper): see delta_layer.py; and
    n_householder                n_h, delta steps (Householder reflections) per token
    A_log, dt_bias, a_proj       A, Δ-bias, the projection of Δ (Mamba-2)           α_t = exp(−A Δ_t)
    g_proj                       output gate projection
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.delta_layer import DeltaRuleMixer, GatedRMSNorm
from archbench.archs.ops.common import a_log_uniform, dt_bias_init
from archbench.archs.ops.delta_rule import FLA


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K per head
    n_head: int = 0  # 0: d_model // head_dim
    expand_v: float = 2.0  # V = head_dim * expand_v (fla's default 2)
    d_conv: int = 4  # short causal conv width on q, k, v
    n_householder: int = 2  # n_h delta steps per token (fla's default 2)
    allow_neg_eigval: bool = True  # β = 2 σ(·) in (0, 2), as fla's default; False: σ(·) in (0, 1)
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1


@register("gated_deltaproduct")
class GatedDeltaProduct(DeltaRuleMixer):
    Config = Config
    decay = "scalar"
    kernels = {"fla": FLA["scalar"]}  # the gated delta-rule kernel over the interleaved steps
    chunk_size = 64  # delta steps per chunk: chunk_size / n_h tokens
    conformance_configs = ({"head_dim": 8, "n_householder": 3, "allow_neg_eigval": False},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        H = self.n_head
        self.a_proj = nn.Linear(d_model, H, bias=False)
        self.A_log = nn.Parameter(a_log_uniform(H, 0, 16))  # A = exp(A_log) uniform in (0, 16), as fla
        self.dt_bias = nn.Parameter(dt_bias_init(H, cfg.dt_min, cfg.dt_max))
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.o_norm = GatedRMSNorm(self.head_v_dim, eps=1e-5, activation="silu")

    def _beta(self, x: Tensor) -> Tensor:
        beta = super()._beta(x)  # σ(W_β x) (B, T, n, H)
        return 2 * beta if self.cfg.allow_neg_eigval else beta

    def _decay(self, x: Tensor) -> Tensor:
        return -self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)  # (B, T, H) log α <= 0

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        gate = self.g_proj(x).unflatten(-1, (self.n_head, self.head_v_dim))  # (B, T, H, V)
        return self.o_proj(self.o_norm(o, gate).flatten(-2))  # (B, T, D)

    def _gate_flops(self, seq_len: int) -> int:
        return 2 * seq_len * self.d_model * (self.n_head + self.value_dim)  # a_proj, g_proj
