"""Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv:2312.00752): the S6 layer inside the Mamba block (Fig. 3, Alg. 2).

    x, z = in_proj(u)                          two branches of width E
    x = silu(causal depthwise conv1d(x))
    Δ, B, C = x_proj(x) split (R, N, N); Δ = softplus(dt_proj(Δ))     input-dependent ("selective")
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t   (eq. 2a with ZOH Ā, and Mamba's Euler B̄ = Δ B)
    y_t = C_t h_t + D ⊙ x_t                    (eq. 2b)
    out = out_proj(y ⊙ silu(z))

Parallel mode ("chunked", pure PyTorch) is the exact two-level scan `selective_scan_chunked` of
`archs/ops/selective_scan.py` (linear in T, a hand-written backward, no (B, T, E, N) tensor held), run
on chunk_size² tokens at a time with the (conv, ssm) state carried over, so temporaries stay small at
any T. Decoding is the same block on one token with `selective_scan_sequential`, the loop-over-time
definition beside it. With `mamba-ssm` on CUDA the fused kernel runs instead.

Glossary (code -> paper):
    B batch, T sequence length (L), D d_model, E = expand * D inner width (the paper's E·D channels),
    N d_state (state size per channel), R dt_rank (rank of the projection that makes Δ)
    delta       Δ      (B, T, E) step size, softplus(dt_proj(x_proj(x)[:R]))
    A           A      (E, N) diagonal state matrix, -exp(A_log), S4D-real init A_log = log(1..N)
    Bm, Cm      B, C   (B, T, N) input / output projections of the state, shared by the E channels
    h           h      (B, E, N) hidden state; self.D is the paper's skip D (not d_model)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs.backends import Kernel, pick_backend
from archbench.archs.base import Mixer
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import depthwise_causal_conv, dt_bias_init, s4d_real_a_log, state_dtype
from archbench.archs.ops.selective_scan import selective_scan_chunked, selective_scan_sequential


@dataclass(frozen=True)
class Config:
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None -> ceil(d_model / 16), as in Mamba
    dt_min: float = 0.001  # Δ is initialised log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1


# -- optional fused kernels (CUDA) -----------------------------------------------------------------
_SCAN = Kernel("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", "mamba-ssm")
_CONV = Kernel("causal_conv1d", "causal_conv1d_fn", "causal-conv1d")  # optional: torch's conv1d also does


@register("mamba")
class Mamba(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("mamba_ssm", "chunked")
    kernels = {"mamba_ssm": _SCAN}
    chunk_size = 16  # tokens per chunk of the parallel scan; blocks of chunk_size² bound memory
    conformance_configs = ({"d_state": 4, "d_conv": 2, "expand": 1, "dt_rank": 3},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        E, N, K = cfg.expand * d_model, cfg.d_state, cfg.d_conv
        self.d_inner, self.dt_rank = E, cfg.dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, K, groups=E)  # depthwise; weights only, applied in _block
        self.x_proj = nn.Linear(E, self.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, E)
        self.out_proj = nn.Linear(E, d_model, bias=False)
        # Mamba's Δ init: keep the initial Δ = softplus(bias) log-uniform in [dt_min, dt_max] by
        # storing the inverse softplus of a sample in the bias; small weights so the bias dominates.
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(E, cfg.dt_min, cfg.dt_max))
        self.A_log = nn.Parameter(s4d_real_a_log(E, N))  # A = -exp(A_log) = -(1, 2, ..., N) per channel
        self.D = nn.Parameter(torch.ones(E))

    def _block(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor, scan) -> tuple[torch.Tensor, ...]:
        """x (B, L, D) after state (conv (B, E, K-1), h (B, E, N)) -> y (B, L, D), conv, h.

        The whole Mamba block, one stretch of tokens, by `scan` (chunked or sequential)."""
        L, N, R = x.shape[1], self.cfg.d_state, self.dt_rank
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, E) each
        # causal depthwise conv as K shifted multiply-adds over the carried K-1 inputs and this block
        window = torch.cat([conv.transpose(1, 2), xs], 1)  # (B, K-1+L, E)
        xs = F.silu(depthwise_causal_conv(window, self.conv1d.weight[:, 0], self.conv1d.bias))  # (B, L, E)
        dt, Bm, Cm = self.x_proj(xs).split([R, N, N], dim=-1)  # (B, L, R), (B, L, N), (B, L, N)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, E)
        f = h.dtype
        y, h = scan(xs.to(f), delta.to(f), -torch.exp(self.A_log.to(f)), Bm.to(f), Cm.to(f), h)
        y = (y.to(x.dtype) + self.D * xs) * F.silu(z)  # (B, L, E)
        return self.out_proj(y), window[:, L:].transpose(1, 2), h

    def _kernel(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mamba_ssm path: fused scan (+ causal_conv1d) over the whole sequence, layout (B, E, T)."""
        T, K, N, R = x.shape[1], self.cfg.d_conv, self.cfg.d_state, self.dt_rank
        conv_fn = _CONV.load()
        # channel-first and contiguous in T, the layout both kernels are written for
        xs, z = self.in_proj(x).transpose(1, 2).contiguous().chunk(2, dim=1)  # (B, E, T) each
        conv = F.pad(xs, (K - 1, 0))[..., T:].contiguous()  # (B, E, K-1): the last K-1 conv inputs
        if conv_fn is not None:
            xs = conv_fn(xs, self.conv1d.weight[:, 0], self.conv1d.bias, activation="silu")
        else:
            xs = F.silu(F.conv1d(xs, self.conv1d.weight, self.conv1d.bias, padding=K - 1, groups=xs.shape[1])
                        [..., :T])
        dt, Bm, Cm = self.x_proj(xs.transpose(1, 2)).split([R, N, N], dim=-1)  # (B, T, ·)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # (B, E, T); bias + softplus in-kernel
        A = -torch.exp(self.A_log.float())  # (E, N); the kernel takes float32 weights
        y, h = _SCAN(xs, delta, A, Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous(),
                    self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                    return_last_state=True)  # (B, E, T) gated by silu(z), (B, E, N)
        return self.out_proj(y.transpose(1, 2)), {"conv": conv, "ssm": h.float()}

    def _mix(self, x: torch.Tensor, backend: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Parallel mode: y (B, T, D) and the state after the last token."""
        if backend == "mamba_ssm":
            return self._kernel(x)
        # Blocks of chunk_size² tokens, one after another with the state carried between them, keep
        # every temporary small (fresh large allocations page-fault, a cost that grows with T).
        state = self.init_state(x.shape[0], x.shape[1], device=x.device, dtype=x.dtype)
        conv, h, ys = state["conv"], state["ssm"], []
        Q = self.chunk_size
        scan = functools.partial(selective_scan_chunked, chunk_size=Q)
        for t0 in range(0, x.shape[1], Q**2):
            y, conv, h = self._block(x[:, t0:t0 + Q**2], conv, h, scan)
            ys.append(y)
        return torch.cat(ys, 1), {"conv": conv.contiguous(), "ssm": h}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, pick_backend(self, x))[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        return self._mix(x, pick_backend(self, x))  # the state is fixed-size: no max_len

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        E = self.d_inner
        return {"conv": torch.zeros(batch, E, self.cfg.d_conv - 1, device=device, dtype=dtype),
                "ssm": torch.zeros(batch, E, self.cfg.d_state, device=device, dtype=state_dtype(dtype))}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        y, conv, h = self._block(x_t[:, None], state["conv"], state["ssm"], selective_scan_sequential)
        state["conv"].copy_(conv)  # in place, so a captured decode graph can replay
        state["ssm"].copy_(h)
        return y[:, 0], state

    def flops(self, seq_len: int) -> int:
        """Matmuls count 2 per multiply-add; the scan 7 per (t, e, n): Δ·A, exp, ·Bx, h = Ā h + B̄x
        (2), C·h (2). Elementwise work per (t, e) — softplus, silu, skip, gate — is left out."""
        T, D, E, R = seq_len, self.d_model, self.d_inner, self.dt_rank
        N, K = self.cfg.d_state, self.cfg.d_conv
        projections = 2 * T * (D * 2 * E + E * (R + 2 * N) + R * E + E * D)  # in, x, dt, out
        return projections + 2 * T * E * K + 7 * T * E * N
