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

Glossary (code -> paper):
    B, T, D         batch, tokens, d_model
    H, K, V         heads, key width per head, value width per head
    q, k            (B, T, H, K) φ(query), φ(key)                       φ(Q_i), φ(K_i)
    v               (B, T, H, V) value                                  V_i
    S, z            (B, H, K, V), (B, H, K) state and normaliser        S_i, Z_i
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
    FLA_LINEAR_ATTN,
    gated_linear_chunked,
    gated_linear_flops,
    gated_linear_update,
)

_EPS = 1e-10  # added to the denominator, as fla does


@dataclass(frozen=True)
class Config:
    n_head: int = 8  # H
    expand_k: float = 1.0  # key width H*K = expand_k * d_model
    expand_v: float = 1.0  # value width H*V = expand_v * d_model
    norm_eps: float = 1e-5


def _feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1 > 0 (§3.2.1), so the denominator is positive."""
    return F.elu(x) + 1


@register("linear_attention")
class LinearAttention(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA_LINEAR_ATTN}
    chunk_size = 64
    conformance_configs = ({"n_head": 2, "expand_v": 2.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        key_dim, value_dim = int(d_model * cfg.expand_k), int(d_model * cfg.expand_v)
        if key_dim % cfg.n_head or value_dim % cfg.n_head or not key_dim:
            raise ValueError(f"linear_attention: key width {key_dim} and value width {value_dim} "
                             f"(d_model * expand_k, d_model * expand_v) must be positive multiples of "
                             f"n_head={cfg.n_head}")
        self.n_head, self.head_k, self.head_v = cfg.n_head, key_dim // cfg.n_head, value_dim // cfg.n_head
        self.scale = self.head_k ** -0.5
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.norm = nn.RMSNorm(self.head_v, eps=cfg.norm_eps)
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (..., D) -> φ(q), φ(k) (..., H, K), v (..., H, V)."""
        H = self.n_head
        q, k = (_feature_map(p(x).unflatten(-1, (H, -1))) for p in (self.q_proj, self.k_proj))
        return q, k, self.v_proj(x).unflatten(-1, (H, -1))

    @staticmethod
    def _with_ones(v: torch.Tensor) -> torch.Tensor:
        """v (..., V) -> [v | 1] (..., V + 1): the extra column accumulates z."""
        return torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1)

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        """o (..., H, V + 1) = [numerator | denominator] -> normalise, RMSNorm per head, project."""
        o = o[..., :-1] / (o[..., -1:] + _EPS)
        return self.o_proj(self.norm(o).flatten(-2))

    def _chunked(self, x: torch.Tensor, Sz: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference path over x (B, T, D) from the state [S | z] (B, H, K, V + 1) or None (zeros)."""
        q, k, v = self._heads(x)  # (B, T, H, ·)
        o, Sz = gated_linear_chunked(q, k, self._with_ones(v), None, self.scale, self.chunk_size,
                                     initial_state=Sz)
        return self._output(o.to(x.dtype)), Sz

    def _parallel(self, x: torch.Tensor, want_state: bool) -> tuple[torch.Tensor, dict | None]:
        if pick_backend(self, x) == "fla":  # the reference where fla cannot serve this call
            q, k, v = self._heads(x)  # (B, T, H, ·)
            # fla divides by (scale q)·z + 1e-10 itself; its layout is (B, T, H, ·). Since fla 0.5.1 it
            # returns the state as (S (B, H, K, V), z (B, 1, H, K)), before that S alone (z = Σ_t k_t).
            o, state = FLA_LINEAR_ATTN(q=q, k=k, v=v, scale=self.scale, normalize=True,
                                       output_final_state=want_state)
            y = self.o_proj(self.norm(o.to(x.dtype)).flatten(-2))
            if not want_state:
                return y, None
            S, z = state if isinstance(state, tuple) else (state, k.sum(1, keepdim=True))
            return y, {"S": S, "z": z[:, 0]}
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`)
        width = self.q_proj.out_features * 2 + self.v_proj.out_features * 2  # q, k; v and its output
        y, S = in_segments(self._chunked, x, None, segment_length(x.shape[0], width, self.chunk_size))
        return y, {"S": S[..., :-1], "z": S[..., -1]}

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, state = self._parallel(x, want_state=True)
        return y, {name: t.to(state_dtype(x.dtype)).contiguous() for name, t in state.items()}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        H, K, cd = self.n_head, self.head_k, state_dtype(dtype)
        return {"S": torch.zeros(batch, H, K, self.head_v, device=device, dtype=cd),
                "z": torch.zeros(batch, H, K, device=device, dtype=cd)}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        S, z = state["S"], state["z"]
        q, k, v = (t.to(S.dtype) for t in self._heads(x_t))  # (B, H, ·)
        o, Sz = gated_linear_update(torch.cat([S, z[..., None]], -1), q, k, self._with_ones(v), None,
                                    self.scale)
        S.copy_(Sz[..., :-1])  # in place, so a captured CUDA graph can replay the step
        z.copy_(Sz[..., -1])
        return self._output(o.to(x_t.dtype)), state

    def flops(self, seq_len: int) -> int:
        T, D = seq_len, self.d_model
        key_dim, value_dim = self.n_head * self.head_k, self.n_head * self.head_v
        proj = 2 * T * D * (2 * key_dim + value_dim) + 2 * T * value_dim * D  # q, k, v; o
        # the normaliser is one more value column of the op
        return proj + gated_linear_flops(T, self.n_head, self.head_k, self.head_v + 1, self.chunk_size)
