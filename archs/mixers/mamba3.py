"""Mamba-3 (SISO): an SSM with an exponential-trapezoidal update and a data-dependent rotary state.

Lahoti, Li, Chen, Wang, Bick, Kolter, Dao, Gu 2026, "Mamba-3: Improved Sequence Modeling using State
Space Principles" (arXiv 2603.15569). The layer follows the reference module of mamba-ssm >= 2.3
(`mamba_ssm.modules.mamba3.Mamba3`, SISO, is_outproj_norm=False) at its defaults:

    [z, x, B, C, dd_dt, dd_A, trap, ω] = u W_in             (no bias; Mamba-3 has no short conv)
    Δ = softplus(dd_dt + dt_bias),  A = -max(ht(dd_A), A_floor)   data-dependent A per head and token
        ht(a) = 1 + a (a >= 0), 1 / (1 - a) (a < 0)           mamba-ssm's heavy-tail activation
    α = exp(Δ A),  λ = σ(trap)                                 §3.1, the trapezoid weight
    θ_t = θ_{t-1} + Δ_t π tanh(ω_t)                             §3.2, one angle per rotated pair and head
    q̃ = rot_θ(RMSNorm(C) + b_C),  k̃ = rot_θ(RMSNorm(B) + b_B)   biases per head (init 1), B/C shared
    S_t = α_t S_{t-1} + (1-λ_t) Δ_t α_t v_{t-1} k̃_{t-1}ᵀ + λ_t Δ_t v_t k̃_tᵀ,  v = x   (archs/ops/mamba3.py)
    y = (S_t q̃_t + D v_t) ⊙ silu(z),  out = y W_out

The complex state of §3.2 is run as its real "RoPE trick": rotating q̃ and k̃ by the cumulative angle θ_t
equals rotating the state by Δ_t ω_t every step. rot_θ turns the feature pairs (2i, 2i+1) for
i < rope_fraction · N / 2 by θ_i (rope_fraction 0.5: half of N rotates), the rest pass unrotated. The
state is (P × N per head) + the previous token's k̃, v + the angles θ, all float32 (float64 for a float64
model); θ is kept modulo 2π. The parallel path accumulates θ in float64 before the modulo, so long
sequences keep their angle precision in float32 models.

Simplifications: SISO only (no MIMO rank), one B/C group, no output RMSNorm (mamba-ssm's default).

Which A: by default A = −heavy_tail(dd_A), as on mamba-ssm's main branch after release 2.3.2.post1. The
released mamba-ssm (2.3.x) and fla 0.6.0's port compute A = −softplus(dd_A); `a_activation="softplus"`
is that form (the same weights then give other outputs), so results can be compared with released code.

Backends: "mamba_ssm" (`mamba_ssm.ops.triton.mamba3.mamba3_siso_combined`, CUDA; it takes the
normalised B/C, biases, raw angles and trap and applies rotation, trapezoid, D and the gate itself;
float64 or non-power-of-two head widths fall back to "chunked", saying so), "chunked" (the reference:
the SSD form of archs/ops/mamba3.py, linear in T).

Glossary (code -> paper):
    B batch, T sequence length, D d_model, Di = expand·D, H = Di / head_dim heads
    P head_dim, N d_state, R rotated pairs (= int(rope_fraction·N) // 2, rounded down to even first)
    x, z       (B, T, Di) input and gate;  Bm, Cm (B, T, N) B and C before the norms
    dt, la, lam  Δ, Δ·A, λ (B, T, H);  theta θ (B, T, H, R)
    q, k       q̃ = C̃, k̃ = B̃ (B, T, H, N);  S (B, H, P, N)
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
from archbench.archs.ops.common import dt_bias_init, in_segments, segment_length, state_dtype
from archbench.archs.ops.mamba3 import MAMBA_SSM, mamba3_chunked, mamba3_step
from archbench.archs.ops.rope import rope, unit_rotation


@dataclass(frozen=True)
class Config:
    d_state: int = 16  # N (mamba-ssm: 128)
    head_dim: int = 16  # P; n_heads = expand * d_model // head_dim (mamba-ssm: 64)
    expand: int = 2
    rope_fraction: float = 0.5  # share of the N features that rotate: 0.5 or 1.0
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    A_floor: float = 1e-4  # |A| >= A_floor
    # The positive map of dd_A to |A|: "heavy_tail" (mamba-ssm main after 2.3.2.post1) or "softplus"
    # (the mamba-ssm 2.3.x release and fla 0.6.0).
    a_activation: str = "heavy_tail"

    def __post_init__(self):
        if self.a_activation not in A_ACTIVATIONS:
            raise ValueError(f"mamba3: a_activation must be one of {', '.join(A_ACTIVATIONS)}, "
                             f"got {self.a_activation!r}")


def heavy_tail(a: torch.Tensor) -> torch.Tensor:
    """1 + a for a >= 0, 1 / (1 - a) for a < 0: positive, continuous, with a heavy tail towards 0."""
    return a.clamp_min(0) + 1 / (1 - a.clamp_max(0))


A_ACTIVATIONS = {"heavy_tail": heavy_tail, "softplus": F.softplus}  # a_activation -> |A| before the floor


def rotate_pairs(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Turn the feature pairs (2i, 2i+1) of x (..., N) by theta (..., R) for i < R; the rest unrotated.

    One complex multiply over all N/2 pairs (angle 0 past R): a single pass, where slicing, stacking and
    concatenating the rotated part would copy x three times."""
    theta = F.pad(theta, (0, x.shape[-1] // 2 - theta.shape[-1]))  # (..., N/2)
    return rope(x.contiguous(), unit_rotation(theta))


@register("mamba3")
class Mamba3(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("mamba_ssm", "chunked")
    kernels = {"mamba_ssm": MAMBA_SSM}
    chunk_size = 64  # Q of the SSD form (mamba-ssm's recommendation for SISO)
    conformance_configs = ({"d_state": 8, "head_dim": 8, "rope_fraction": 1.0}, {"a_activation": "softplus"})

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        self.d_inner = cfg.expand * d_model
        if self.d_inner % cfg.head_dim:
            raise ValueError(f"expand * d_model ({self.d_inner}) must be a multiple of head_dim "
                             f"({cfg.head_dim})")
        if cfg.rope_fraction not in (0.5, 1.0):
            raise ValueError(f"rope_fraction must be 0.5 or 1.0, got {cfg.rope_fraction}")
        rotated = int(cfg.d_state * cfg.rope_fraction)
        self.n_angle = (rotated - rotated % 2) // 2  # R
        if self.n_angle < 1:
            raise ValueError(f"d_state ({cfg.d_state}) leaves no feature pair to rotate")
        H, N = self.d_inner // cfg.head_dim, cfg.d_state
        self.n_head = H
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * N + 3 * H + self.n_angle, bias=False)
        # Δ starts log-uniform in [dt_min, dt_max]; dt_bias is its softplus inverse (Mamba's init).
        self.dt_bias = nn.Parameter(dt_bias_init(H, cfg.dt_min, cfg.dt_max))
        self.B_bias = nn.Parameter(torch.ones(H, N))
        self.C_bias = nn.Parameter(torch.ones(H, N))
        self.B_norm = nn.RMSNorm(N, eps=1e-5)
        self.C_norm = nn.RMSNorm(N, eps=1e-5)
        self.D = nn.Parameter(torch.ones(H))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _split(self, u: torch.Tensor):
        """in_proj and the per-token maps: z, x (..., H, P), normalised Bm, Cm (..., N), dt, la, lam
        (..., H), the angle rate π tanh(ω) (..., R), and the raw trap and ω for the fused kernel."""
        N, H, P = self.cfg.d_state, self.n_head, self.cfg.head_dim
        z, x, Bm, Cm, dd_dt, dd_A, trap, omega = self.in_proj(u).split(
            [self.d_inner, self.d_inner, N, N, H, H, H, self.n_angle], -1)
        dt = F.softplus(dd_dt + self.dt_bias)
        A = -A_ACTIVATIONS[self.cfg.a_activation](dd_A).clamp_min(self.cfg.A_floor)
        return (z.unflatten(-1, (H, P)), x.unflatten(-1, (H, P)), self.B_norm(Bm), self.C_norm(Cm), dt,
                A * dt, torch.sigmoid(trap), math.pi * torch.tanh(omega), trap, omega)

    def _qk(self, Bm, Cm, theta):
        """Biased and rotated q̃, k̃ (..., H, N) from the normalised C, B (..., N) and angles (..., H, R)."""
        q = rotate_pairs(Cm.unsqueeze(-2) + self.C_bias, theta)
        k = rotate_pairs(Bm.unsqueeze(-2) + self.B_bias, theta)
        return q, k

    def _output(self, y, x, z) -> torch.Tensor:
        """y (..., H, P) without the skip -> (y + D x) ⊙ silu(z) -> out_proj."""
        y = (y.to(x.dtype) + self.D[:, None] * x) * F.silu(z)
        return self.out_proj(y.flatten(-2))

    def _kernel_refuses(self) -> str | None:
        """Why mamba-ssm's kernel cannot take this layer's shapes, or None."""
        P, N = self.cfg.head_dim, self.cfg.d_state
        return "mamba-ssm needs power-of-two head_dim and d_state" if P & (P - 1) or N & (N - 1) else None

    def _chunked(self, u: torch.Tensor, carry: tuple):
        """The reference path over u (B, T, D) after carry = (angle θ before u, float64 (B, H, R); the state
        S, previous k̃, v, or None): y (B, T, D) and the carry after u."""
        angle, S, k0, v0 = carry
        z, x, Bm, Cm, dt, la, lam, rate, _, _ = self._split(u)
        sd = state_dtype(u.dtype)
        # θ_t = θ_before + Σ_{s<=t} Δ_s π tanh(ω_s), accumulated in float64, kept modulo 2π
        theta = torch.cumsum((dt.unsqueeze(-1) * rate.unsqueeze(-2)).double(), 1) + angle[:, None]
        theta = torch.remainder(theta, 2 * math.pi)  # (B, T, H, R) float64
        q, k = self._qk(Bm.to(sd), Cm.to(sd), theta.to(sd))
        v = x.to(sd)
        y, S = mamba3_chunked(q, k, v, la.to(sd), dt.to(sd), lam.to(sd), self.chunk_size, S, k0, v0)
        return self._output(y, x, z), (theta[:, -1], S, k[:, -1].contiguous(), v[:, -1].contiguous())

    def _parallel(self, u: torch.Tensor, want_state: bool) -> tuple[torch.Tensor, dict | None]:
        backend = pick_backend(self, u, self._kernel_refuses())  # the reference where the kernel cannot serve
        if backend == "mamba_ssm":
            z, x, Bm, Cm, dt, la, _, _, trap, omega = self._split(u)
            return self._fused(z, x, Bm, Cm, dt, la, trap, omega, want_state)
        # cache-sized segments of whole chunks, the state carried across (common.py, `segment_length`)
        B = u.shape[0]
        angle0 = u.new_zeros(B, self.n_head, self.n_angle, dtype=torch.float64)
        width = self.in_proj.out_features + 4 * self.n_head * self.cfg.d_state  # in_proj; q̃, k̃ per head
        length = segment_length(B, width, self.chunk_size)
        y, (angle, S, k, v) = in_segments(self._chunked, u, (angle0, None, None, None), length)
        state = {"angle": angle.to(S.dtype), "ssm": S, "k": k, "v": v} if want_state else None
        return y, state

    def _fused(self, z, x, Bm, Cm, dt, la, trap, omega, want_state: bool):
        """mamba-ssm's SISO kernel: it applies biases, rotation, trapezoid, D and the gate itself."""
        H = self.n_head
        out = MAMBA_SSM(
            Q=Cm.unsqueeze(2), K=Bm.unsqueeze(2), V=x,  # one B/C group: (B, T, 1, N)
            ADT=la.transpose(1, 2).float(), DT=dt.transpose(1, 2).float(), Trap=trap.transpose(1, 2),
            Q_bias=self.C_bias, K_bias=self.B_bias,
            Angles=omega.unsqueeze(2).expand(-1, -1, H, -1).float(),  # raw ω, (B, T, H, R)
            D=self.D, Z=z, chunk_size=self.chunk_size, return_final_states=want_state)
        if not want_state:
            return self.out_proj(out.flatten(-2)), None
        y, angle, S, k, v = out[:5]
        sd = torch.float32
        return self.out_proj(y.flatten(-2)), {"angle": angle.to(sd), "ssm": S.to(sd), "k": k.to(sd),
                                              "v": v.to(sd)}

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, want_state=False)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        return self._parallel(x, want_state=True)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        sd, H, P, N = state_dtype(dtype), self.n_head, self.cfg.head_dim, self.cfg.d_state
        return {"angle": torch.zeros(batch, H, self.n_angle, device=device, dtype=sd),  # θ mod 2π
                "ssm": torch.zeros(batch, H, P, N, device=device, dtype=sd),  # S
                "k": torch.zeros(batch, H, N, device=device, dtype=sd),  # previous token's k̃
                "v": torch.zeros(batch, H, P, device=device, dtype=sd)}  # previous token's v

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        S = state["ssm"]
        sd = S.dtype
        z, x, Bm, Cm, dt, la, lam, rate, _, _ = self._split(x_t)  # (B, H, P), (B, N), (B, H), (B, R)
        theta = torch.remainder(state["angle"] + dt.to(sd)[..., None] * rate.to(sd)[:, None], 2 * math.pi)
        q, k = self._qk(Bm.to(sd), Cm.to(sd), theta)
        v = x.to(sd)
        y, S_new = mamba3_step(q, k, v, la.to(sd), dt.to(sd), lam.to(sd), S, state["k"], state["v"])
        # in place, so a captured CUDA graph can replay the step
        S.copy_(S_new)
        state["angle"].copy_(theta)
        state["k"].copy_(k)
        state["v"].copy_(v)
        return self._output(y, x, z), state

    def flops(self, seq_len: int) -> int:
        T, D, Di, N, H = seq_len, self.d_model, self.d_inner, self.cfg.d_state, self.n_head
        Q = min(self.chunk_size, T)
        proj = 2 * T * D * self.in_proj.out_features + 2 * T * Di * D  # in_proj, out_proj
        intra = 2 * T * Q * N * H + T * Q * H + 2 * T * Q * Di  # q kᵀ per head, ∘ decay, @ (σ v)
        inter = 2 * T * Di * N * 2 + 2 * math.ceil(T / Q) * Di * N  # chunk states, q h_start, state pass
        rotary = 6 * T * H * 2 * self.n_angle  # q̃ and k̃: 2 rotations of R pairs per head
        return proj + intra + inter + rotary
