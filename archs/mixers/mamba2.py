"""Mamba-2: the SSD layer, a selective SSM with a scalar decay per head (Dao & Gu 2024, "Transformers are
SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality").

Because the decay a_t = exp(Δ_t A) is one scalar per head, the whole map x -> y over a sequence is a
masked matrix M = L ∘ (C Bᵀ) with L[i, j] = a_i ⋯ a_{j+1} (a 1-semiseparable matrix, §3). The "SSD"
algorithm (§6) cuts the sequence into chunks of Q tokens: inside a chunk it multiplies by M directly
(matmuls, O(T Q)), between chunks it carries the (P, N) state of each head (O(T N P)), so time stays
linear in T. The op lives in `archs/ops/ssd.py`: `ssd_chunked` (parallel mode), `ssd_sequential` (the
per-token loop, its reference) and `ssd_step` (one token, which `step` runs), plus the fused fla and
mamba-ssm kernels; this file holds the layer around it (projections, conv, gate, norm, states).

Glossary (code -> paper):
    B batch, T sequence length (L in the paper), D d_model, Di = expand * D, Q chunk_size
    H heads = Di / head_dim, P head_dim, N d_state
    x          (B, T, H, P) input of the SSM, after the causal depthwise conv and SiLU    x
    Bm, Cm     (B, T, N) input / output projections, shared by all heads (one group)   B, C
    dt         (B, T, H) step size softplus(dt_raw + dt_bias)                          Δ
    A          (H,) -exp(A_log), one negative scalar per head                          A
    h          (B, H, P, N) state: h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ,  y_t = h_t C_t + D x_t
    z          (B, T, Di) gate: out = out_proj(RMSNorm(y * silu(z)))  (Config.gate: the activation)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import (
    a_log_uniform,
    depthwise_causal_conv,
    dt_bias_init,
    in_segments,
    segment_length,
    state_dtype,
)
from archbench.archs.ops.ssd import FLA, MAMBA_SSM, ssd_chunked, ssd_fla, ssd_mamba_ssm, ssd_step


@dataclass(frozen=True)
class Config:
    d_state: int = 16  # N
    head_dim: int = 16  # P; n_heads = expand * d_model // head_dim
    expand: int = 2
    d_conv: int = 4
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    # The gate's activation: SiLU (the paper's and mamba-ssm's). "sigmoid" is an ablation: the same
    # layer with a gate that starts near 1/2 for every token instead of near 0 with either sign.
    gate: str = "silu"
    # A learned bias on the gate's input, initialised to this value (0: none, the published layer). A
    # positive value starts SiLU(z + b) open and of one sign for every token: with the activation kept,
    # it tests whether what makes the sigmoid gate learn is that its gate starts open.
    gate_bias: float = 0.0

    def __post_init__(self):
        if not math.isfinite(self.gate_bias):
            raise ValueError(f"mamba2: gate_bias must be a finite number, got {self.gate_bias!r}")
        if self.gate not in GATES:
            raise ValueError(f"mamba2: gate must be one of {', '.join(GATES)}, got {self.gate!r}")


GATES = {"silu": F.silu, "sigmoid": torch.sigmoid}


@register("mamba2")
class Mamba2(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "mamba_ssm", "chunked")
    kernels = {"fla": FLA, "mamba_ssm": MAMBA_SSM}
    chunk_size = 64  # Q, the chunk of the SSD algorithm (and of mamba-ssm's kernel)
    conformance_configs = ({"d_state": 8, "head_dim": 8, "expand": 1, "d_conv": 2}, {"gate_bias": 1.0})

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        self.d_inner = cfg.expand * d_model
        if self.d_inner % cfg.head_dim:
            raise ValueError(f"expand * d_model ({self.d_inner}) must be a multiple of head_dim "
                             f"({cfg.head_dim})")
        self.n_head = self.d_inner // cfg.head_dim
        N, H = cfg.d_state, self.n_head
        self.conv_dim = self.d_inner + 2 * N  # the conv runs over [x, B, C]
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * N + H, bias=False)  # -> z, x, B, C, dt
        self.conv = nn.Conv1d(self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim)
        # Δ starts log-uniform in [dt_min, dt_max]; dt_bias is its softplus inverse (Mamba's init).
        self.dt_bias = nn.Parameter(dt_bias_init(H, cfg.dt_min, cfg.dt_max))
        self.A_log = nn.Parameter(a_log_uniform(H, 1, 16))  # A = -exp(A_log) in [-16, -1]
        self.D = nn.Parameter(torch.ones(H))
        self.norm = nn.RMSNorm(self.d_inner, eps=1e-5)
        self.z_bias = nn.Parameter(torch.full((self.d_inner,), cfg.gate_bias)) if cfg.gate_bias else None
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, xBC, dt = zxbcdt.split([self.d_inner, self.conv_dim, self.n_head], -1)
        return z, xBC, F.softplus(dt + self.dt_bias)

    def _ssm_inputs(self, xBC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, Bm, Cm = F.silu(xBC).split([self.d_inner, self.cfg.d_state, self.cfg.d_state], -1)
        return x.unflatten(-1, (self.n_head, self.cfg.head_dim)), Bm, Cm  # (..., H, P), (..., N), (..., N)

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y + self.D[:, None] * x).flatten(-2)  # (..., Di)
        z = z if self.z_bias is None else z + self.z_bias
        return self.out_proj(self.norm(y * GATES[self.cfg.gate](z)))

    def _ssd(self, x, dt, Bm, Cm, h, backend: str, final_state: bool):
        """y (B, T, H, P) without the D skip, from state h (B, H, P, N) or None (zeros); and the state
        after the T tokens (None when not `final_state` and the kernel can skip it)."""
        cd = state_dtype(x.dtype)  # the scan and its state in >= float32
        A = -torch.exp(self.A_log.to(cd))  # (H,)
        if backend == "fla":
            return ssd_fla(x, dt, A, Bm, Cm, h, output_final_state=final_state)
        if backend == "mamba_ssm":
            return ssd_mamba_ssm(x, dt, A, Bm, Cm, h, self.chunk_size, output_final_state=final_state)
        y, h = ssd_chunked(*(t.to(cd) for t in (x, dt, A, Bm, Cm)), None if h is None else h.to(cd),
                           chunk_size=self.chunk_size)
        return y.to(x.dtype), h

    def _segment(self, u, carry, backend: str, final_state: bool):
        """Parallel mode over u (B, S, D) after carry = (the conv inputs (B, conv_dim, d_conv), the SSM
        state h or None); returns y (B, S, D) and both states after u."""
        conv, h = carry
        z, xBC, dt = self._split(self.in_proj(u))
        xBC = torch.cat([conv[..., 1:], xBC.transpose(1, 2)], -1)  # (B, conv_dim, d_conv - 1 + S), causal
        x, Bm, Cm = self._ssm_inputs(depthwise_causal_conv(xBC, self.conv.weight[:, 0], self.conv.bias,
                                                           dim=-1).transpose(1, 2))
        y, h = self._ssd(x, dt, Bm, Cm, h, backend, final_state)
        return self._output(y, x, z), (xBC[..., -self.cfg.d_conv:].contiguous(), h)

    def _parallel(self, u: torch.Tensor, final_state: bool) -> tuple[torch.Tensor, dict]:
        backend = pick_backend(self, u)  # the reference where a kernel cannot serve this call
        b, T, _ = u.shape
        # The pure-PyTorch path runs in cache-sized segments of whole chunks, carrying both states across
        # (`segment_length`); the CUDA kernels take the sequence in one piece.
        length = segment_length(b, self.in_proj.out_features, self.chunk_size) if backend == "chunked" else T
        y, (conv, h) = in_segments(lambda seg, carry: self._segment(seg, carry, backend, final_state), u,
                                   (u.new_zeros(b, self.conv_dim, self.cfg.d_conv), None), length)
        return y, {"conv": conv, "ssm": h}

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, final_state=False)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, state = self._parallel(x, final_state=True)
        state["ssm"] = state["ssm"].to(state_dtype(x.dtype)).contiguous()
        return y, state

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        # The conv keeps its last d_conv inputs; the SSM state is fixed-size, whatever max_len is.
        return {"conv": torch.zeros(batch, self.conv_dim, self.cfg.d_conv, device=device, dtype=dtype),
                "ssm": torch.zeros(batch, self.n_head, self.cfg.head_dim, self.cfg.d_state, device=device,
                                   dtype=state_dtype(dtype))}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        z, xBC, dt = self._split(self.in_proj(x_t))  # (B, Di), (B, conv_dim), (B, H)
        conv = state["conv"]
        conv.copy_(torch.cat([conv[..., 1:], xBC[..., None].to(conv.dtype)], -1))  # (B, conv_dim, d_conv)
        xBC = (conv * self.conv.weight[:, 0]).sum(-1) + self.conv.bias  # the same causal conv, one output
        x, Bm, Cm = self._ssm_inputs(xBC)  # (B, H, P), (B, N), (B, N)
        h = state["ssm"]
        A = -torch.exp(self.A_log.to(h.dtype))
        y, h_new = ssd_step(*(t.to(h.dtype) for t in (x, dt)), A, *(t.to(h.dtype) for t in (Bm, Cm)), h)
        h.copy_(h_new)  # in place, like the conv state, so a captured CUDA graph can replay the step
        return self._output(y.to(x.dtype), x, z), state

    def flops(self, seq_len: int) -> int:
        T, D, Di, N, H = seq_len, self.d_model, self.d_inner, self.cfg.d_state, self.n_head
        Q = min(self.chunk_size, T)
        proj = 2 * T * D * (2 * Di + 2 * N + H) + 2 * T * Di * D  # in_proj, out_proj
        conv = 2 * T * self.conv_dim * self.cfg.d_conv
        intra = 2 * T * Q * N + T * Q * H + 2 * T * Q * Di  # C Bᵀ per chunk, ∘ decay, @ (Δ x)
        inter = 2 * T * Di * N * 2 + 2 * math.ceil(T / Q) * Di * N  # chunk states, C h_start, state pass
        return proj + conv + intra + inter
