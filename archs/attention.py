"""Causal multi-head softmax attention with rotary positions (Vaswani et al. 2017; RoPE: Su et al. 2021).

The O(n²) baseline every recurrent mixer is measured against. Parallel mode is one call of torch's
`scaled_dot_product_attention` (which picks flash / memory-efficient / cuDNN / math kernels) or the
explicit `naive` path that materialises the (T, T) score matrix — the O(n²)-memory reference.
Recurrent mode is decoding against a KV cache preallocated for `max_len` tokens, so its state grows
linearly with context, unlike the fixed-size states of the recurrent mixers.

Glossary (code -> paper):
    B batch, T sequence length (n), D d_model, H n_head, hd head_dim (d_k)
    q, k, v    queries, keys, values, (B, H, T, hd)
    rope       rotation of each (even, odd) feature pair by angle pos * base^(-2i/hd) (archs/ops/rope.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs import register
from archbench.archs.base import Mixer
from archbench.archs.ops.common import short_conv
from archbench.archs.ops.rope import rope, rope_rotation

# Backends that force one SDPA kernel instead of letting torch pick; all need CUDA.
_SDPA_KERNELS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # n_head = d_model // head_dim
    rope_base: float = 10000.0
    # Width of an optional causal depthwise convolution before the q/k/v projections (0 = none).
    # Zoology (Arora et al. 2023) pairs every mixer with such a short conv on its recall tasks; the
    # recurrent mixers here carry one already (Mamba's conv1d, RWKV's token shift).
    d_conv: int = 0


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √hd + mask) v with the full score matrix held in memory; mask is True where allowed."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v  # (B, H, Tq, hd)


@register("attention")
class Attention(Mixer):
    Config = Config
    complexity = "quadratic"
    backends = ("sdpa", "flash", "cudnn", "efficient", "naive")
    conformance_configs = ({"head_dim": 8, "d_conv": 4},)  # narrower heads, with the short conv

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if d_model % cfg.head_dim or cfg.head_dim % 2:
            raise ValueError(f"d_model ({d_model}) must be a multiple of an even head_dim ({cfg.head_dim})")
        self.n_head = d_model // cfg.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, cfg.d_conv, groups=d_model) if cfg.d_conv else None

    @classmethod
    def backend_unavailable(cls, backend: str, device) -> str | None:
        if backend in _SDPA_KERNELS and torch.device(device).type != "cuda":
            return f"the {backend} SDPA kernel needs a CUDA device"
        return None

    def _heads(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T, D) at positions pos (T,) -> rotated q, k and v, each (B, H, T, hd)."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = rope(qkv[:2], rope_rotation(pos, self.cfg.head_dim, self.cfg.rope_base, x.dtype))
        return q, k, qkv[2]

    def _attend(self, q, k, v, backend: str) -> torch.Tensor:
        if backend == "naive":
            T = q.shape[-2]
            return naive_attention(q, k, v, torch.ones(T, T, dtype=torch.bool, device=q.device).tril())
        if backend in _SDPA_KERNELS:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(getattr(SDPBackend, _SDPA_KERNELS[backend])):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x.device)
        self.last_backend = backend
        B, T, D = x.shape
        if self.conv is not None:
            x = short_conv(self.conv, x, None)[1]
        q, k, v = self._heads(x, torch.arange(T, device=x.device))
        y = self._attend(q, k, v, backend)  # (B, H, T, hd)
        return self.out(y.transpose(1, 2).reshape(B, T, D))

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        shape = (batch, self.n_head, max_len, self.cfg.head_dim)
        # `pos` is a tensor, not an int, so a captured CUDA graph can replay the step at any position.
        state = {"k": torch.zeros(shape, device=device, dtype=dtype),
                 "v": torch.zeros(shape, device=device, dtype=dtype),
                 "pos": torch.zeros((), device=device, dtype=torch.long)}
        if self.conv is not None:
            state["conv"] = torch.zeros(batch, self.cfg.d_conv - 1, self.d_model, device=device, dtype=dtype)
        return state

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        B, D = x_t.shape
        pos = state["pos"]
        x_t = x_t[:, None]  # (B, 1, D)
        if self.conv is not None:
            window, x_t = short_conv(self.conv, x_t, state["conv"])
            state["conv"].copy_(window[:, 1:])  # in place, for CUDA-graph replay
        q, k, v = self._heads(x_t, pos.view(1))  # each (B, H, 1, hd)
        state["k"].index_copy_(2, pos.view(1), k)
        state["v"].index_copy_(2, pos.view(1), v)
        allowed = (torch.arange(state["k"].shape[2], device=x_t.device) <= pos)[None]  # (1, max_len)
        if self.resolve_backend(x_t.device) == "naive":
            y = naive_attention(q, state["k"], state["v"], allowed)
        else:
            y = F.scaled_dot_product_attention(q, state["k"], state["v"], attn_mask=allowed)
        state["pos"] = pos + 1
        return self.out(y.reshape(B, D)), state

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        B, T, D = x.shape
        backend = self.resolve_backend(x.device)
        self.last_backend = backend
        state = self.init_state(B, max_len or T, device=x.device, dtype=x.dtype)
        if self.conv is not None:
            window, x = short_conv(self.conv, x, None)
            state["conv"].copy_(window[:, T:])
        q, k, v = self._heads(x, torch.arange(T, device=x.device))
        state["k"][:, :, :T] = k
        state["v"][:, :, :T] = v
        state["pos"].fill_(T)
        y = self._attend(q, k, v, backend)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), state

    def flops(self, seq_len: int) -> int:
        projections = 2 * seq_len * self.d_model * 4 * self.d_model  # qkv + out
        attention = 2 * seq_len * seq_len * self.d_model  # q kᵀ and p v, half of the T² pairs (causal)
        return projections + attention + 2 * seq_len * self.d_model * self.cfg.d_conv
