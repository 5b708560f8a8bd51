"""Causal multi-head softmax attention with rotary positions: the O(n²) baseline every recurrent mixer is
measured against.

Vaswani et al. 2017; RoPE: Su et al. 2021. Fused q/k/v projection without bias, RoPE on q and k, scale
1/√head_dim, output projection, and an optional short causal conv before the projections (`d_conv`,
0 = none). The layer is attention_layer.py's, shared with sliding-window attention (swa.py)
as flash-linear-attention shares one layer with a `window_size` option; this file is that layer without
a window: every earlier token, a KV cache of `max_len` slots that grows with context.

Backends: "sdpa" (torch's `scaled_dot_product_attention`, which picks flash / memory-efficient / cuDNN /
math kernels), "flash", "cudnn", "efficient" (one SDPA kernel forced, CUDA only), and "naive", the
(T, T)-score reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from archbench.archs.mixer_registry import register
from archbench.archs.mixers.attention_layer import AttentionLayer


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # n_head = d_model // head_dim
    rope_base: float = 10000.0
    # Width of an optional causal depthwise convolution before the q/k/v projections (0 = none).
    # Zoology (Arora et al. 2023) pairs every mixer with such a short conv on its recall tasks; the
    # recurrent mixers here carry one already (Mamba's conv1d, RWKV's token shift).
    d_conv: int = 0


@register("attention")
class Attention(AttentionLayer):
    Config = Config
    complexity = "quadratic"
    backends = ("sdpa", "flash", "cudnn", "efficient", "naive")
    conformance_configs = ({"head_dim": 8, "d_conv": 4},)  # narrower heads, with the short conv
