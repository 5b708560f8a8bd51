"""The attention layer the "attention" and "swa" mixers share: causal multi-head softmax attention with
rotary positions over every earlier token (no window) or over the last w tokens, as one layer with a
window option — flash-linear-attention's `Attention(window_size=...)` (fla/layers/attn.py). The mixers
(attention.py, swa.py) each hold their Config, backends and registration; this file holds
the heads, the short conv, both parallel paths, the KV cache (a ring when windowed) and the FLOP count.

Parallel mode, full: one call of torch's `scaled_dot_product_attention` ("sdpa" lets it pick flash /
memory-efficient / cuDNN / math kernels; "flash", "cudnn", "efficient" force one, CUDA only) or "naive",
which materialises the (T, T) score matrix: the O(n²)-memory reference.
Parallel mode, windowed, O(T·w): "flash_attn" (FlashAttention-2's `flash_attn_func(..., causal=True,
window_size=(w - 1, 0))`, CUDA with fp16/bf16 only; other dtypes fall back to "banded" and say so in
`last_backend`, through archs/ops/common.py's `pick_backend`) or "banded", the reference: blocks of
queries against their own and the w - 1 earlier keys (archs/ops/sliding_window.py), never a (T, T) mask.

Recurrent mode decodes against a KV cache. Full: `max_len` slots, so the state grows linearly with
context, unlike the fixed-size states of the recurrent mixers. Windowed: min(w, max_len) slots used as a
ring (the token at position p lives in slot p mod w), so `state_bytes` stops growing once T >= w. Keys
are stored already rotated at their absolute positions, and softmax does not care about slot order, so
the ring needs no reordering.

Glossary (code -> paper):
    B batch, T sequence length (n), D d_model, H n_head, hd head_dim (d_k)
    w          window (W in Mistral): keys a query sees, itself included; None = every earlier token
    q, k, v    queries, keys, values, (B, H, T, hd)
    rope       rotation of each (even, odd) feature pair by angle pos * base^(-2i/hd) (archs/ops/rope.py)
    cache      k, v (B, H, slots, hd) and the next position `pos`
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs.backends import Kernel, pick_backend
from archbench.archs.base import Mixer
from archbench.archs.ops.common import short_conv
from archbench.archs.ops.rope import rope, rope_rotation
from archbench.archs.ops.sliding_window import band_mask, sliding_window_banded

# Backends that force one SDPA kernel instead of letting torch pick; all need CUDA.
_SDPA_KERNELS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
# FlashAttention-2's kernels are built for fp16 / bf16 only: float32 and float64 run the banded path.
FLASH_ATTN = Kernel("flash_attn", "flash_attn_func", "flash-attn", dtypes=(torch.float16, torch.bfloat16))


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √hd + mask) v with the full score matrix held in memory; mask is True where allowed."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v  # (B, H, Tq, hd)


class AttentionLayer(Mixer):
    """Not registered itself: "attention" and "swa" are this layer without and with a window. A subclass
    sets Config (with head_dim, rope_base and d_conv), complexity, backends and its kernels."""

    def __init__(self, d_model: int, cfg: Any, window: int | None = None):
        super().__init__(d_model, cfg)
        if d_model % cfg.head_dim or cfg.head_dim % 2:
            raise ValueError(f"d_model ({d_model}) must be a multiple of an even head_dim ({cfg.head_dim})")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window  # w, or None: every earlier token
        self.n_head = d_model // cfg.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, cfg.d_conv, groups=d_model) if cfg.d_conv else None

    @classmethod
    def backend_unavailable(cls, backend: str, device) -> str | None:
        if backend in _SDPA_KERNELS and torch.device(device).type != "cuda":
            return f"the {backend} SDPA kernel needs a CUDA device"
        return super().backend_unavailable(backend, device)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _heads(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T, D) at positions pos (T,) -> rotated q, k and v, each (B, H, T, hd)."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = rope(qkv[:2], rope_rotation(pos, self.cfg.head_dim, self.cfg.rope_base, x.dtype))
        return q, k, qkv[2]

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Each query over its causal window of keys (all earlier ones without a window); (B, H, T, hd)."""
        backend, T = pick_backend(self, q), q.shape[2]
        if backend == "naive":  # band_mask with w = T is the causal triangle
            return naive_attention(q, k, v, band_mask(T, T, self.window or T, q.device))
        if self.window is not None:  # the windowed layer's backends
            if backend == "flash_attn":  # flash-attn takes (B, T, H, hd); window_size=(left, right) keys
                y = FLASH_ATTN(*(t.transpose(1, 2) for t in (q, k, v)), causal=True,
                               window_size=(self.window - 1, 0))
                return y.transpose(1, 2)
            return sliding_window_banded(q, k, v, self.window, self.chunk_size)
        if backend in _SDPA_KERNELS:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(getattr(SDPBackend, _SDPA_KERNELS[backend])):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def _parallel(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Output (B, T, D), the conv's input window (None without a conv), and the rotated k and v."""
        B, T, D = x.shape
        window = None
        if self.conv is not None:
            window, x = short_conv(self.conv, x, None)
        q, k, v = self._heads(x, torch.arange(T, device=x.device))
        y = self._attend(q, k, v)  # (B, H, T, hd)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), window, k, v

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x)[0]

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        # A window keeps only its last w keys; a shorter sequence never fills it.
        slots = max_len if self.window is None else min(self.window, max_len)
        shape = (batch, self.n_head, slots, self.cfg.head_dim)
        # `pos` is a tensor, not an int, so a captured CUDA graph can replay the step at any position.
        state = {"k": torch.zeros(shape, device=device, dtype=dtype),
                 "v": torch.zeros(shape, device=device, dtype=dtype),
                 "pos": torch.zeros((), device=device, dtype=torch.long)}
        if self.conv is not None:
            state["conv"] = torch.zeros(batch, self.cfg.d_conv - 1, self.d_model, device=device, dtype=dtype)
        return state

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        B, T, _ = x.shape
        y, window, k, v = self._parallel(x)
        state = self.init_state(B, max(max_len or T, T), device=x.device, dtype=x.dtype)
        slots = state["k"].shape[2]
        if T <= slots:  # every position in its own slot (always, without a window)
            state["k"][:, :, :T] = k
            state["v"][:, :, :T] = v
        else:  # a full ring keeps the last w positions, position p in slot p mod w
            at = torch.arange(T - slots, T, device=x.device) % slots
            state["k"].index_copy_(2, at, k[:, :, T - slots:])
            state["v"].index_copy_(2, at, v[:, :, T - slots:])
        state["pos"].fill_(T)
        if self.conv is not None:
            state["conv"].copy_(window[:, T:])
        return y, state

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        B, D = x_t.shape
        pos = state["pos"]
        x_t = x_t[:, None]  # (B, 1, D)
        if self.conv is not None:
            window, x_t = short_conv(self.conv, x_t, state["conv"])
            state["conv"].copy_(window[:, 1:])  # in place, for CUDA-graph replay
        q, k, v = self._heads(x_t, pos.view(1))  # each (B, H, 1, hd)
        slots = state["k"].shape[2]
        # The full cache has a slot per position (one past max_len is an error, not a wrap); the ring
        # overwrites its oldest token once it is full.
        slot = pos.view(1) if self.window is None else (pos % slots).view(1)
        state["k"].index_copy_(2, slot, k)
        state["v"].index_copy_(2, slot, v)
        allowed = (torch.arange(slots, device=x_t.device) <= pos)[None]  # (1, slots): all True once full
        if self.backend == "naive":
            y = naive_attention(q, state["k"], state["v"], allowed)
        else:
            y = F.scaled_dot_product_attention(q, state["k"], state["v"], attn_mask=allowed)
        # A new tensor, not an in-place add: a timed functional decode step that never writes its new
        # leaves back stays at the same position however often it repeats (bench/experiments/decode.py).
        state["pos"] = pos + 1
        return self.out(y.reshape(B, D)), state

    def flops(self, seq_len: int) -> int:
        T, D = seq_len, self.d_model
        if self.window is None:
            attention = 2 * T * T * D  # q kᵀ and p v, half of the T² pairs (causal)
        else:
            w = self.window
            pairs = (min(T, w) * (min(T, w) + 1)) // 2 + max(0, T - w) * w  # (query, key) pairs in the band
            attention = 2 * 2 * pairs * D  # q kᵀ and p v per pair
        projections = 2 * T * D * 4 * D  # qkv + out
        return projections + attention + 2 * T * D * self.cfg.d_conv
