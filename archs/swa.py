"""Sliding-window attention: causal softmax attention over the last `window` tokens, with rotary positions.

Mistral 7B (Jiang et al. 2023, arXiv 2310.06825, §2: each token attends to at most W tokens of the layer
below); used as the only attention of Samba (Ren et al. 2024, arXiv 2406.07522, w = 2048) and in 5 of 6
layers of Gemma 3 (arXiv 2503.19786). Apart from the window, the layer is archs/attention.py's: fused
q/k/v projection without bias, RoPE on q and k (Su et al. 2021), scale 1/√head_dim, output projection,
and the same optional short causal conv before the projections (`d_conv`, 0 = none).

Cost is O(T·w): linear in T for a fixed window (`complexity = "linear"`). The parallel path is the banded
form of archs/ops/sliding_window.py (blocks of queries against their own and the w - 1 earlier keys;
never a (T, T) mask). The decode state is a KV cache of exactly min(w, max_len) slots used as a ring
buffer (token at position p lives in slot p mod w), so `state_bytes` stops growing once T >= w. Keys are
stored already rotated at their absolute positions, and softmax does not care about slot order, so the
ring needs no reordering.

Backends: "flash_attn" (FlashAttention-2's `flash_attn_func(..., causal=True, window_size=(w - 1, 0))`,
CUDA with fp16/bf16 only; float32/float64 inputs fall back to "banded" and say so in `last_backend`,
through archs/ops/common.py's `pick_backend`),
"banded" (the reference: SDPA per block with the band mask; it runs on any device).

Glossary (code -> paper):
    B batch, T sequence length, D d_model, H n_head, hd head_dim
    w          window (W in Mistral): keys a query sees, itself included
    q, k, v    queries, keys, values (B, H, T, hd)
    ring       KV cache of w slots: k, v (B, H, w, hd) and the next position `pos`
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs import register
from archbench.archs.base import Mixer
from archbench.archs.ops.common import Kernel, pick_backend, short_conv
from archbench.archs.ops.rope import rope, rope_rotation
from archbench.archs.ops.sliding_window import sliding_window_banded

# FlashAttention-2's kernels are built for fp16 / bf16 only: float32 and float64 run the banded path.
_FLASH = Kernel("flash_attn", "flash_attn_func", "flash-attn", dtypes=(torch.float16, torch.bfloat16))


@dataclass(frozen=True)
class Config:
    window: int = 64  # w: keys each query attends to, itself included
    head_dim: int = 16  # n_head = d_model // head_dim
    rope_base: float = 10000.0
    d_conv: int = 0  # optional causal depthwise conv before the projections, as in attention (0 = none)


@register("swa")
class SlidingWindowAttention(Mixer):
    Config = Config
    complexity = "linear"  # O(T·w)
    backends = ("flash_attn", "banded")
    kernels = {"flash_attn": _FLASH}
    chunk_size = 64  # the query block of the banded path is max(chunk_size, window)
    conformance_configs = ({"window": 5, "head_dim": 8},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if d_model % cfg.head_dim or cfg.head_dim % 2:
            raise ValueError(f"d_model ({d_model}) must be a multiple of an even head_dim ({cfg.head_dim})")
        if cfg.window < 1:
            raise ValueError(f"window must be >= 1, got {cfg.window}")
        self.n_head = d_model // cfg.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, cfg.d_conv, groups=d_model) if cfg.d_conv else None

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _heads(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T, D) at positions pos (T,) -> rotated q, k and v, each (B, H, T, hd)."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = rope(qkv[:2], rope_rotation(pos, self.cfg.head_dim, self.cfg.rope_base, x.dtype))
        return q, k, qkv[2]

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if pick_backend(self, q) == "flash_attn":
            # flash-attn takes (B, T, H, hd); window_size=(left, right) keys around each query.
            y = _FLASH(*(t.transpose(1, 2) for t in (q, k, v)), causal=True,
                       window_size=(self.cfg.window - 1, 0))
            return y.transpose(1, 2)
        return sliding_window_banded(q, k, v, self.cfg.window, self.chunk_size)  # (B, H, T, hd)

    def _parallel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Output (B, T, D), the conv's input window, and the rotated k and v (B, H, T, hd)."""
        B, T, D = x.shape
        window = None
        if self.conv is not None:
            window, x = short_conv(self.conv, x, None)
        q, k, v = self._heads(x, torch.arange(T, device=x.device))
        y = self._attend(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), window, k, v

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x)[0]

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        slots = min(self.cfg.window, max_len)  # a shorter sequence never fills the window
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
        kept = torch.arange(max(0, T - slots), T, device=x.device)  # the last min(T, w) positions
        state["k"].index_copy_(2, kept % slots, k[:, :, kept])
        state["v"].index_copy_(2, kept % slots, v[:, :, kept])
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
        slot = (pos % slots).view(1)  # the oldest token's slot once the ring is full
        state["k"].index_copy_(2, slot, k)
        state["v"].index_copy_(2, slot, v)
        filled = torch.arange(slots, device=x_t.device) <= pos  # (slots,): all True once pos >= w - 1
        y = F.scaled_dot_product_attention(q, state["k"], state["v"], attn_mask=filled[None])
        state["pos"].add_(1)
        return self.out(y.reshape(B, D)), state

    def flops(self, seq_len: int) -> int:
        T, w, D = seq_len, self.cfg.window, self.d_model
        pairs = (min(T, w) * (min(T, w) + 1)) // 2 + max(0, T - w) * w  # (query, key) pairs in the band
        projections = 2 * T * D * 4 * D  # qkv + out
        return projections + 2 * 2 * pairs * D + 2 * T * D * self.cfg.d_conv  # q kᵀ and p v per pair
