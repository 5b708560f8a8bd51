"""Gated DeltaNet: the delta rule with a Mamba-2-style data-dependent decay of the whole state.

Yang, Kautz, Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule" (arXiv 2412.06464;
ICLR 2025). Per head, with α_t in (0, 1) one scalar per head and token:

    S_t = α_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,     o_t = S_tᵀ q_t / √d_k

The op (archs/ops/delta_rule.py) decays first and then applies the delta update, (I − β k kᵀ)(α S);
α is a scalar, so this is the paper's gated delta rule exactly. Trained with the chunkwise WY form
with the decay folded in as the cumulative log decays of a chunk.

Block, as fla's GatedDeltaNet layer at its defaults (fla/layers/gated_deltanet.py; delta_layer.py):
  - q, k, v: projections through a causal depthwise conv of width 4 and SiLU, q and k L2-normalised
    per head (the paper's block design), β_t = sigmoid(W_β x_t);
  - decay as Mamba-2: log α_t = g_t = −exp(A_log) · softplus(W_a x_t + dt_bias), A_log and dt_bias
    per head; A = exp(A_log) starts uniform in (0, 16) and softplus(dt_bias) log-uniform in
    [0.001, 0.1], fla's initialisation;
  - output: per-head RMSNorm with a weight, times SiLU(W_g x_t) (fla's FusedRMSNormGated, 'swish':
    the paper's output gate), then W_o. Values are expand_v = 2 times wider than keys (fla's default).
Difference from fla: heads come from head_dim (n_head = d_model // head_dim unless set); fla's default
sizes head count so that n_head · head_dim = 0.75 d_model (set n_head to match that exactly).

Glossary (code -> paper): see delta_layer.py; and
    A_log, dt_bias, a_proj   A, Δ-bias, the projection of Δ (Mamba-2)           α_t = exp(−A Δ_t)
    g_proj                   output gate projection
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.delta_layer import DeltaRuleMixer, GatedRMSNorm
from archbench.archs.ops.common import a_log_uniform, dt_bias_init


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K per head
    n_head: int = 0  # 0: d_model // head_dim
    expand_v: float = 2.0  # V = head_dim * expand_v (fla's default 2)
    d_conv: int = 4  # short causal conv width on q, k, v
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    # The output gate SiLU(W_g x) (the paper's); "sigmoid" gates as KDA does (fla's FusedRMSNormGated
    # takes either activation); "none" drops it (the norm alone, as DeltaNet's output). The last two are
    # ablations, to tell the gate's part in a result from the decay's.
    output_gate: str = "swish"
    # A learned bias on the output gate's input, initialised to this value (0: none, the published
    # layer): a positive one starts the SiLU gate open and of one sign for every token, the activation
    # kept — the test of whether the sigmoid gate learns because it starts open.
    gate_bias: float = 0.0

    def __post_init__(self):
        if not math.isfinite(self.gate_bias):
            raise ValueError(f"gated_deltanet: gate_bias must be a finite number, got {self.gate_bias!r}")
        if self.gate_bias and self.output_gate == "none":
            raise ValueError("gated_deltanet: gate_bias needs an output gate (output_gate swish or sigmoid)")
        if self.output_gate not in GATE_ACTIVATIONS:
            raise ValueError(f"gated_deltanet: output_gate must be one of {', '.join(GATE_ACTIVATIONS)}, "
                             f"got {self.output_gate!r}")


GATE_ACTIVATIONS = {"swish": "silu", "sigmoid": "sigmoid", "none": None}  # output_gate -> GatedRMSNorm's


@register("gated_deltanet")
class GatedDeltaNet(DeltaRuleMixer):
    Config = Config
    decay = "scalar"
    chunk_size = 64
    conformance_configs = ({"head_dim": 8, "expand_v": 1.0}, {"output_gate": "none"}, {"gate_bias": 1.0})

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        H = self.n_head
        self.a_proj = nn.Linear(d_model, H, bias=False)
        self.A_log = nn.Parameter(a_log_uniform(H, 0, 16))  # A = exp(A_log) uniform in (0, 16), as fla
        self.dt_bias = nn.Parameter(dt_bias_init(H, cfg.dt_min, cfg.dt_max))
        activation = GATE_ACTIVATIONS[cfg.output_gate]
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if activation else None
        self.o_norm = GatedRMSNorm(self.head_v_dim, eps=1e-5, activation=activation)
        # its own parameter, not g_proj's bias, so an initialisation that zeroes Linear biases keeps it
        self.g_bias = nn.Parameter(torch.full((self.value_dim,), cfg.gate_bias)) if cfg.gate_bias else None

    def _decay(self, x: Tensor) -> Tensor:
        return -self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)  # (B, T, H) log α <= 0

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        if self.g_proj is None:
            return self.o_proj(self.o_norm(o).flatten(-2))  # (B, T, D)
        gate = self.g_proj(x) if self.g_bias is None else self.g_proj(x) + self.g_bias
        gate = gate.unflatten(-1, (self.n_head, self.head_v_dim))  # (B, T, H, V)
        return self.o_proj(self.o_norm(o, gate).flatten(-2))  # (B, T, D)

    def _gate_flops(self, seq_len: int) -> int:
        gate = self.value_dim if self.g_proj is not None else 0
        return 2 * seq_len * self.d_model * (self.n_head + gate)  # a_proj, g_proj
