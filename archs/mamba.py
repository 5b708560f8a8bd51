"""Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv:2312.00752): the S6 layer inside the Mamba block (Fig. 3, Alg. 2).

    x, z = in_proj(u)                          two branches of width E
    x = silu(causal depthwise conv1d(x))
    Δ, B, C = x_proj(x) split (R, N, N); Δ = softplus(dt_proj(Δ))     input-dependent ("selective")
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t   (eq. 2a with ZOH Ā, and Mamba's Euler B̄ = Δ B)
    y_t = C_t h_t + D ⊙ x_t                    (eq. 2b)
    out = out_proj(y ⊙ silu(z))

Parallel mode ("chunked", pure PyTorch) is the exact two-level scan of `archs/selective_scan.py`
(linear in T, a hand-written backward, no (B, T, E, N) tensor held), run on chunk_size² tokens at a
time with the (conv, ssm) state carried over, so temporaries stay small at any T. Decoding is the same
block on one token with `selective_scan_sequential`, the loop-over-time reference kept here. With
`mamba-ssm` on CUDA the fused kernel runs instead.

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

from archbench.archs import register
from archbench.archs.base import Mixer
from archbench.archs.kernels import optional_kernel
from archbench.archs.selective_scan import selective_scan_chunked


@dataclass(frozen=True)
class Config:
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None -> ceil(d_model / 16), as in Mamba
    chunk_size: int = 16  # tokens per chunk of the parallel scan; blocks of chunk_size² bound memory
    dt_min: float = 0.001  # Δ is initialised log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1


# -- the scan: the sequential reference -------------------------------------------------------------
def _ssm_step(h, x_t, delta_t, A, B_t, C_t):
    """One recurrence step: h (B, E, N), x_t/delta_t (B, E), A (E, N), B_t/C_t (B, N) -> (y_t, h)."""
    h = torch.exp(delta_t[..., None] * A) * h + (delta_t * x_t)[..., None] * B_t[:, None]  # (B, E, N)
    return (h @ C_t[..., None])[..., 0], h  # (B, E)


def selective_scan_sequential(x, delta, A, Bm, Cm, h0=None):
    """Reference scan, a loop over time. x, delta (B, T, E); A (E, N); Bm, Cm (B, T, N); h0 (B, E, N).

    Returns y (B, T, E) without the D skip, and the final state h (B, E, N).
    """
    h = h0 if h0 is not None else x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        y_t, h = _ssm_step(h, x[:, t], delta[:, t], A, Bm[:, t], Cm[:, t])
        ys.append(y_t)
    return torch.stack(ys, 1), h


# -- optional fused kernels -------------------------------------------------------------------------
def _mamba_ssm_kernels():
    """(selective_scan_fn, causal_conv1d_fn or None, reason or None), imported once."""
    scan_fn, reason = optional_kernel("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")
    if reason:
        return None, None, reason
    # optional: torch's conv1d does the same job, a little slower
    conv_fn, _ = optional_kernel("causal_conv1d", "causal_conv1d_fn")
    return scan_fn, conv_fn, None


@register("mamba")
class Mamba(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("mamba_ssm", "chunked")

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
        lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        dt = torch.exp(torch.rand(E) * (hi - lo) + lo).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        # S4D-real init: A = -(1, 2, ..., N) in every channel, stored as log for a negative A.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))

    @classmethod
    def backend_unavailable(cls, backend: str, device) -> str | None:
        if backend != "mamba_ssm":
            return None
        if torch.device(device).type != "cuda":
            return "mamba_ssm kernels need a CUDA device"
        return _mamba_ssm_kernels()[2]

    @staticmethod
    def _scan_dtype(dtype: torch.dtype) -> torch.dtype:
        # The state sums over unboundedly many decayed inputs; in bf16/fp16 the rounding of every
        # step compounds, so the scan and its state run in float32 (as mamba-ssm's kernel does),
        # or float64 when the model is float64 (exactness checks).
        return torch.float64 if dtype == torch.float64 else torch.float32

    def _block(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor, scan) -> tuple[torch.Tensor, ...]:
        """x (B, L, D) after state (conv (B, E, K-1), h (B, E, N)) -> y (B, L, D), conv, h.

        The whole Mamba block, one stretch of tokens, by `scan` (chunked or sequential)."""
        L, N, R = x.shape[1], self.cfg.d_state, self.dt_rank
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, E) each
        # causal depthwise conv as K shifted multiply-adds over the carried K-1 inputs and this block
        window = torch.cat([conv.transpose(1, 2), xs], 1)  # (B, K-1+L, E)
        w = self.conv1d.weight[:, 0]  # (E, K)
        xc = self.conv1d.bias + sum(window[:, k:k + L] * w[:, k] for k in range(w.shape[1]))
        xs = F.silu(xc)  # (B, L, E)
        dt, Bm, Cm = self.x_proj(xs).split([R, N, N], dim=-1)  # (B, L, R), (B, L, N), (B, L, N)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, E)
        f = h.dtype
        y, h = scan(xs.to(f), delta.to(f), -torch.exp(self.A_log.to(f)), Bm.to(f), Cm.to(f), h)
        y = (y.to(x.dtype) + self.D * xs) * F.silu(z)  # (B, L, E)
        return self.out_proj(y), window[:, L:].transpose(1, 2), h

    def _kernel(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mamba_ssm path: fused scan (+ causal_conv1d) over the whole sequence, layout (B, E, T)."""
        T, K, N, R = x.shape[1], self.cfg.d_conv, self.cfg.d_state, self.dt_rank
        scan_fn, conv_fn, _ = _mamba_ssm_kernels()
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
        y, h = scan_fn(xs, delta, A, Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous(),
                       self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                       return_last_state=True)  # (B, E, T) gated by silu(z), (B, E, N)
        return self.out_proj(y.transpose(1, 2)), {"conv": conv, "ssm": h.float()}

    def _mix(self, x: torch.Tensor, backend: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Parallel mode: y (B, T, D) and the state after the last token."""
        if backend == "mamba_ssm":
            return self._kernel(x)
        # Blocks of chunk_size² tokens, one after another with the state carried between them, keep
        # every temporary small (fresh large allocations page-fault, which dominated at T=16k).
        state = self.init_state(x.shape[0], x.shape[1], device=x.device, dtype=x.dtype)
        conv, h, ys = state["conv"], state["ssm"], []
        scan = functools.partial(selective_scan_chunked, chunk_size=self.cfg.chunk_size)
        for t0 in range(0, x.shape[1], self.cfg.chunk_size**2):
            y, conv, h = self._block(x[:, t0:t0 + self.cfg.chunk_size**2], conv, h, scan)
            ys.append(y)
        return torch.cat(ys, 1), {"conv": conv.contiguous(), "ssm": h}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x.device)
        self.last_backend = backend
        return self._mix(x, backend)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        backend = self.resolve_backend(x.device)
        self.last_backend = backend
        return self._mix(x, backend)  # the state is fixed-size, so max_len is not needed

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        E = self.d_inner
        return {"conv": torch.zeros(batch, E, self.cfg.d_conv - 1, device=device, dtype=dtype),
                "ssm": torch.zeros(batch, E, self.cfg.d_state, device=device, dtype=self._scan_dtype(dtype))}

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
