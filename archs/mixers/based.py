"""Based's linear attention: the 2nd-order Taylor feature map of exp(q·k / √d) on a small feature width.

Arora, Eyuboglu, Zhang, Timalsina, Alberti, Zinsley, Zou, Rudra, Ré 2024, "Simple linear attention
language models balance the recall-throughput tradeoff" (arXiv 2402.18668, §3). The layer follows
Zoology's `Based` mixer (zoology/mixers/based.py, the one its recall–memory sweeps run) and
flash-linear-attention's `BasedLinearAttention` (fla/layers/based.py):

    q, k = W_q x, W_k x          (feature_dim per head: the paper's d' = 16)
    v    = W_v x                 (d_model / n_head per head)
    y_t  = Σ_{j<=t} φ(q_t)ᵀφ(k_j) v_j / (Σ_{j<=t} φ(q_t)ᵀφ(k_j) + ε),  φ(q)ᵀφ(k) = 1 + s + s²/2, s = q·k/√d'
    out  = W_o y

no conv, no norm, no gate, no biases. The recurrence is archs/ops/based.py; the state is Σ φ(k) vᵀ and
Σ φ(k) per head, φ of width 1 + d' + d'(d'+1)/2 (153 at d' = 16), whatever the length: the feature width
is the state knob (Zoology sweeps 8, 16, 24). One head by default, as Zoology's MQAR configs.

The Based *architecture* pairs this layer with short gated convolutions and sliding-window attention
(Zoology: BaseConv then Based in each layer; the paper's models add SWA layers). That pairing is a model,
not this mixer: the `conv+based` preset family and patterns over `swa` build it (archs/presets.py).

Backends: "fla" (fla's `fused_chunk_based`, CUDA, feature_dim <= 16; its ε is 1e-6, Zoology's 1e-12, a
difference below the float32 comparison since every token adds at least 1/2 to the denominator; it
returns no state, so `prefill` sums the state in one matmul beside it), "chunked" (the op's chunked
form, linear in T, in cache-sized segments).

Glossary (code -> paper):
    B, T, D, H      batch, tokens, d_model, heads
    d, V            feature width of q and k (feature_dim, d'), value width D / H
    F               width of φ: 1 + d + d(d+1)/2
    S, z            (B, H, F, V) Σ φ(k) vᵀ and (B, H, F) Σ φ(k), the state
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archbench.archs.backends import Kernel, pick_backend, probe_leaves
from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import register
from archbench.archs.ops.based import based_chunked, based_step, taylor_features, taylor_width
from archbench.archs.ops.common import in_segments, segment_length, state_dtype

FLA_MAX_FEATURE_DIM = 16  # fla's fused_chunk_based asserts feature_dim <= 16


def _probe_based(fused_chunk_based, device: str) -> None:
    """A tiny forward+backward: it raises where fla refuses its backward (Hopper with Triton < 3.7.1,
    fla #640), which happens inside `.backward()`, too late to switch paths."""
    q, k, v = probe_leaves(device)
    fused_chunk_based(q, k, v, scale=0.25)[0].sum().backward()


FLA = Kernel("fla.ops.based", "fused_chunk_based", "flash-linear-attention", probe=_probe_based)


@dataclass(frozen=True)
class Config:
    feature_dim: int = 16  # d', the width of q and k per head (Zoology / the paper: 16)
    n_head: int = 1  # Zoology's MQAR configs: one head (num_heads = num_key_value_heads = 1)
    eps: float = 1e-12  # Zoology's ε


@register("based")
class Based(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA}
    chunk_size = 64
    conformance_configs = ({"feature_dim": 4, "n_head": 2},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if cfg.n_head < 1 or d_model % cfg.n_head or cfg.feature_dim < 1:
            raise ValueError(f"based: d_model ({d_model}) must be a multiple of n_head ({cfg.n_head}) and "
                             f"feature_dim ({cfg.feature_dim}) >= 1")
        H, d = cfg.n_head, cfg.feature_dim
        self.n_head, self.head_v = H, d_model // H
        self.scale = d ** -0.5
        self.q_proj = nn.Linear(d_model, H * d, bias=False)
        self.k_proj = nn.Linear(d_model, H * d, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., D) -> q, k (..., H, d), v (..., H, V)."""
        H = self.n_head
        return (self.q_proj(x).unflatten(-1, (H, -1)), self.k_proj(x).unflatten(-1, (H, -1)),
                self.v_proj(x).unflatten(-1, (H, -1)))

    def _segment(self, x: Tensor, state: tuple | None) -> tuple[Tensor, tuple]:
        sd = state_dtype(x.dtype)  # the sums in >= float32
        q, k, v = (t.to(sd) for t in self._heads(x))
        y, state = based_chunked(q, k, v, state, self.chunk_size, self.scale, self.cfg.eps)
        return self.o_proj(y.to(x.dtype).flatten(-2)), state

    def _parallel(self, x: Tensor, want_state: bool) -> tuple[Tensor, State | None]:
        too_wide = (f"fla's fused_chunk_based takes feature_dim <= {FLA_MAX_FEATURE_DIM}"
                    if self.cfg.feature_dim > FLA_MAX_FEATURE_DIM else None)
        if pick_backend(self, x, too_wide) == "fla":
            q, k, v = self._heads(x)
            y = FLA(q, k, v, scale=self.scale)  # normalised, (B, T, H, V)
            state = None
            if want_state:  # no decay: the state is a plain sum, Σ_t φ(k_t) [v_t, 1]ᵀ, one matmul
                sd = state_dtype(x.dtype)
                phi = taylor_features(k.to(sd), self.scale)  # (B, T, H, F)
                v1 = torch.cat([v.to(sd), v.new_ones(*v.shape[:-1], 1, dtype=sd)], -1)
                Sz = torch.einsum("bthf,bthv->bhfv", phi, v1)
                state = {"S": Sz[..., :-1].contiguous(), "z": Sz[..., -1].contiguous()}
            return self.o_proj(y.to(x.dtype).flatten(-2)), state
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`);
        # the widest activations per token: φ(k) and φ(q) against the state, the (Q, Q) scores, v
        width = self.n_head * (2 * taylor_width(self.cfg.feature_dim) + self.chunk_size) + 2 * self.d_model
        length = segment_length(x.shape[0], width, self.chunk_size)
        y, (S, z) = in_segments(self._segment, x, None, length)
        return y, {"S": S.contiguous(), "z": z.contiguous()}

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, want_state=False)[0]

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        return self._parallel(x, want_state=True)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        sd, F_ = state_dtype(dtype), taylor_width(self.cfg.feature_dim)
        # Fixed-size, whatever max_len is.
        return {"S": torch.zeros(batch, self.n_head, F_, self.head_v, device=device, dtype=sd),
                "z": torch.zeros(batch, self.n_head, F_, device=device, dtype=sd)}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        sd = state["S"].dtype
        q, k, v = (t.to(sd) for t in self._heads(x_t))  # (B, H, ·)
        y, (S, z) = based_step(q, k, v, (state["S"], state["z"]), self.scale, self.cfg.eps)
        state["S"].copy_(S)  # in place, so a captured CUDA graph can replay the step
        state["z"].copy_(z)
        return self.o_proj(y.to(x_t.dtype).flatten(-2)), state

    def flops(self, seq_len: int) -> int:
        """Projections (q, k, v; o), φ of q and k, and the chunked op per head and token: the (Q, Q)
        scores and their Taylor weights times [v, 1] (Q (d + V + 1)), the read of the entering state and
        the chunk's write to it (2 F (V + 1))."""
        T, D, H, d, V = seq_len, self.d_model, self.n_head, self.cfg.feature_dim, self.head_v
        Q, F_ = min(self.chunk_size, T), taylor_width(d)
        proj = 2 * T * D * (2 * H * d + D) + 2 * T * D * D
        return proj + 2 * T * H * (Q * (d + V + 1) + 2 * F_ * (V + 1) + F_)
