"""The block shared by the delta-rule layers (deltanet.py, gated_deltanet.py, kda.py, gated_deltaproduct.py).

They follow flash-linear-attention's layers (fla/layers/{delta_net,gated_deltanet,kda,gated_deltaproduct}.py)
and differ only in their decay, their output gate and the number of delta steps per token, so the
common path lives here once:

    q, k, v = SiLU(ShortConv(W_q x)), SiLU(ShortConv(W_k x)), SiLU(ShortConv(W_v x))   (causal, width 4)
    q, k    = q / ‖q‖, k / ‖k‖  per head                 (L2 norm, eps 1e-6 inside the root as in fla)
    β       = sigmoid(W_β x)                             (one write strength per head and token)
    g       = the layer's log decay (`_decay`): none, a scalar per head, or per channel
    o       = delta rule (archs/ops/delta_rule.py), scale d_k^-1/2 on q
    y       = W_o · the layer's per-head output norm and gate (`_output`)

A Config with `n_householder` = n > 1 (Gated DeltaProduct) gives each token n keys, values and write
strengths (W_k, W_v, W_β n times wider, fla's layout: the n steps outermost) and runs the delta-product op
(archs/ops/delta_product.py: n delta steps per token under one decay); without the field, n = 1 and the
delta-rule op runs, tensor for tensor as before.

Every projection has no bias and the convolutions have none (fla's defaults). The three short
convolutions are depthwise, so one conv over the concatenated [q, k, v] channels computes them; the
decode state keeps the last d_conv − 1 inputs of that conv and the (K, V) state of every head.

Glossary (code -> paper):
    B, T, D, H      batch, sequence length, d_model, heads
    K, V            key / value width per head (head_dim, head_dim * expand_v)    d_k, d_v
    n               delta steps per token (n_householder; 1 but for Gated DeltaProduct)  n_h
    C               conv channels H K + n (H K + H V); W the conv width (d_conv)
    beta, g         write strength, log decay                                       β, log α
    S               delta-rule state (B, H, K, V)                                   S
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.ops.common import depthwise_causal_conv, in_segments, segment_length, state_dtype
from archbench.archs.ops.delta_product import delta_product_chunked, delta_product_fla, delta_product_step
from archbench.archs.ops.delta_rule import FLA, delta_rule_chunked, delta_rule_fla, delta_rule_step


def l2_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(Σ x² + eps) over the last axis, as fla's l2norm."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


class GatedRMSNorm(nn.Module):
    """RMSNorm over each head's values with a weight, then (if `activation`) times act(gate): the norm
    comes first, then the gate, as fla's FusedRMSNormGated. activation None | "silu" | "sigmoid"."""

    def __init__(self, dim: int, eps: float = 1e-5, activation: str | None = None):
        super().__init__()
        self.eps, self.activation = eps, activation
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        y = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * self.weight
        if self.activation == "silu":
            y = y * F.silu(gate)
        elif self.activation == "sigmoid":
            y = y * torch.sigmoid(gate)
        return y


