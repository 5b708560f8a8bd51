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

Glossary (code -> paper):
    B, T, D         batch, tokens, d_model
    H, K, V         heads, key width per head (d_k), value width per head (d_v)
    q, k, v         (B, T, H, K / V) query, key, value                       q_t, k_t, v_t
    gk              (B, T, H, K) log forget gate logsigmoid(·) / τ           log α_t
    g               (B, T, H*V) output gate pre-activation                   x_t W_r
    S               (B, H, K, V) state                                       S_t
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs import register
from archbench.archs.base import Mixer
from archbench.archs.ops.common import in_segments, pick_backend, segment_length, state_dtype
from archbench.archs.ops.gated_linear import (
    FLA_GLA,
    gated_linear_chunked,
    gated_linear_flops,
    gated_linear_update,
)


@dataclass(frozen=True)
class Config:
    n_head: int = 4  # H
    expand_k: float = 0.5  # key width H*K = expand_k * d_model
    expand_v: float = 1.0  # value width H*V = expand_v * d_model
    gate_low_rank_dim: int = 16  # rank of the gate projection W_α1 W_α2
    gate_logit_normalizer: int = 16  # τ: log α = logsigmoid(·) / τ
    norm_eps: float = 1e-5


@register("gla")
class GLA(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA_GLA}
    chunk_size = 64
    conformance_configs = ({"n_head": 2, "expand_k": 1.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        key_dim, value_dim = int(d_model * cfg.expand_k), int(d_model * cfg.expand_v)
        if key_dim % cfg.n_head or value_dim % cfg.n_head or not key_dim:
            raise ValueError(f"gla: key width {key_dim} and value width {value_dim} (d_model * expand_k, "
                             f"d_model * expand_v) must be positive multiples of n_head={cfg.n_head}")
        self.n_head, self.head_k, self.head_v = cfg.n_head, key_dim // cfg.n_head, value_dim // cfg.n_head
        self.scale = self.head_k ** -0.5
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.g_proj = nn.Linear(d_model, value_dim, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, cfg.gate_low_rank_dim, bias=False),
                                     nn.Linear(cfg.gate_low_rank_dim, key_dim, bias=True))
        self.g_norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (..., D) -> q, k (..., H, K), v (..., H, V), log gate gk (..., H, K), gate g (..., H*V)."""
        H = self.n_head
        q, k = self.q_proj(x).unflatten(-1, (H, -1)), self.k_proj(x).unflatten(-1, (H, -1))
        gk = F.logsigmoid(self.gk_proj(x)).unflatten(-1, (H, -1)) / self.cfg.gate_logit_normalizer
        return q, k, self.v_proj(x).unflatten(-1, (H, -1)), gk, self.g_proj(x)

    def _output(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """o (..., H, V) -> per-head RMSNorm, swish gate, output projection -> (..., D)."""
        return self.o_proj((self.g_norm(o) * F.silu(g.unflatten(-1, (self.n_head, -1)))).flatten(-2))

    def _chunked(self, x: torch.Tensor, S: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference path over x (B, T, D) from the state S (None: zeros): y and the state after x."""
        q, k, v, gk, g = self._heads(x)  # (B, T, H, ·)
        o, S = gated_linear_chunked(q, k, v, gk, self.scale, self.chunk_size, initial_state=S)
        return self._output(o.to(x.dtype), g), S

    def _parallel(self, x: torch.Tensor, want_state: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if pick_backend(self, x) == "fla":  # the reference where fla cannot serve this call
            q, k, v, gk, g = self._heads(x)  # (B, T, H, ·)
            # fla: (B, T, H, ·) layout, g the log gate per key channel, state (B, H, K, V) in float32.
            o, S = FLA_GLA(q=q, k=k, v=v, g=gk, scale=self.scale, output_final_state=want_state)
            return self._output(o.to(x.dtype), g), S
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`)
        width = self.q_proj.out_features * 3 + self.v_proj.out_features * 2  # q, k, gk; v, g
        return in_segments(self._chunked, x, None, segment_length(x.shape[0], width, self.chunk_size))

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, S = self._parallel(x, want_state=True)
        return y, {"S": S.to(state_dtype(x.dtype)).contiguous()}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        return {"S": torch.zeros(batch, self.n_head, self.head_k, self.head_v, device=device,
                                 dtype=state_dtype(dtype))}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        S = state["S"]
        q, k, v, gk, g = self._heads(x_t)  # (B, H, ·)
        o, S_new = gated_linear_update(S, *(t.to(S.dtype) for t in (q, k, v, gk)), self.scale)
        S.copy_(S_new)  # in place, so a captured CUDA graph can replay the step
        return self._output(o.to(x_t.dtype), g), state

    def flops(self, seq_len: int) -> int:
        T, D = seq_len, self.d_model
        key_dim, value_dim = self.n_head * self.head_k, self.n_head * self.head_v
        r = self.cfg.gate_low_rank_dim
        proj = 2 * T * (D * (2 * key_dim + 2 * value_dim) + r * (D + key_dim) + value_dim * D)
        return proj + gated_linear_flops(T, self.n_head, self.head_k, self.head_v, self.chunk_size,
                                         per_channel=True)
