"""Gated short convolution: LFM2's convolution block (Liquid AI, 2025), the same idea as Zoology's BaseConv.

LFM2 (the model family "LFM2", Liquid AI 2025; its layer checked against transformers' `Lfm2ShortConv`,
models/lfm2/modular_lfm2.py) mixes tokens in 10 of its 16 layers with nothing but a causal depthwise
convolution of width 3 between two data-dependent gates, found by a hardware-in-the-loop search for CPU
and phone latency:

    B, C, x = split(W_in u)          one projection to 3 D, in that order (no bias)
    y       = C ⊙ conv_3(B ⊙ x)      depthwise, causal, no bias, no activation
    out     = W_out y                (no bias)

The recurrence (the convolution with its two gates) is archs/ops/short_conv.py; the state is the last
d_conv − 1 gated inputs B ⊙ x per channel, (B, d_conv − 1, D): the smallest state of any mixer here, and
one that cannot hold anything from further back than d_conv − 1 tokens. LFM2's cache holds d_conv
columns, the newest included; the state here is what a continuation needs.

Zoology's BaseConv (arXiv 2312.04927) is the same shape with other choices: no input gate, a conv bias,
Linear(u) as the output gate and its own residual (y = conv(u) ⊙ Linear(u) + u); archbench's Block adds
the residual, and this layer follows LFM2.

Backends: "parallel" (one causal depthwise convolution over the carried inputs and the new ones,
linear in T). No fused
kernel is wired in (transformers runs causal-conv1d's on CUDA): the layer's work is its projections, the
conv is W taps per channel.

Glossary (code -> paper):
    B, T, D     batch, tokens, d_model (LFM2's conv_dim = hidden_size)
    Bg, Cg, x   input gate, output gate, input (B, T, D)                      B, C, x
    W           conv width d_conv (LFM2's conv_L_cache, 3)
    conv        (B, W − 1, D) the last W − 1 gated inputs, oldest first
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import in_segments, segment_length
from archbench.archs.ops.short_conv import short_conv_parallel, short_conv_step


@dataclass(frozen=True)
class Config:
    d_conv: int = 3  # W, LFM2's conv_L_cache


@register("short_conv")
class ShortConv(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("parallel",)
    conformance_configs = ({"d_conv": 5},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if cfg.d_conv < 2:
            raise ValueError(f"short_conv: d_conv must be >= 2 (a width-1 conv mixes no tokens), got "
                             f"{cfg.d_conv}")
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, cfg.d_conv, groups=d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _gates(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.in_proj(u).chunk(3, -1)  # B, C, x: LFM2's order

    def _segment(self, u: Tensor, conv: Tensor | None) -> tuple[Tensor, Tensor]:
        Bg, Cg, x = self._gates(u)
        y, conv = short_conv_parallel(x, self.conv.weight[:, 0], Bg, Cg, None, conv)  # (B, T, D)
        return self.out_proj(y), conv

    def _parallel(self, u: Tensor, conv: Tensor | None) -> tuple[Tensor, Tensor]:
        pick_backend(self, u)
        # In cache-sized segments carrying the conv's last inputs (`segment_length` says why): on a whole
        # long sequence every activation here is a fresh mapping past the caches.
        return in_segments(self._segment, u, conv, segment_length(u.shape[0], self.in_proj.out_features, 64))

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, None)[0]

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        y, conv = self._parallel(x, None)
        return y, {"conv": conv.contiguous()}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        # Fixed-size: the last W − 1 gated inputs, whatever max_len is.
        return {"conv": torch.zeros(batch, self.cfg.d_conv - 1, self.d_model, device=device, dtype=dtype)}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        Bg, Cg, x = self._gates(x_t)  # (B, D) each
        y, conv = short_conv_step(x, self.conv.weight[:, 0], Bg, Cg, None, state["conv"])
        state["conv"].copy_(conv)  # in place, so a captured CUDA graph can replay the step
        return self.out_proj(y), state

    def flops(self, seq_len: int) -> int:
        """in_proj (3 D outputs), the two gates, the conv (W taps), out_proj."""
        T, D, W = seq_len, self.d_model, self.cfg.d_conv
        return 2 * T * D * 3 * D + 2 * T * D + 2 * T * D * W + 2 * T * D * D