class DeltaRuleMixer(Mixer):
    """The delta-rule block; subclasses set `decay`, build their gate parameters, and define `_decay`,
    `_output` and `_gate_flops`. Config fields used here: head_dim, n_head (0: d_model // head_dim),
    expand_v, d_conv, and n_householder where the Config has it (1 otherwise)."""

    complexity = "linear"
    backends = ("fla", "chunked")
    decay: ClassVar[str] = "none"  # "none" | "scalar" | "vector": the kind of log decay `_decay` returns
    chunk_size: ClassVar[int] = 64

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kernels" not in cls.__dict__:  # fla's kernel for the subclass's kind of decay
            cls.kernels = {"fla": FLA[cls.decay]}

    def __init__(self, d_model: int, cfg: Any):
        super().__init__(d_model, cfg)
        if cfg.n_head == 0 and d_model % cfg.head_dim:
            raise ValueError(f"d_model={d_model} is not a multiple of head_dim={cfg.head_dim} "
                             f"(or set n_head)")
        head_v = cfg.head_dim * cfg.expand_v
        if head_v != int(head_v) or head_v < 1:
            raise ValueError(f"head_dim * expand_v = {head_v} is not a positive whole number")
        if cfg.d_conv < 1:
            raise ValueError(f"d_conv must be >= 1, got {cfg.d_conv}")
        self.n_steps = getattr(cfg, "n_householder", 1)  # n
        if self.n_steps < 1:
            raise ValueError(f"n_householder must be >= 1, got {self.n_steps}")
        self.n_head = cfg.n_head or d_model // cfg.head_dim
        self.head_k_dim, self.head_v_dim = cfg.head_dim, int(head_v)
        self.key_dim, self.value_dim = self.n_head * self.head_k_dim, self.n_head * self.head_v_dim
        n = self.n_steps
        self.conv_dim = self.key_dim + n * (self.key_dim + self.value_dim)  # C
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n * self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n * self.value_dim, bias=False)
        self.b_proj = nn.Linear(d_model, n * self.n_head, bias=False)
        self.q_conv1d, self.k_conv1d, self.v_conv1d = (
            nn.Conv1d(c, c, cfg.d_conv, groups=c, bias=False) for c in (self.key_dim, n * self.key_dim,
                                                                         n * self.value_dim))
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)

    # -- what the subclasses define -------------------------------------------------------------------
    def _decay(self, x: Tensor) -> Tensor | None:
        """Log decay from the block input x (B, T, D): None, (B, T, H) or (B, T, H, K)."""
        return None

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Delta-rule output o (B, T, H, V) and block input x (B, T, D) -> (B, T, D)."""
        raise NotImplementedError

    def _gate_flops(self, seq_len: int) -> int:
        """FLOPs of the layer's own decay and gate projections."""
        return 0

    def _beta(self, x: Tensor) -> Tensor:
        """Write strengths σ(W_β x): (B, T, H), or (B, T, n, H) with n delta steps per token."""
        beta = torch.sigmoid(self.b_proj(x))
        return beta if self.n_steps == 1 else beta.unflatten(-1, (self.n_steps, self.n_head))

    # -- pieces shared by the two modes -------------------------------------------------------------
    def _qkv(self, x: Tensor, conv: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, T, D) after the conv inputs `conv` (B, C, W - 1) -> q, k (B, T, H, K), v (B, T, H, V)
        (k and v (B, T, n, H, ·) with n > 1 steps per token) and the conv state after x."""
        u = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1)  # (B, T, C)
        window = torch.cat([conv.transpose(1, 2), u], 1)  # (B, W - 1 + T, C): the previous inputs first
        weight = torch.cat([self.q_conv1d.weight, self.k_conv1d.weight, self.v_conv1d.weight])[:, 0]  # (C, W)
        # time-major, as the projections come: no (B, C, T) copy, and one token (`step`) is W multiply-adds
        y = F.silu(depthwise_causal_conv(window, weight))  # (B, T, C)
        n = self.n_steps
        q, k, v = y.split([self.key_dim, n * self.key_dim, n * self.value_dim], -1)
        steps = () if n == 1 else (n,)  # fla's layout: the n steps outermost, then heads
        q = l2_norm(q.unflatten(-1, (self.n_head, self.head_k_dim)))
        k = l2_norm(k.unflatten(-1, (*steps, self.n_head, self.head_k_dim)))
        v = v.unflatten(-1, (*steps, self.n_head, self.head_v_dim))
        return q, k, v, window[:, window.shape[1] - conv.shape[-1]:].transpose(1, 2)

    def _segment(self, x: Tensor, carry: tuple[Tensor, Tensor | None], backend: str,
                 want_state: bool) -> tuple[Tensor, tuple[Tensor, Tensor | None]]:
        """Parallel mode over x (B, T, D) after carry = (conv inputs (B, C, W - 1), state S or None):
        y (B, T, D) and the carry after x (S None when fla need not return it)."""
        conv, S = carry
        q, k, v, conv = self._qkv(x, conv)
        beta, g = self._beta(x), self._decay(x)  # (B, T, [n,] H), log decay
        if backend == "fla":
            fla = delta_rule_fla if self.n_steps == 1 else delta_product_fla
            o, S = fla(q, k, v, beta, g, S, want_state)
        else:
            sd = state_dtype(x.dtype)  # the recurrence in >= float32
            chunked = delta_rule_chunked if self.n_steps == 1 else delta_product_chunked
            o, S = chunked(*(t.to(sd) for t in (q, k, v, beta)), None if g is None else g.to(sd),
                           initial_state=S, chunk_size=self.chunk_size)
        return self._output(o.to(x.dtype), x), (conv, S)

    def _parallel(self, x: Tensor, want_state: bool) -> tuple[Tensor, State | None]:
        backend = pick_backend(self, x)  # the reference where fla cannot serve this call
        B, T, _ = x.shape
        conv0 = x.new_zeros(B, self.conv_dim, self.cfg.d_conv - 1)
        # The reference runs in cache-sized segments of whole chunks, carrying both states across
        # (common.py, `segment_length`); fla takes the sequence in one piece.
        width = 2 * self.conv_dim + self.value_dim  # projections, conv, output
        length = segment_length(B, width, self.chunk_size) if backend == "chunked" else T
        y, (conv, S) = in_segments(lambda seg, carry: self._segment(seg, carry, backend, want_state), x,
                                   (conv0, None), length)
        return y, ({"conv": conv, "S": S.to(state_dtype(x.dtype)).contiguous()} if want_state else None)

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        return self._parallel(x, want_state=True)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        # The conv keeps its last W - 1 inputs; the delta-rule state is fixed-size, whatever max_len is.
        return {"conv": torch.zeros(batch, self.conv_dim, self.cfg.d_conv - 1, device=device, dtype=dtype),
                "S": torch.zeros(batch, self.n_head, self.head_k_dim, self.head_v_dim, device=device,
                                 dtype=state_dtype(dtype))}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        x = x_t.unsqueeze(1)  # (B, 1, D)
        q, k, v, conv = self._qkv(x, state["conv"])
        beta, g = self._beta(x), self._decay(x)
        S = state["S"]
        one_step = delta_rule_step if self.n_steps == 1 else delta_product_step
        o, S_new = one_step(*(t[:, 0].to(S.dtype) for t in (q, k, v, beta)),
                            None if g is None else g[:, 0].to(S.dtype), S)
        # In place, so a captured CUDA graph can replay the step.
        state["conv"].copy_(conv)
        S.copy_(S_new)
        return self._output(o.unsqueeze(1).to(x.dtype), x)[:, 0], state

    def flops(self, seq_len: int) -> int:
        """Projections, conv, and the chunked delta rule per head and token: pair weights k kᵀ and q kᵀ
        inside the chunk (2 · 2QK), the triangular solve (Q (K + V)), reading and updating the state
        (3 · 2KV) and the chunk's own writes (2QV); a per-channel decay adds its (Q, Q, K) products.
        With n steps per token the op runs over n T steps (archs/ops/delta_product.py)."""
        T, D, H, K, V, n = seq_len, self.d_model, self.n_head, self.head_k_dim, self.head_v_dim, self.n_steps
        Q, W = min(self.chunk_size, n * T), self.cfg.d_conv
        proj = 2 * T * D * (self.conv_dim + n * H) + 2 * T * self.value_dim * D
        conv = 2 * T * self.conv_dim * W
        per_head = 4 * Q * K + Q * (K + V) + 6 * K * V + 2 * Q * V
        if self.decay == "vector":
            per_head += 2 * Q * K  # the (Q, Q, K) pair decays times k
        return proj + conv + n * T * H * per_head + self._gate_flops(seq_len)
