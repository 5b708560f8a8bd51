"""Sliding-window attention: causal softmax attention over the last `window` tokens, with rotary positions.

Mistral 7B (Jiang et al. 2023, arXiv 2310.06825, §2: each token attends to at most W tokens of the layer
below); used as the only attention of Samba (Ren et al. 2024, arXiv 2406.07522, w = 2048) and in 5 of 6
layers of Gemma 3 (arXiv 2503.19786). It is attention_layer.py's layer with a window, as fla's
`Attention(window_size=w)`: the same projections, RoPE, optional short conv (`d_conv`) and parameters as
"attention" (attention.py), the same layer without one. What the window changes lives there: the
parallel backends ("flash_attn" with `window_size=(w - 1, 0)`, or the banded reference of
archs/ops/sliding_window.py) and a decode cache of min(w, max_len) slots used as a ring, so
`state_bytes` stops growing once T >= w.

Cost is O(T·w): linear in T for a fixed window (`complexity = "linear"`).

Glossary: as attention_layer.py; w (`window`) = keys a query sees, itself included.
"""

from __future__ import annotations

from dataclasses import dataclass

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.attention_layer import FLASH_ATTN, AttentionLayer


@dataclass(frozen=True)
class Config:
    window: int = 64  # w: keys each query attends to, itself included
    head_dim: int = 16  # n_head = d_model // head_dim
    rope_base: float = 10000.0
    d_conv: int = 0  # optional causal depthwise conv before the projections, as in attention (0 = none)


@register("swa")
class SlidingWindowAttention(AttentionLayer):
    Config = Config
    complexity = "linear"  # O(T·w)
    backends = ("flash_attn", "banded")
    kernels = {"flash_attn": FLASH_ATTN}
    chunk_size = 64  # the query block of the banded path is max(chunk_size, window)
    conformance_configs = ({"window": 5, "head_dim": 8},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg, window=cfg.window)
