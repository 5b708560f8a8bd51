"""Mamba-2: the SSD layer, a selective SSM with a scalar decay per head (Dao & Gu 2024, "Transformers are
SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality").

Because the decay a_t = exp(Δ_t A) is one scalar per head, the whole map x -> y over a sequence is a
masked matrix M = L ∘ (C Bᵀ) with L[i, j] = a_i ⋯ a_{j+1} (a 1-semiseparable matrix, §3). The "SSD"
algorithm (§6) cuts the sequence into chunks of Q tokens: inside a chunk it multiplies by M directly
(matmuls, O(T Q)), between chunks it carries the (P, N) state of each head (O(T N P)), so time stays
linear in T. `ssd_recurrent` is the plain per-token loop kept beside it as the reference; `step` runs
its update `ssd_update` for one token.

Glossary (code -> paper):
    B batch, T sequence length (L in the paper), D d_model, Di = expand * D, Q chunk_size
    H heads = Di / head_dim, P head_dim, N d_state
    x          (B, T, H, P) input of the SSM, after the causal depthwise conv and SiLU    x
    Bm, Cm     (B, T, N) input / output projections, shared by all heads (one group)   B, C
    dt         (B, T, H) step size softplus(dt_raw + dt_bias)                          Δ
    A          (H,) -exp(A_log), one negative scalar per head                          A
    h          (B, H, P, N) state: h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ,  y_t = h_t C_t + D x_t
    z          (B, T, Di) gate: out = out_proj(RMSNorm(y * silu(z)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archbench.archs import register
from archbench.archs.base import Mixer
from archbench.archs.kernels import backward_refusal, optional_kernel

# Optional CUDA kernels: backend -> (module, function), imported on first use by `optional_kernel`.
_KERNELS = {
    "fla": ("fla.ops.simple_gla", "chunk_simple_gla"),
    "mamba_ssm": ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined"),
}

# Working-set sizes of the pure-PyTorch path, in tensor elements (see `ssd_chunked` and `_parallel`).
_BLOCK_ELEMENTS = 1 << 20  # of the (B, H, chunks, Q, Q) decay tensor built at once
_SEGMENT_ELEMENTS = 1 << 20  # of the in_proj output of one segment


@dataclass(frozen=True)
class Config:
    d_state: int = 16  # N
    head_dim: int = 16  # P; n_heads = expand * d_model // head_dim
    expand: int = 2
    d_conv: int = 4
    chunk_size: int = 64  # Q
    dt_min: float = 0.001  # softplus(dt_bias) starts log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1


def ssd_update(h: Tensor, x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor) -> tuple[Tensor, Tensor]:
    """One token: h (B, H, P, N), x (B, H, P), dt (B, H), A (H,), Bm/Cm (B, N) -> y (B, H, P), new h."""
    h = torch.exp(dt * A)[..., None, None] * h + (dt[..., None] * x)[..., None] * Bm[:, None, None, :]
    return (h @ Cm[:, None, :, None]).squeeze(-1), h


def ssd_recurrent(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor,
                  h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference: the recurrence token by token. x (B, T, H, P), dt (B, T, H), A (H,), Bm/Cm (B, T, N).

    Returns y (B, T, H, P) without the D skip, and the final state (B, H, P, N).
    """
    b, T, H, P = x.shape
    h = x.new_zeros(b, H, P, Bm.shape[-1]) if h is None else h
    ys = []
    for t in range(T):
        y, h = ssd_update(h, x[:, t], dt[:, t], A, Bm[:, t], Cm[:, t])
        ys.append(y)
    return torch.stack(ys, 1), h


