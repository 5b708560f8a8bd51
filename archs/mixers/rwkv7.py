"""RWKV-7 "Goose": time mixing with a generalised delta rule (diagonal-plus-low-rank state transition).

Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution" (arXiv 2503.14456), §4; the
layer follows flash-linear-attention's `RWKV7Attention` (fla/layers/rwkv7.py) at its defaults, as the
first layer of a stack. Per token, with x' the previous token (token shift, §4.1):

    x_□ = x + (x' - x) ⊙ μ_□                    □ ∈ {r, w, k, v, a, g}: static lerps, no LoRA
    r = x_r W_r,  k = x_k W_k,  v = x_v W_v
    log w = -e^{-1/2} σ(w0 + tanh(x_w A_w) B_w)        decay w ∈ [e^{-0.607}, 1) per channel
    η = σ(a0 + x_a A_a B_a)                             in-context learning rate ("a" in fla)
    g = σ(x_g A_g) B_g                                  output gate (no bias, no outer activation)
    κ̂ = normalize(k ⊙ ξ) per head                       removal key (ξ = "k_k")
    k̃ = k ⊙ (1 + (η - 1) ⊙ α)                           replacement key (α = "k_a")
    S_t = S_{t-1} (Diag(w_t) - κ̂_t (κ̂_t ⊙ η_t)ᵀ) + v_t k̃_tᵀ,   o_t = S_t r_t   (archs/ops/rwkv7.py)
    y = ((GroupNorm_per_head(o) + (r · (ρ ⊙ k̃)) v) ⊙ g) W_o     bonus ρ = "r_k", per head

Documented choices and simplifications (the lead copies these into the README):
  - Time mixing only, as fla's layer: RWKV-7's channel mix (its ReLU² FFN) is left to archbench's Block
    MLP. (rwkv.py, RWKV-6, bundles its channel mix; this layer does not.)
  - The token shift is RWKV-7's static lerp: RWKV-7 dropped RWKV-6's data-dependent (LoRA) token shift.
  - Value residual: fla's layers > 0 lerp v towards the first layer's v ("v_first") with a fifth LoRA. A
    single mixer cannot see the first layer, so every rwkv7 layer here is a FIRST layer: no v_first, no
    v LoRA. At matched weights this layer equals fla's RWKV7Attention with layer_idx = 0.
  - Initialisation is fla's for layer 0 of a stack, except: the LoRA down-projections start small and
    random instead of zero, and W_o keeps torch's default instead of zero, so that every parameter gets a
    gradient and the parallel/recurrent checks compare non-trivial outputs from step one; the GroupNorm
    weight starts at 1.

Backends: "fla" (`fla.ops.rwkv7.chunk_rwkv7`, CUDA; float64 falls back to "chunked", and a backward that
fla refuses on this device falls back with the reason in `last_backend`), "chunked" (the reference: the
WY chunked op in archs/ops/rwkv7.py, linear in T).

Glossary (code -> paper):
    B, T, D     batch, sequence length, d_model;  H heads, K = V = head_dim
    mu          (6, D) token-shift lerp weights μ_r, μ_w, μ_k, μ_v, μ_a, μ_g
    lw          log decay log w_t (B, T, H, K);  eta  η_t in (0, 1)
    kk          κ̂, L2-normalised per head;  k  k̃ after the replacement mix
    S           state (B, H, V, K), the paper's S_t ∈ R^{d_v × d_k}
    shift       x of the previous token (B, D), the token-shift state
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
from archbench.archs.ops.common import in_segments, segment_length, state_dtype, token_shift
from archbench.archs.ops.rwkv7 import FLA, rwkv7_chunked, rwkv7_step

_LOG_W_MIN = -math.exp(-0.5)  # log w >= -e^{-1/2} = -0.6065...: fla's `lower_bound`


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K = V; n_head = d_model // head_dim (fla: 64)
    decay_rank: int = 32  # LoRA ranks; fla's formulas give 32 up to d_model ~ 160
    a_rank: int = 32
    gate_rank: int = 32
    norm_eps: float = 1e-5  # GroupNorm eps = head_dim * norm_eps, as fla


class _LoRA(nn.Module):
    """x -> act(x A) B (+ bias): the low-rank projections of RWKV-7."""

    def __init__(self, d: int, rank: int, act, bias: bool):
        super().__init__()
        self.down = nn.Parameter(torch.empty(d, rank).uniform_(-1e-2, 1e-2))  # fla: zeros (see docstring)
        gain = 0.1 * max(1.0, (rank / d) ** 0.5)  # fla's
        self.up = nn.Parameter(nn.init.orthogonal_(torch.empty(rank, d), gain=gain))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(x @ self.down) @ self.up
        return y + self.bias if self.bias is not None else y


@register("rwkv7")
class RWKV7(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA}
    # of the chunked op: with the decay floor below, a chunk of 64 keeps its whole decay within the op's
    # factored range (64 × 0.61 nats), so its pair matrices are matmuls (archs/ops/rwkv7.py)
    chunk_size = 64
    conformance_configs = ({"head_dim": 8, "decay_rank": 8, "a_rank": 4, "gate_rank": 8},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if d_model % cfg.head_dim:
            raise ValueError(f"d_model ({d_model}) must be a multiple of head_dim ({cfg.head_dim})")
        D, hd = d_model, cfg.head_dim
        self.n_head = D // hd
        n = torch.arange(D, dtype=torch.float32)
        ddd, linear = n / D, n / (D - 1) - 0.5
        zigzag = ((n % hd) - (hd - 1) / 2) / ((hd - 1) / 2)
        zigzag = zigzag * zigzag.abs()
        # fla's init for layer 0: μ = 1 - ddd^p with p for r, w, k, v, a, g
        self.mu = nn.Parameter(torch.stack([1 - ddd ** p for p in (0.2, 0.9, 0.7, 0.7, 0.9, 0.2)]))  # (6, D)
        self.k_k = nn.Parameter(0.71 - 0.1 * linear)  # ξ
        self.k_a = nn.Parameter(torch.full((D,), 1.02))  # α
        self.r_k = nn.Parameter(torch.full((self.n_head, hd), -0.04))  # ρ
        self.r_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(D, D, bias=False) for _ in range(4))
        for lin, gain in ((self.r_proj, 1.0), (self.k_proj, 0.1), (self.v_proj, 1.0)):
            nn.init.orthogonal_(lin.weight, gain=gain)
        self.w_lora = _LoRA(D, cfg.decay_rank, torch.tanh, bias=True)
        self.a_lora = _LoRA(D, cfg.a_rank, nn.Identity(), bias=True)
        self.g_lora = _LoRA(D, cfg.gate_rank, torch.sigmoid, bias=False)
        with torch.no_grad():
            self.w_lora.bias.copy_(-6 + 6 * (n / (D - 1)) + 0.5 + 2.5 * zigzag)  # w0
            self.a_lora.bias.copy_(-0.19 + 0.3 * zigzag + 0.4 * linear)  # a0
        self.g_norm = nn.GroupNorm(self.n_head, D, eps=hd * cfg.norm_eps)

    # -- pieces shared by the parallel and the recurrent mode ---------------------------------------
    def _inputs(self, x: torch.Tensor, x_prev: torch.Tensor):
        """x, x_prev (B, T, D) -> r, lw, k̃, v, a, b (B, T, H, K) for the op, and the gate g (B, T, D)."""
        B, T, D = x.shape
        xr, xw, xk, xv, xa, xg = (x.unsqueeze(2) + (x_prev - x).unsqueeze(2) * self.mu).unbind(2)
        heads = (B, T, self.n_head, self.cfg.head_dim)
        r, k, v = self.r_proj(xr), self.k_proj(xk), self.v_proj(xv)
        lw = _LOG_W_MIN * torch.sigmoid(self.w_lora(xw))
        eta = torch.sigmoid(self.a_lora(xa))
        kk = F.normalize((k * self.k_k).view(heads), dim=-1)
        k = k * (1 + (eta - 1) * self.k_a)
        eta = eta.view(heads)
        return (r.view(heads), lw.view(heads), k.view(heads), v.view(heads), -kk, kk * eta,
                self.g_lora(xg))

    def _output(self, o: torch.Tensor, r, k, v, g: torch.Tensor) -> torch.Tensor:
        """o (B, T, H, V) -> GroupNorm per head, + bonus (r·(ρ ⊙ k̃)) v, ⊙ g, W_o -> (B, T, D)."""
        B, T = o.shape[:2]
        o = self.g_norm(o.to(g.dtype).reshape(B * T, self.d_model)).view(B, T, self.n_head, -1)
        bonus = (r * k * self.r_k).sum(-1, keepdim=True) * v  # (B, T, H, V)
        return self.o_proj(((o + bonus).flatten(2)) * g)

    def _segment(self, x: torch.Tensor, carry: tuple, backend: str, want_state: bool):
        """Parallel mode over x (B, T, D) after carry = (the token before x (B, D), the state (B, H, V, K)
        or None): y (B, T, D) and the carry after x."""
        x_before, S = carry
        r, lw, k, v, a, b, g = self._inputs(x, token_shift(x, x_before))
        if backend == "fla":  # one segment, the whole sequence from the zero state
            o, S = FLA(r=r, w=lw, k=k, v=v, a=a, b=b, scale=1.0, output_final_state=want_state,
                       safe_gate=True, lower_bound=_LOG_W_MIN, chunk_size=64)
            S = S.transpose(-1, -2) if want_state else None  # fla keeps (B, H, K, V)
        else:
            sd = state_dtype(r.dtype)
            o, S = rwkv7_chunked(*(t.to(sd) for t in (r, lw, k, v, a, b)), chunk_size=self.chunk_size,
                                 initial_state=S, lower_bound=_LOG_W_MIN)
        return self._output(o, r, k, v, g), (x[:, -1], S)

    def _parallel(self, x: torch.Tensor, want_state: bool):
        backend = pick_backend(self, x)  # the reference where fla cannot serve this call
        B, T, D = x.shape
        # The reference runs in cache-sized segments of whole chunks, carrying the state across
        # (common.py, `segment_length`); fla takes the sequence in one piece.
        width = 14 * D  # six token-shift mixes, r lw k v a b, the gate
        length = segment_length(B, width, self.chunk_size) if backend == "chunked" else T
        y, (_, S) = in_segments(lambda seg, c: self._segment(seg, c, backend, want_state), x,
                                (x.new_zeros(B, D), None), length)
        return y, S

    # -- the Mixer contract -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._parallel(x, want_state=False)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, S = self._parallel(x, want_state=True)
        return y, {"shift": x[:, -1].contiguous(), "wkv": S.to(state_dtype(x.dtype)).contiguous()}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        hd = self.cfg.head_dim
        return {"shift": torch.zeros(batch, self.d_model, device=device, dtype=dtype),  # x_{t-1}
                "wkv": torch.zeros(batch, self.n_head, hd, hd, device=device, dtype=state_dtype(dtype))}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        r, lw, k, v, a, b, g = self._inputs(x_t.unsqueeze(1), state["shift"].unsqueeze(1))  # T = 1
        S = state["wkv"]
        o, S_new = rwkv7_step(*(t[:, 0].to(S.dtype) for t in (r, lw, k, v, a, b)), S)
        S.copy_(S_new)  # in place, so a captured CUDA graph can replay the step
        state["shift"].copy_(x_t)
        return self._output(o.unsqueeze(1), r, k, v, g)[:, 0], state

    def flops(self, seq_len: int) -> int:
        """Projections, LoRAs and the recurrent-form wkv (per head and token: decay, low-rank read and
        write, value write and the read-out, ~4 K·V multiply-adds). Elementwise work is left out."""
        D, cfg, T = self.d_model, self.cfg, seq_len
        proj = 4 * D * D + 2 * D * (cfg.decay_rank + cfg.a_rank + cfg.gate_rank)
        wkv = 4 * D * cfg.head_dim
        return 2 * T * (proj + wkv)
