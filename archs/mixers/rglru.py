"""The recurrent block of Griffin and Hawk: a temporal conv and the RG-LRU, gated by a GeLU branch.

De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models" (arXiv 2402.19427), §2.4; RecurrentGemma (arXiv 2404.07839) is the released model, and the block
is checked against transformers' `RecurrentGemmaRecurrentBlock` and `RecurrentGemmaRglru`
(models/recurrent_gemma/modeling_recurrent_gemma.py). Two branches from the block input u:

    y   = GeLU(W_y u + b_y)                                     the gate branch (tanh GeLU, as released)
    x   = Conv_4(W_x u + b_x)                                   causal depthwise conv with a bias
    r_t = σ(x_t W_a + b_a),  i_t = σ(x_t W_i + b_i)             block-diagonal weights, one block per head
    log a_t = c r_t log σ(Λ),  c = 8
    h_t = a_t ⊙ h_{t-1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)          the RG-LRU (archs/ops/rglru.py)
    out = W_o (h ⊙ y) + b_o

A diagonal recurrence: one number per channel, no matrix state, the opposite end of the state axis from
the delta rule. Widths: the RG-LRU runs on expand · D channels (RecurrentGemma: lru_width = hidden size,
expand 1; the Griffin paper: 4/3), its gates in blocks of head_dim channels. The decode state is h in
float32 (as RecurrentGemma keeps it) and the conv's last d_conv − 1 inputs.

Initialisation: σ(Λ) in [0.9, 0.999] with σ(Λ)² uniform (RecurrentGemma's `rnn_param_init`, the LRU's
ring); gate biases zero; the other weights PyTorch's defaults.

Simplifications, against RecurrentGemma: no document reset (its first token of a document enters without
the normaliser and with a = 0; here a zero state is the start, every token normalised, so prefill then
step equals one pass exactly); the normaliser's derivative is bounded at 1000 as RecurrentGemma's
(archs/ops/rglru.py).

Backends: "chunked" (the op's chunked scan, linear in T, in cache-sized segments). No fused kernel is
wired in.

Glossary (code -> paper):
    B, T, D, W    batch, tokens, d_model, RG-LRU width (expand · D; D_RNN)
    H, P          gate blocks (W / head_dim) and their width (head_dim)
    x, y          recurrence branch after the conv, GeLU gate branch (B, T, W)
    r, i          recurrence and input gates (B, T, W)                          r_t, i_t
    lam           Λ (W,), a = σ(Λ)                                               Λ
    h             (B, W) state, y_t = h_t of the RG-LRU                          h_t
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import in_segments, segment_length, short_conv, state_dtype
from archbench.archs.ops.rglru import rglru_chunked, rglru_log_a, rglru_step


@dataclass(frozen=True)
class Config:
    expand: float = 1.0  # RG-LRU width W = expand * d_model (RecurrentGemma 1; Griffin paper 4/3)
    head_dim: int = 16  # width of each block of the block-diagonal gates
    d_conv: int = 4  # temporal conv width (RecurrentGemma's conv1d_width)
    a_min: float = 0.9  # σ(Λ) starts in [a_min, a_max], its square uniform
    a_max: float = 0.999


def ring_init(width: int, a_min: float, a_max: float) -> Tensor:
    """Λ with σ(Λ) in [a_min, a_max] and σ(Λ)² uniform (RecurrentGemma's `rnn_param_init`). (width,)"""
    a = torch.empty(width).uniform_(a_min ** 2, a_max ** 2).sqrt()
    return torch.log(a) - torch.log1p(-a)  # σ⁻¹(a)


@register("rglru")
class RGLRU(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("chunked",)
    chunk_size = 64  # Q of the op's chunked scan
    conformance_configs = ({"expand": 1.5, "head_dim": 8, "d_conv": 2},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        width = cfg.expand * d_model
        if width != int(width) or int(width) % cfg.head_dim or width < 1:
            raise ValueError(f"rglru: expand * d_model = {width} must be a positive whole multiple of "
                             f"head_dim={cfg.head_dim}")
        if cfg.d_conv < 1 or not 0 < cfg.a_min < cfg.a_max < 1:
            raise ValueError(f"rglru: need d_conv >= 1 and 0 < a_min < a_max < 1, got {cfg.d_conv}, "
                             f"{cfg.a_min}, {cfg.a_max}")
        W, P = int(width), cfg.head_dim
        self.width, self.n_head = W, W // P
        self.linear_y = nn.Linear(d_model, W)
        self.linear_x = nn.Linear(d_model, W)
        self.conv = nn.Conv1d(W, W, cfg.d_conv, groups=W)
        bound = 1 / math.sqrt(P)  # nn.Linear's default init, per block
        self.gate_weight = nn.Parameter(torch.empty(2, self.n_head, P, P).uniform_(-bound, bound))  # W_a, W_i
        self.gate_bias = nn.Parameter(torch.zeros(2, self.n_head, P))
        self.lam = nn.Parameter(ring_init(W, cfg.a_min, cfg.a_max))
        self.linear_out = nn.Linear(W, d_model)

    # -- pieces shared by the two modes -----------------------------------------------------------------
    def _gates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t and the gated input i_t ⊙ x_t from the conv output x (..., W)."""
        xb = x.unflatten(-1, (self.n_head, self.cfg.head_dim))  # (..., H, P)
        bias = self.gate_bias.view(2, *(1,) * (xb.dim() - 2), self.n_head, self.cfg.head_dim)
        pre = torch.einsum("...hp,ghpq->g...hq", xb, self.gate_weight) + bias  # (2, ..., H, P): W_a, W_i
        r, i = pre.sigmoid().flatten(-2).unbind(0)  # (..., W) each
        return rglru_log_a(r, self.lam), i * x

    def _segment(self, u: Tensor, carry: tuple[Tensor | None, Tensor | None]) -> tuple[Tensor, tuple]:
        """u (B, S, D) after carry = (conv inputs (B, d_conv − 1, W) or None, h (B, W) or None): the
        block's output (B, S, D) and the carry after u."""
        history, h = carry
        y = F.gelu(self.linear_y(u), approximate="tanh")
        window, x = short_conv(self.conv, self.linear_x(u), history)  # (B, S, W)
        log_a, gated = self._gates(x)
        sd = state_dtype(u.dtype)
        h_seq, h = rglru_chunked(gated.to(sd), log_a.to(sd), h, self.chunk_size)
        carry = (window[:, window.shape[1] - (self.cfg.d_conv - 1):], h)
        return self.linear_out(h_seq.to(u.dtype) * y), carry

    def _parallel(self, u: Tensor) -> tuple[Tensor, State]:
        pick_backend(self, u)
        # cache-sized segments of whole chunks, the states carried across (common.py, `segment_length`):
        # the widest activations are the two branches, the conv window, the gates and the scan
        length = segment_length(u.shape[0], 6 * self.width, self.chunk_size)
        y, (history, h) = in_segments(self._segment, u, (None, None), length)
        return y, {"conv": history.contiguous(), "h": h}

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x)[0]

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        return self._parallel(x)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        # Fixed-size: the conv's last inputs and one number per channel, whatever max_len is.
        return {"conv": torch.zeros(batch, self.cfg.d_conv - 1, self.width, device=device, dtype=dtype),
                "h": torch.zeros(batch, self.width, device=device, dtype=state_dtype(dtype))}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        y = F.gelu(self.linear_y(x_t), approximate="tanh")  # (B, W)
        window = torch.cat([state["conv"], self.linear_x(x_t).unsqueeze(1)], 1)  # (B, d_conv, W)
        # the conv's one output as a weighted sum over its window (F.conv1d's fixed cost per call dwarfs a
        # one-token conv on a CPU; see delta_layer.py)
        x = (window * self.conv.weight[:, 0].T).sum(1) + self.conv.bias
        log_a, gated = self._gates(x)
        h = state["h"]
        h_new, _ = rglru_step(gated.to(h.dtype), log_a.to(h.dtype), h)
        h.copy_(h_new)  # in place, so a captured CUDA graph can replay the step
        state["conv"].copy_(window[:, 1:])
        return self.linear_out(h_new.to(x_t.dtype) * y), state

    def flops(self, seq_len: int) -> int:
        """The three projections, the conv, the two block-diagonal gates, and the recurrence (about ten
        elementwise operations per channel and token: the decay, the normaliser, the update)."""
        T, D, W, P = seq_len, self.d_model, self.width, self.cfg.head_dim
        return 2 * T * D * W * 3 + 2 * T * W * self.cfg.d_conv + 2 * 2 * T * W * P + 10 * T * W