def ssd_chunked(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, chunk_size: int,
                h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The SSD algorithm (§6): same arguments and results as `ssd_recurrent`, linear in T, mostly matmuls."""
    b, T, H, P = x.shape
    Q = min(chunk_size, T)
    pad = -T % Q  # zero steps (Δ = 0): decay 1 and no input, so the state passes them unchanged
    if pad:
        x, dt, Bm, Cm = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, Bm, Cm))
    c = x.shape[1] // Q
    xdt = (x * dt[..., None]).view(b, c, Q, H, P).permute(0, 3, 1, 2, 4)  # (B, H, c, Q, P)
    Bc, Cc = Bm.view(b, 1, c, Q, -1), Cm.view(b, 1, c, Q, -1)  # (B, 1, c, Q, N), shared by the heads
    logd = torch.cumsum((dt * A).view(b, c, Q, H).permute(0, 3, 1, 2), -1)  # (B, H, c, Q), non-increasing
    h = x.new_zeros(b, H, P, Bm.shape[-1]) if h is None else h
    # A few chunks at a time, so the (Q, Q) decay matrices stay cache-sized and time stays linear in T.
    g = max(1, _BLOCK_ELEMENTS // (b * H * Q * Q))
    ys = []
    for s in range(0, c, g):
        y, h = _ssd_chunks(xdt[:, :, s:s + g], logd[:, :, s:s + g], Bc[:, :, s:s + g], Cc[:, :, s:s + g], h)
        ys.append(y)
    return torch.cat(ys, 1).reshape(b, c * Q, H, P)[:, :T], h


def _ssd_chunks(xdt: Tensor, logd: Tensor, Bc: Tensor, Cc: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """SSD over consecutive chunks: xdt (B, H, c, Q, P) = Δ x, logd (B, H, c, Q) cumulative log decay
    within each chunk, Bc/Cc (B, 1, c, Q, N), h (B, H, P, N) the state before them.
    Returns y (B, c, Q, H, P) and the state after them."""
    Q = logd.shape[-1]
    # 1. Within a chunk: y_i = Σ_{j<=i} exp(logd_i - logd_j) (C_i·B_j) Δ_j x_j. The differences are <= 0
    #    where i >= j, and the mask sends the rest to exp(-inf) = 0, so nothing overflows.
    causal = torch.ones(Q, Q, dtype=torch.bool, device=logd.device).tril()
    decay = (logd[..., :, None] - logd[..., None, :]).masked_fill_(~causal, -math.inf).exp_()  # (B,H,c,Q,Q)
    y = (decay * (Cc @ Bc.transpose(-1, -2))) @ xdt  # (B, H, c, Q, P); exp_'s backward needs `decay`

    # 2. Each chunk's own contribution to the state at its end: Σ_j exp(logd_end - logd_j) Δ_j x_j B_jᵀ.
    to_end = torch.exp(logd[..., -1:] - logd)  # (B, H, c, Q)
    chunk_states = (xdt * to_end[..., None]).transpose(-1, -2) @ Bc  # (B, H, c, P, N)

    # 3. Pass the state from chunk to chunk (a loop over small tensors), keeping each chunk's start.
    chunk_decay = torch.exp(logd[..., -1])  # (B, H, c)
    starts = []
    for i in range(logd.shape[2]):
        starts.append(h)
        h = chunk_decay[..., i, None, None] * h + chunk_states[:, :, i]
    starts = torch.stack(starts, 2)  # (B, H, c, P, N)

    # 4. What the carried-in state adds to each output: exp(logd_i) C_i h_start.
    y = y + torch.exp(logd)[..., None] * (Cc @ starts.transpose(-1, -2))  # (B, H, c, Q, P)
    return y.permute(0, 2, 3, 1, 4), h


def _probe_fla_backward(device: str) -> None:
    """A tiny forward+backward of fla's kernel: it raises where fla refuses its backward (Hopper with
    Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to switch paths."""
    chunk_simple_gla = optional_kernel(*_KERNELS["fla"])[0]
    q, k, v = (torch.randn(1, 16, 1, 16, device=device, requires_grad=True) for _ in range(3))
    g = (-torch.rand(1, 16, 1, device=device)).requires_grad_(True)  # (B, T, H) log decay
    chunk_simple_gla(q=q, k=k, v=v, g=g, scale=1.0)[0].sum().backward()


@register("mamba2")
class Mamba2(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "mamba_ssm", "chunked")

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
        dt = torch.exp(torch.rand(H) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = dt.clamp_min(1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))  # A = -exp(A_log) in [-16, -1]
        self.D = nn.Parameter(torch.ones(H))
        self.norm = nn.RMSNorm(self.d_inner, eps=1e-5)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    @classmethod
    def backend_unavailable(cls, backend: str, device) -> str | None:
        if backend == "chunked":
            return None
        if backend not in _KERNELS:
            return f"unknown backend {backend!r}"
        if torch.device(device).type != "cuda":
            return f"{backend} needs a CUDA device"
        return optional_kernel(*_KERNELS[backend])[1]

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, xBC, dt = zxbcdt.split([self.d_inner, self.conv_dim, self.n_head], -1)
        return z, xBC, F.softplus(dt + self.dt_bias)

    def _ssm_inputs(self, xBC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, Bm, Cm = F.silu(xBC).split([self.d_inner, self.cfg.d_state, self.cfg.d_state], -1)
        return x.unflatten(-1, (self.n_head, self.cfg.head_dim)), Bm, Cm  # (..., H, P), (..., N), (..., N)

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y + self.D[:, None] * x).flatten(-2)  # (..., Di)
        return self.out_proj(self.norm(y * F.silu(z)))

    def _ssd(self, x, dt, Bm, Cm, h, backend: str, final_state: bool):
        """y (B, T, H, P) without the D skip, from state h (B, H, P, N) or None (zeros); and the state
        after the T tokens (None when not `final_state` and the kernel can skip it)."""
        A = -torch.exp(self.A_log.float() if x.dtype != torch.float64 else self.A_log)  # (H,)
        if backend == "fla":
            H = self.n_head
            q, k = (m[:, :, None].expand(-1, -1, H, -1) for m in (Cm, Bm))  # (B, T, H, N): one group
            v, g = x * dt[..., None], dt * A  # g: log decay per token and head
            h0 = None if h is None else h.transpose(-1, -2).contiguous()  # fla keeps (B, H, N, P)
            y, h = optional_kernel(*_KERNELS["fla"])[0](q=q, k=k, v=v, g=g, scale=1.0, initial_state=h0,
                                                        output_final_state=final_state)
            return y, (h.transpose(-1, -2) if final_state else None)
        if backend == "mamba_ssm":
            out = optional_kernel(*_KERNELS["mamba_ssm"])[0](
                x, dt, A, Bm[:, :, None], Cm[:, :, None], self.cfg.chunk_size, initial_states=h,
                return_final_states=final_state)
            return out if final_state else (out, None)
        cd = torch.float64 if x.dtype == torch.float64 else torch.float32  # the scan in >= float32
        y, h = ssd_chunked(*(t.to(cd) for t in (x, dt, A, Bm, Cm)), self.cfg.chunk_size,
                           h=None if h is None else h.to(cd))
        return y.to(x.dtype), h

    def _segment(self, u, conv, h, backend: str, final_state: bool):
        """Parallel mode over u (B, S, D) after the conv inputs `conv` (B, conv_dim, d_conv) and the SSM
        state h; returns y (B, S, D) and both states after u."""
        z, xBC, dt = self._split(self.in_proj(u))
        xBC = torch.cat([conv[..., 1:], xBC.transpose(1, 2)], -1)  # (B, conv_dim, d_conv - 1 + S), causal
        x, Bm, Cm = self._ssm_inputs(self.conv(xBC).transpose(1, 2))
        y, h = self._ssd(x, dt, Bm, Cm, h, backend, final_state)
        return self._output(y, x, z), xBC[..., -self.cfg.d_conv:].contiguous(), h

    def _parallel(self, u: torch.Tensor, final_state: bool) -> tuple[torch.Tensor, dict]:
        backend = self.resolve_backend(u.device)
        self.last_backend = backend
        if backend == "fla" and torch.is_grad_enabled() and (
                u.requires_grad or any(p.requires_grad for p in self.parameters())):
            # fla may refuse its backward on this device (see `_probe_fla_backward`): then train on the
            # reference instead, and say so.
            device = str(u.device)
            refusal = backward_refusal("fla.chunk_simple_gla", device, lambda: _probe_fla_backward(device))
            if refusal:
                backend = "chunked"
                self.last_backend = f"chunked (fla backward refused: {refusal})"
        b, T, _ = u.shape
        conv, h = u.new_zeros(b, self.conv_dim, self.cfg.d_conv), None
        # The pure-PyTorch path runs in segments of whole chunks, carrying both states across: activations
        # of a cache-sized segment stay in cache, where a whole 16k sequence would not, so time stays
        # linear in T. The CUDA kernels take the sequence in one piece.
        Q, width = self.cfg.chunk_size, self.in_proj.out_features
        S = max(Q, _SEGMENT_ELEMENTS // (b * width) // Q * Q) if backend == "chunked" else T
        ys = []
        for s in range(0, T, S):
            y, conv, h = self._segment(u[:, s:s + S], conv, h, backend, final_state or s + S < T)
            ys.append(y)
        return torch.cat(ys, 1), {"conv": conv, "ssm": h}

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, final_state=False)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, state = self._parallel(x, final_state=True)
        state["ssm"] = state["ssm"].to(self._ssm_dtype(x.dtype)).contiguous()
        return y, state

    @staticmethod
    def _ssm_dtype(dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if dtype == torch.float64 else torch.float32

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        # The conv keeps its last d_conv inputs; the SSM state is fixed-size, whatever max_len is.
        return {"conv": torch.zeros(batch, self.conv_dim, self.cfg.d_conv, device=device, dtype=dtype),
                "ssm": torch.zeros(batch, self.n_head, self.cfg.head_dim, self.cfg.d_state, device=device,
                                   dtype=self._ssm_dtype(dtype))}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        z, xBC, dt = self._split(self.in_proj(x_t))  # (B, Di), (B, conv_dim), (B, H)
        conv = state["conv"]
        conv.copy_(torch.cat([conv[..., 1:], xBC[..., None].to(conv.dtype)], -1))  # (B, conv_dim, d_conv)
        xBC = (conv * self.conv.weight[:, 0]).sum(-1) + self.conv.bias  # the same causal conv, one output
        x, Bm, Cm = self._ssm_inputs(xBC)  # (B, H, P), (B, N), (B, N)
        h = state["ssm"]
        A = -torch.exp(self.A_log.to(h.dtype))
        y, h_new = ssd_update(h, *(t.to(h.dtype) for t in (x, dt)), A, *(t.to(h.dtype) for t in (Bm, Cm)))
        h.copy_(h_new)  # in place, like the conv state, so a captured CUDA graph can replay the step
        return self._output(y.to(x.dtype), x, z), state

    def flops(self, seq_len: int) -> int:
        T, D, Di, N, H = seq_len, self.d_model, self.d_inner, self.cfg.d_state, self.n_head
        Q = min(self.cfg.chunk_size, T)
        proj = 2 * T * D * (2 * Di + 2 * N + H) + 2 * T * Di * D  # in_proj, out_proj
        conv = 2 * T * self.conv_dim * self.cfg.d_conv
        intra = 2 * T * Q * N + T * Q * H + 2 * T * Q * Di  # C Bᵀ per chunk, ∘ decay, @ (Δ x)
        inter = 2 * T * Di * N * 2 + 2 * math.ceil(T / Q) * Di * N  # chunk states, C h_start, state pass
        return proj + conv + intra + inter
