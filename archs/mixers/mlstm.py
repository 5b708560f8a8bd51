"""mLSTM: xLSTM's matrix-memory cell with exponential input gates, as the layer of xLSTM 7B.

Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory" (arXiv 2405.04517, §2.3); xLSTM 7B (Beck et
al. 2025, arXiv 2503.13427) is the released model, and the layer follows its `xLSTMLayer` in transformers
(models/xlstm/modeling_xlstm.py, weight_mode "single"):

    q, k = W_q x, W_k x  (qk_dim = qk_dim_factor · D),   v, o = W_v x, W_o x  (v_dim = v_dim_factor · D)
    ĩ, f̃ = cap(W_i x + b_i), cap(W_f x + b_f)       one per head; cap(z) = 15 tanh(z / 15), the soft cap
    log f = logsigmoid(f̃),  i = exp(ĩ)               the stabilised recurrence (archs/ops/mlstm.py):
    C_t = f_t C_{t-1} + i_t k_t v_tᵀ,  n_t = f_t n_{t-1} + i_t k_t,  h_t = C_tᵀ q̃_t / max(|n_tᵀ q̃_t|, 1)
    y = W_out (σ(o) ⊙ LayerNorm_head(h))             per-head LayerNorm with a weight, no bias

no short conv, no biases but the gates'. Initialisation as xLSTM 7B's: gate weights zero, input-gate
bias −10, forget-gate biases linspace(3, 6) over the heads (a forget gate near 1, long memory from the
start); the other weights PyTorch's defaults. Heads come from head_dim (n_head = qk_dim / head_dim; xLSTM
7B: 8 heads of 256 query/key and 512 value channels at D = 4096, head_dim D / 16; here 8).

The decode state is the stabilised triple (C̃ (K × V), ñ (K), m) per head, in float32.

Backends: "chunked" (the op's chunkwise-parallel form of Beck et al. 2025, "Tiled Flash Linear
Attention", linear in T, in cache-sized segments). No fused kernel: fla has no mLSTM op, and
mlstm_kernels' Triton kernels are not wired in.

Glossary (code -> paper):
    B, T, D, H      batch, tokens, d_model, heads
    K, V            query/key and value width per head                             d_qk, d_v
    log_i, log_f    (B, T, H) input gate pre-activation ĩ and log forget gate      ĩ, log f
    C, n, m         (B, H, K, V), (B, H, K), (B, H) the stabilised state            C̃, ñ, m
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
from archbench.archs.ops.common import in_segments, segment_length, state_dtype
from archbench.archs.ops.mlstm import mlstm_chunked, mlstm_step


@dataclass(frozen=True)
class Config:
    # K, query/key width per head; n_head = qk_dim // head_dim (xLSTM 7B: d_model / 16; 8 keeps a head
    # at a d_model of 16)
    head_dim: int = 8
    qk_dim_factor: float = 0.5  # qk_dim = qk_dim_factor * d_model (xLSTM 7B)
    v_dim_factor: float = 1.0  # v_dim = v_dim_factor * d_model (xLSTM 7B)
    gate_soft_cap: float = 15.0  # cap(z) = c tanh(z / c) on the gate pre-activations (xLSTM 7B)
    norm_eps: float = 1e-6
    eps: float = 1e-6  # ε of the normaliser's denominator (mlstm_kernels, xLSTM 7B)


def soft_cap(z: Tensor, cap: float) -> Tensor:
    return cap * torch.tanh(z / cap)


@register("mlstm")
class MLSTM(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("chunked",)
    chunk_size = 64
    conformance_configs = ({"head_dim": 4, "v_dim_factor": 0.5},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        qk_dim, v_dim = cfg.qk_dim_factor * d_model, cfg.v_dim_factor * d_model
        if qk_dim != int(qk_dim) or v_dim != int(v_dim) or int(qk_dim) % cfg.head_dim:
            raise ValueError(f"mlstm: qk_dim_factor * d_model = {qk_dim} must be a whole multiple of "
                             f"head_dim={cfg.head_dim}, and v_dim_factor * d_model = {v_dim} whole")
        self.qk_dim, self.v_dim = int(qk_dim), int(v_dim)
        self.n_head = self.qk_dim // cfg.head_dim
        if self.v_dim % self.n_head or not self.v_dim:
            raise ValueError(f"mlstm: v_dim {self.v_dim} must be a positive multiple of n_head {self.n_head}")
        self.head_k, self.head_v = cfg.head_dim, self.v_dim // self.n_head
        H = self.n_head
        self.q = nn.Linear(d_model, self.qk_dim, bias=False)
        self.k = nn.Linear(d_model, self.qk_dim, bias=False)
        self.v = nn.Linear(d_model, self.v_dim, bias=False)
        self.ogate_preact = nn.Linear(d_model, self.v_dim, bias=False)
        self.igate_preact = nn.Linear(d_model, H)
        self.fgate_preact = nn.Linear(d_model, H)
        with torch.no_grad():  # xLSTM 7B: input gate nearly shut, forget gate nearly open, both flat
            for gate in (self.igate_preact, self.fgate_preact):
                gate.weight.zero_()
            self.igate_preact.bias.fill_(-10.0)
            self.fgate_preact.bias.copy_(torch.linspace(3.0, 6.0, H))
        self.norm_weight = nn.Parameter(torch.ones(self.v_dim))  # the per-head LayerNorm's weight
        self.out_proj = nn.Linear(self.v_dim, d_model, bias=False)

    # -- pieces shared by the two modes -----------------------------------------------------------------
    def _inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x (..., D) -> q, k (..., H, K), v (..., H, V), ĩ and log f (..., H)."""
        H, cap = self.n_head, self.cfg.gate_soft_cap
        q, k = (p(x).unflatten(-1, (H, self.head_k)) for p in (self.q, self.k))
        v = self.v(x).unflatten(-1, (H, self.head_v))
        log_i = soft_cap(self.igate_preact(x), cap)
        log_f = F.logsigmoid(soft_cap(self.fgate_preact(x), cap))
        return q, k, v, log_i, log_f

    def _output(self, h: Tensor, x: Tensor) -> Tensor:
        """h (..., H, V) and the block input x -> W_out (σ(o) ⊙ LayerNorm_head(h))."""
        h = F.layer_norm(h, (self.head_v,), eps=self.cfg.norm_eps).flatten(-2) * self.norm_weight
        return self.out_proj(torch.sigmoid(self.ogate_preact(x)) * h)

    def _segment(self, x: Tensor, state: tuple | None) -> tuple[Tensor, tuple]:
        sd = state_dtype(x.dtype)  # the recurrence and its state in >= float32
        q, k, v, log_i, log_f = (t.to(sd) for t in self._inputs(x))
        h, state = mlstm_chunked(q, k, v, log_i, log_f, state, self.chunk_size, eps=self.cfg.eps)
        return self._output(h.to(x.dtype), x), state

    def _parallel(self, x: Tensor) -> tuple[Tensor, State]:
        pick_backend(self, x)
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`);
        # the widest activations per token: q, k, v, o and the (Q, Q) decay matrix of each head
        width = 2 * self.qk_dim + 2 * self.v_dim + self.n_head * self.chunk_size
        length = segment_length(x.shape[0], width, self.chunk_size)
        y, (C, n, m) = in_segments(self._segment, x, None, length)
        return y, {"C": C.contiguous(), "n": n.contiguous(), "m": m.contiguous()}

    # -- the Mixer contract -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x)[0]

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        return self._parallel(x)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        sd, H, K, V = state_dtype(dtype), self.n_head, self.head_k, self.head_v
        # Fixed-size, whatever max_len is; zeros are the op's (and mlstm_kernels') state before any token.
        return {"C": torch.zeros(batch, H, K, V, device=device, dtype=sd),
                "n": torch.zeros(batch, H, K, device=device, dtype=sd),
                "m": torch.zeros(batch, H, device=device, dtype=sd)}

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        sd = state["C"].dtype
        q, k, v, log_i, log_f = (t.to(sd) for t in self._inputs(x_t))  # (B, H, ·)
        h, new = mlstm_step(q, k, v, log_i, log_f, (state["C"], state["n"], state["m"]), eps=self.cfg.eps)
        for name, t in zip(("C", "n", "m"), new, strict=True):
            state[name].copy_(t)  # in place, so a captured CUDA graph can replay the step
        return self._output(h.to(x_t.dtype), x_t), state

    def flops(self, seq_len: int) -> int:
        """Projections (q, k, v, o, the two gates; out) and the chunkwise op per head and token: the
        (Q, Q) scores and their product with [v, 1] (Q (K + V + 1)), the read of the entering state and
        the chunk's write to it (2 K (V + 1))."""
        T, D, H, K, V = seq_len, self.d_model, self.n_head, self.head_k, self.head_v
        Q = min(self.chunk_size, T)
        proj = 2 * T * D * (2 * self.qk_dim + 2 * self.v_dim + 2 * H) + 2 * T * self.v_dim * D
        op = 2 * T * H * (Q * (K + V + 1) + 2 * K * (V + 1))
        return proj + op + math.ceil(T / Q) * H * K * (V + 1)  # the state's decay between chunks
