"""HGRN-2: a gated linear RNN whose state is expanded by an outer product, the input gate tied to the
forget gate (Qin, Yang, Sun, Shen, Li, Sun, Zhong 2024, "HGRN2: Gated Linear RNNs with State Expansion",
arXiv 2404.07904).

Per head, with a forget gate f_t ∈ (0, 1)^K on the key dimension, the recurrence is GLA's with the key
k_t = 1 − f_t (archs/ops/hgrn2.py):

    q_t = swish(W_q x_t),  f_t = σ(W_f x_t),  v_t = W_i x_t          (no biases, no short conv)
    S_t = Diag(f_t) S_{t-1} + (1 − f_t) v_tᵀ,   o_t = S_tᵀ q_t / √K
    y_t = W_o RMSNorm(o_t)                                           (one RMSNorm over all heads' values)

as flash-linear-attention's `HGRN2Attention` builds it at its defaults (fla/layers/hgrn2.py): K
(`expand_ratio`) per head and n_head = d_model / K heads, so the forget width H K equals d_model and
each head's values are d_model / H wide; the state per layer is d_model · K numbers.

Simplification: HGRN2 bounds every layer's forget gate below by β_l, a learned (n_layer,) softmax-cumsum
that rises with depth and is 0 in the first layer — a parameter of the whole model, which archbench's
independent layers do not share. Here β is the Config's `lower_bound`, fixed, 0 by default: every layer is
fla's first.

Backends: "fla" (fla's `chunk_gla` with k = 1 − f and log f as the per-channel gate, as fla's layer runs
it; CUDA), "chunked" (archs/ops/gated_linear.py's chunked form through archs/ops/hgrn2.py, linear in T,
in cache-sized segments).

Glossary (code -> paper):
    B, T, D, H      batch, tokens, d_model, heads
    K, V            forget / key width per head (expand_ratio), value width D / H
    q, v            output gate (the query) and input (the value)                   o_t, i_t
    log_f           (B, T, H, K) log forget gate, <= 0                                log f_t
    S               (B, H, K, V) state                                                h_t
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import PER_CHANNEL_CHUNK, in_segments, segment_length, state_dtype
from archbench.archs.ops.gated_linear import FLA_GLA, gated_linear_flops
from archbench.archs.ops.hgrn2 import hgrn2_chunked, hgrn2_log_forget, hgrn2_step


@dataclass(frozen=True)
class Config:
    expand_ratio: int = 16  # K, the forget / key width per head (fla's default 128)
    n_head: int = 0  # 0: d_model // expand_ratio, as fla
    lower_bound: float = 0.0  # β: f = β + (1 − β) σ(·), fixed (HGRN2 learns one per layer)
    norm_eps: float = 1e-5


@register("hgrn2")
class HGRN2(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA_GLA}
    chunk_size = PER_CHANNEL_CHUNK  # a per-channel decay: archs/ops/common.py says why this chunk
    conformance_configs = ({"expand_ratio": 8, "n_head": 2, "lower_bound": 0.5},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        H = cfg.n_head or d_model // cfg.expand_ratio
        if H < 1 or d_model % H:
            raise ValueError(f"hgrn2: d_model ({d_model}) must be a multiple of n_head ({H}; 0 means "
                             f"d_model // expand_ratio)")
        if not 0 <= cfg.lower_bound < 1:
            raise ValueError(f"hgrn2: lower_bound must be in [0, 1), got {cfg.lower_bound}")
        self.n_head, self.head_k, self.head_v = H, cfg.expand_ratio, d_model // H
        self.forget_dim = H * cfg.expand_ratio
        self.scale = self.head_k ** -0.5  # fla's default scale of chunk_gla
        self.q_proj = nn.Linear(d_model, self.forget_dim, bias=False)
        self.f_proj = nn.Linear(d_model, self.forget_dim, bias=False)
        self.i_proj = nn.Linear(d_model, d_model, bias=False)
        self.g_norm = nn.RMSNorm(d_model, eps=cfg.norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    # -- pieces shared by the two modes -----------------------------------------------------------------
    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., D) -> q, log f (..., H, K) and v (..., H, V)."""
        H = self.n_head
        q = F.silu(self.q_proj(x)).unflatten(-1, (H, self.head_k))
        bound = self.cfg.lower_bound
        # β = 0 passes None: log β = −inf gives the right value but a NaN gradient (archs/ops/hgrn2.py)
        lower = torch.tensor(bound, dtype=x.dtype, device=x.device) if bound > 0 else None
        log_f = hgrn2_log_forget(self.f_proj(x), lower).unflatten(-1, (H, self.head_k))
        return q, log_f, self.i_proj(x).unflatten(-1, (H, self.head_v))

    def _output(self, o: Tensor) -> Tensor:
        return self.o_proj(self.g_norm(o.flatten(-2)))  # (..., D)

    def _segment(self, x: Tensor, S: Tensor | None) -> tuple[Tensor, Tensor]:
        q, log_f, v = self._heads(x)
        sd = state_dtype(x.dtype)  # the recurrence in >= float32
        o, S = hgrn2_chunked(q.to(sd), v.to(sd), log_f.to(sd), self.scale, self.chunk_size, S)
        return self._output(o.to(x.dtype)), S

    def _parallel(self, x: Tensor, want_state: bool) -> tuple[Tensor, State]:
        if pick_backend(self, x) == "fla":  # the reference where fla cannot serve this call
            q, log_f, v = self._heads(x)
            # fla: (B, T, H, ·), k = 1 − f, g the log gate per key channel, state (B, H, K, V) float32
            o, S = FLA_GLA(q=q, k=-torch.expm1(log_f), v=v, g=log_f, scale=self.scale,
                           output_final_state=want_state)
            return self._output(o.to(x.dtype)), {"S": S}
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`);
        # the widest activations per token: q, log f, k and the pair decays, v and the output
        length = segment_length(x.shape[0], 4 * self.forget_dim + 2 * self.d_model, self.chunk_size)
        y, S = in_segments(self._segment, x, None, length)
        return y, {"S": S}

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, want_state=False)[0]

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        y, state = self._parallel(x, want_state=True)
        return y, {"S": state["S"].to(state_dtype(x.dtype)).contiguous()}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        # Fixed-size, whatever max_len is: d_model · K numbers.
        return {"S": torch.zeros(batch, self.n_head, self.head_k, self.head_v, device=device,
                                 dtype=state_dtype(dtype))}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        q, log_f, v = self._heads(x_t)  # (B, H, ·)
        S = state["S"]
        o, S_new = hgrn2_step(q.to(S.dtype), v.to(S.dtype), log_f.to(S.dtype), self.scale, S)
        S.copy_(S_new)  # in place, so a captured CUDA graph can replay the step
        return self._output(o.to(x_t.dtype)), state

    def flops(self, seq_len: int) -> int:
        """Projections (q, f, i; o) and the chunked per-channel-decay op."""
        T, D = seq_len, self.d_model
        proj = 2 * T * D * (2 * self.forget_dim + D) + 2 * T * D * D
        return proj + gated_linear_flops(T, self.n_head, self.head_k, self.head_v, self.chunk_size,
                                         per_channel=True)
