"""The block shared by the gated-linear layers (linear_attention.py, retnet.py, gla.py).

The three follow flash-linear-attention's layers (fla/layers/{linear_attn,multiscale_retention,gla}.py)
and run one recurrence, the diagonal-decay op of archs/ops/gated_linear.py; they differ in the map of q
and k, their decay and their output, so the common path lives here once:

    q, k, v = W_q x, W_k x, W_v x  per head, q and k through the layer's map (`_qk`): none, rotary, φ
    log α   = the layer's log decay (`_decay`): none, one fixed scalar per head, or per key channel
    o       = S_tᵀ (q_t / √d_k),  S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ   (the op; v through `_values`)
    y       = W_o · the layer's per-head output norm and gate (`_output`, after `_read` of the op's o)

W_q, W_k, W_v and W_o have no bias (fla's defaults). Widths come from the model width: H K = expand_k · D,
H V = expand_v · D over n_head heads. The parallel path is fla's kernel of the layer (`_fla`: each kernel
takes its own arguments) or the chunked op in cache-sized segments; `step` runs the op's one-token
update. The decode state is the op's state S (B, H, K, V), split into named tensors by `_split` (linear
attention keeps its normaliser z apart), and the next token's position where the layer is `positional`.

Glossary (code -> paper):
    B, T, D, H      batch, tokens, d_model, heads
    K, V            key / value width per head (head_k, head_v)                  d_k, d_v
    q, k, v         (B, T, H, K / V) query, key, value                           q_t, k_t, v_t
    g               the log decay: None, (H,) or (B, T, H, K)                     log α_t
    S               (B, H, K, V) state                                           S_t
    pos             (T,) token positions (rotary phase), where `positional`      n
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.ops.common import in_segments, segment_length, state_dtype
from archbench.archs.ops.gated_linear import gated_linear_chunked, gated_linear_flops, gated_linear_update


class GatedLinearMixer(Mixer):
    """The gated-linear block; subclasses set `decay` (and `positional`, `value_extra`), build their own
    modules in `_build`, and define the hooks below. Config fields used here: n_head, expand_k, expand_v."""

    complexity = "linear"
    backends = ("fla", "chunked")
    chunk_size: ClassVar[int] = 64
    # The kind of log decay `_decay` returns: "none", "fixed" (a scalar per head) or "vector" (per key
    # channel and token).
    decay: ClassVar[str] = "none"
    positional: ClassVar[bool] = False  # `_qk` reads token positions; the state then carries `pos`
    value_extra: ClassVar[int] = 0  # columns `_values` appends to v: the op runs on head_v + value_extra

    def __init__(self, d_model: int, cfg: Any):
        super().__init__(d_model, cfg)
        key_dim, value_dim = int(d_model * cfg.expand_k), int(d_model * cfg.expand_v)
        if key_dim % cfg.n_head or value_dim % cfg.n_head or not key_dim:
            raise ValueError(f"{self.name}: key width {key_dim} and value width {value_dim} (d_model * "
                             f"expand_k, d_model * expand_v) must be positive multiples of "
                             f"n_head={cfg.n_head}")
        self.n_head, self.key_dim, self.value_dim = cfg.n_head, key_dim, value_dim
        self.head_k, self.head_v = key_dim // cfg.n_head, value_dim // cfg.n_head
        self.scale = self.head_k ** -0.5
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self._build(d_model, cfg)
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    # -- what the subclasses define -------------------------------------------------------------------
    def _build(self, d_model: int, cfg: Any) -> None:
        """The layer's own modules (gates, output norm). Made between W_v and W_o, in the order of fla's
        layer: the order the initial weights are drawn in, so a seed gives the same model."""
        raise NotImplementedError

    def _qk(self, q: Tensor, k: Tensor, pos: Tensor | None) -> tuple[Tensor, Tensor]:
        """The layer's map of q, k (B, T, H, K) at positions pos (T,) (None unless `positional`)."""
        return q, k

    def _decay(self, x: Tensor) -> Tensor | None:
        """Log decay (<= 0) from the block input x (B, T, D): None, (H,) or (B, T, H, K), as `decay` says."""
        return None

    def _values(self, v: Tensor) -> Tensor:
        """v (..., V) -> the op's value columns (..., V + value_extra)."""
        return v

    def _read(self, o: Tensor) -> Tensor:
        """The op's output columns (..., V + value_extra) -> o (..., V)."""
        return o

    def _split(self, S: Tensor) -> State:
        """The op's state (B, H, K, V + value_extra) -> the named state tensors (views)."""
        return {"S": S}

    def _join(self, state: State) -> Tensor:
        """The named state tensors -> the op's state: the inverse of `_split`."""
        return state["S"]

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Op output o (B, T, H, V) and block input x (B, T, D) -> (B, T, D). Here the output of gla and
        retnet (fla's fused `g_norm_swish_gate`): RMSNorm per head, times swish(W_g x), then W_o."""
        gate = F.silu(self.g_proj(x).unflatten(-1, (self.n_head, -1)))  # (B, T, H, V)
        return self.o_proj((self.g_norm(o) * gate).flatten(-2))

    def _fla(self, q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
             want_state: bool) -> tuple[Tensor, State]:
        """fla's kernel on `_heads`' q, k, v (B, T, H, ·) and log decay g: o (B, T, H, V) as `_read` gives
        it, and the named state after them (read only if `want_state`)."""
        raise NotImplementedError

    def _gate_flops(self, seq_len: int) -> int:
        """FLOPs of the layer's own gate and decay projections."""
        return 0

    # -- pieces shared by the two modes -------------------------------------------------------------
    def _heads(self, x: Tensor, pos: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """x (B, T, D) -> q, k (B, T, H, K) through `_qk`, v (B, T, H, V) and the log decay g. The order of
        the projections sets the order the backward sums x's gradients in, so it stays put (q, k, decay,
        v): another order changes those gradients in their last bits and training runs stop repeating."""
        H = self.n_head
        q, k = self._qk(self.q_proj(x).unflatten(-1, (H, -1)), self.k_proj(x).unflatten(-1, (H, -1)), pos)
        g = self._decay(x)
        return q, k, self.v_proj(x).unflatten(-1, (H, -1)), g

    def _positions(self, start: int, x: Tensor) -> Tensor | None:
        """Positions (T,) of x's tokens from `start`, for a `positional` layer."""
        return torch.arange(start, start + x.shape[1], device=x.device) if self.positional else None

    def _segment(self, x: Tensor, carry: tuple[Tensor | None, int]) -> tuple[Tensor, tuple[Tensor, int]]:
        """The reference path over x (B, T, D) from carry = (op state S or None for zeros, position of x's
        first token): y (B, T, D) and the carry after x."""
        S, start = carry
        q, k, v, g = self._heads(x, self._positions(start, x))
        o, S = gated_linear_chunked(q, k, self._values(v), g, self.scale, self.chunk_size, initial_state=S)
        return self._output(self._read(o.to(x.dtype)), x), (S, start + x.shape[1])

    def _parallel(self, x: Tensor, want_state: bool) -> tuple[Tensor, State]:
        if pick_backend(self, x) == "fla":  # the reference where fla cannot serve this call
            o, state = self._fla(*self._heads(x, self._positions(0, x)), want_state)
            return self._output(o.to(x.dtype), x), state
        # Cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`);
        # the widest activations per token: q, k (and a per-channel decay); v, and the gate or output.
        width = (3 if self.decay == "vector" else 2) * self.key_dim + 2 * self.value_dim
        length = segment_length(x.shape[0], width, self.chunk_size)
        y, (S, _) = in_segments(self._segment, x, (None, 0), length)
        return y, self._split(S)

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        y, state = self._parallel(x, want_state=True)
        state = {name: t.to(state_dtype(x.dtype)).contiguous() for name, t in state.items()}
        if self.positional:
            state["pos"] = torch.full((), x.shape[1], device=x.device, dtype=torch.long)
        return y, state

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        # Fixed-size, whatever max_len is.
        state = {"S": torch.zeros(batch, self.n_head, self.head_k, self.head_v, device=device,
                                  dtype=state_dtype(dtype))}
        if self.positional:  # a tensor, not an int, so a captured CUDA graph can replay the step anywhere
            state["pos"] = torch.zeros((), device=device, dtype=torch.long)
        return state

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        x = x_t.unsqueeze(1)  # (B, 1, D)
        pos = state["pos"].view(1) if self.positional else None
        q, k, v, g = self._heads(x, pos)
        q, k, v = q[:, 0], k[:, 0], v[:, 0]  # (B, H, ·)
        if self.decay == "vector":
            g = g[:, 0]  # (B, H, K); a fixed decay (H,) has no token axis
        S = self._join(state)
        o, S_new = gated_linear_update(S, *(t.to(S.dtype) for t in (q, k, self._values(v))),
                                       None if g is None else g.to(S.dtype), self.scale)
        for name, t in self._split(S_new).items():
            state[name].copy_(t)  # in place, like `pos`, so a captured CUDA graph can replay the step
        if self.positional:
            state["pos"].add_(1)
        return self._output(self._read(o.unsqueeze(1).to(x.dtype)), x)[:, 0], state

    def flops(self, seq_len: int) -> int:
        """Projections (q, k, v; o), the layer's gates, and the chunked op over V + value_extra columns."""
        T, D = seq_len, self.d_model
        proj = 2 * T * D * (2 * self.key_dim + self.value_dim) + 2 * T * self.value_dim * D
        op = gated_linear_flops(T, self.n_head, self.head_k, self.head_v + self.value_extra, self.chunk_size,
                                per_channel=self.decay == "vector")
        return proj + op + self._gate_flops(seq_len)
