"""RetNet: multi-scale retention, linear attention with a fixed decay per head (Sun, Dong, Huang, Ma, Xia,
Xue, Wang, Wei 2023, "Retentive Network: A Successor to Transformer for Large Language Models",
arXiv 2307.08621).

The layer as flash-linear-attention's `MultiScaleRetention` builds it at its defaults (8 heads, key width
D, value width 2D, no short convolution, no feature map). Per head h, with row vectors:
    q_n = (x_n W_Q) ⊙ Θ_n,  k_n = (x_n W_K) ⊙ Θ̄_n,  v_n = x_n W_V   (eq. 5; Θ_n = e^{inθ}: rotary positions)
    S_n = γ_h S_{n-1} + k_nᵀ v_n,   o_n = (q_n / √d_k) S_n                        (eq. 6, recurrent form)
    γ_h = 1 - 2^(-5-h),  h = 0 .. H-1                                             (eq. 8)
    y_n = (swish(x_n W_G) ⊙ Norm_h(o_n)) W_O                                       (eq. 8)
`forward` uses the chunked form (eq. 7) through the shared diagonal-decay op; `step` runs eq. 6.

Choices, each as in fla's layer: the rotation Θ is rotary embedding (RoPE, base 10000) over the whole
key width in the half-split layout (feature j is paired with j + d_k/2; archs/ops/rope.py); the per-head
GroupNorm of eq. 8 is an RMSNorm per head (fla's fused `g_norm_swish_gate`, called `g_norm` here); the
scale is 1/√d_k.
Left out: the paper's retention-score normalisations (§2.2), which a per-head norm cancels up to eps.

Glossary (code -> paper):
    B, T, D         batch, tokens, d_model
    H, K, V         heads, key width per head (d_k), value width per head (d_v = 2 d_k by default)
    q, k, v         (B, T, H, K / V) rotated query and key, value                     Q, K, V
    log_gamma       (H,) log γ_h                                                       γ
    g               (B, T, H*V) output gate pre-activation                             X W_G
    S               (B, H, K, V) state                                                 S_n
    pos             () position of the next token (rotary phase)                       n
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
    FLA_RETENTION,
    gated_linear_chunked,
    gated_linear_flops,
    gated_linear_update,
)
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
class RetNet(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA_RETENTION}
    chunk_size = 64
    conformance_configs = ({"n_head": 2, "expand_v": 1.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        key_dim, value_dim = int(d_model * cfg.expand_k), int(d_model * cfg.expand_v)
        if key_dim % (2 * cfg.n_head) or value_dim % cfg.n_head or not key_dim:
            raise ValueError(f"retnet: key width {key_dim} (d_model * expand_k) must be a positive multiple "
                             f"of 2 * n_head={2 * cfg.n_head}, value width {value_dim} a multiple of n_head")
        self.n_head, self.head_k, self.head_v = cfg.n_head, key_dim // cfg.n_head, value_dim // cfg.n_head
        self.scale = self.head_k ** -0.5
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.g_proj = nn.Linear(d_model, value_dim, bias=False)
        self.g_norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _heads(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, T, D) at positions pos (T,) -> rotated q, k (B, T, H, K), v (B, T, H, V), gate g."""
        H = self.n_head
        # one phase per position for every head: (T, 1, K/2); the half-split pairing of fla's rotary
        rotation = rope_rotation(pos, self.head_k, self.cfg.rope_base, x.dtype)[:, None]
        q = rope(self.q_proj(x).unflatten(-1, (H, -1)), rotation, interleaved=False)
        k = rope(self.k_proj(x).unflatten(-1, (H, -1)), rotation, interleaved=False)
        return q, k, self.v_proj(x).unflatten(-1, (H, -1)), self.g_proj(x)

    def _output(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """o (..., H, V) -> per-head RMSNorm, swish gate, output projection -> (..., D)."""
        return self.o_proj((self.g_norm(o) * F.silu(g.unflatten(-1, (self.n_head, -1)))).flatten(-2))

    def _chunked(self, x: torch.Tensor, carry: tuple[torch.Tensor | None, int]):
        """The reference path over x (B, T, D) from carry = (state S or None, position of x's first token):
        y and the carry after x."""
        S, start = carry
        q, k, v, g = self._heads(x, torch.arange(start, start + x.shape[1], device=x.device))
        decay = log_gamma(self.n_head, state_dtype(x.dtype), x.device)
        o, S = gated_linear_chunked(q, k, v, decay, self.scale, self.chunk_size, initial_state=S)
        return self._output(o.to(x.dtype), g), (S, start + x.shape[1])

    def _parallel(self, x: torch.Tensor, want_state: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if pick_backend(self, x) == "fla":  # the reference where fla cannot serve this call
            q, k, v, g = self._heads(x, torch.arange(x.shape[1], device=x.device))
            # fla: (B, T, H, ·) layout; it derives the same γ_h = 1 - 2^(-5-h) from the head count.
            o, S = FLA_RETENTION(q=q, k=k, v=v, scale=self.scale, output_final_state=want_state)
            return self._output(o.to(x.dtype), g), S
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`)
        width = self.q_proj.out_features * 2 + self.v_proj.out_features * 2  # q, k; v, g
        length = segment_length(x.shape[0], width, self.chunk_size)
        y, (S, _) = in_segments(self._chunked, x, (None, 0), length)
        return y, S

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, S = self._parallel(x, want_state=True)
        pos = torch.full((), x.shape[1], device=x.device, dtype=torch.long)
        return y, {"S": S.to(state_dtype(x.dtype)).contiguous(), "pos": pos}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        # `pos` is a tensor, not an int, so a captured CUDA graph can replay the step at any position.
        return {"S": torch.zeros(batch, self.n_head, self.head_k, self.head_v, device=device,
                                 dtype=state_dtype(dtype)),
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        S, pos = state["S"], state["pos"]
        q, k, v, g = (t[:, 0] for t in self._heads(x_t[:, None], pos.view(1)))  # (B, H, ·)
        decay = log_gamma(self.n_head, S.dtype, S.device)
        o, S_new = gated_linear_update(S, *(t.to(S.dtype) for t in (q, k, v)), decay, self.scale)
        S.copy_(S_new)  # in place, like `pos`, so a captured CUDA graph can replay the step
        pos.add_(1)
        return self._output(o.to(x_t.dtype), g), state

    def flops(self, seq_len: int) -> int:
        T, D = seq_len, self.d_model
        key_dim, value_dim = self.n_head * self.head_k, self.n_head * self.head_v
        proj = 2 * T * D * (2 * key_dim + 2 * value_dim) + 2 * T * value_dim * D  # q, k, v, g; o
        return proj + gated_linear_flops(T, self.n_head, self.head_k, self.head_v, self.chunk_size)
