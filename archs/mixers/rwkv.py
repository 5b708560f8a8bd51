"""RWKV-6 "Finch": a matrix-valued recurrent state with data-dependent, per-channel decay.

Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence"
(arXiv:2404.05892). The mixer is one RWKV-6 layer without its outer residual: time mixing (the WKV
recurrence below) followed by channel mixing, so that Block's `x + mixer(norm1(x))` is an RWKV block.

Per head, with receptance r_t, key k_t (row vectors of K), value v_t (V), decay w_t in (0, 1)^K:
    S_t = diag(w_t) S_{t-1} + k_t^T v_t                         (state, K x V)
    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)                     (the bonus u weighs the current token)
    w_t = exp(-exp(w0 + tanh(x_w A_w) B_w))                     (data-dependent decay, a LoRA)
The WKV recurrence (the first two lines) is the op of `archs/ops/wkv.py`: `wkv_chunked` (parallel mode),
`wkv_sequential` (its reference), `wkv_step` (one token, which `step` runs) and fla's kernel.
Inputs of every projection are mixed with the previous token by "ddlerp", a LoRA-made interpolation:
    x_* = x_t + (x_{t-1} - x_t) * (mu_* + tanh((x_t + (x_{t-1} - x_t) mu_x) A) B_*)

Glossary (code -> paper):
    B, T, D     batch, sequence length, model width
    H, K, V     heads, key width per head (`head_dim`), value width per head (= K)
    r, k, v     receptance, key, value                        (B, T, H, K)
    lw          log of the decay w, i.e. -exp(w0 + lora(x)) <= 0, (B, T, H, K)
    u           bonus for the current token ("time_first")    (H, K)
    g           output gate silu(W_g x_g)                     (B, T, D)
    S           WKV state                                     (B, H, K, V)
    mu          token-shift mixing coefficients               (5, D) for w, k, v, r, g
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs.backends import pick_backend
from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import register
from archbench.archs.ops.common import in_segments, segment_length, state_dtype, token_shift
from archbench.archs.ops.wkv import FLA, wkv_chunked, wkv_fla, wkv_step


@dataclass(frozen=True)
class Config:
    head_dim: int = 16  # K = V per head; n_head = d_model // head_dim
    mix_rank: int = 8  # LoRA rank of the ddlerp token shift (paper: 32)
    decay_rank: int = 16  # LoRA rank of the data-dependent decay (paper: 64)
    # Channel-mix hidden width = ffn_ratio * D. RWKV-6 uses 3.5; small here because archbench's Block
    # already adds its own MLP after every mixer.
    ffn_ratio: float = 2.0


# -- the mixer ------------------------------------------------------------------------------------------
@register("rwkv")
class RWKV(Mixer):
    """RWKV-6 time mixing (ddlerp, data-dependent decay, bonus, GroupNorm, gate) + channel mixing."""

    Config = Config
    complexity = "linear"
    backends = ("fla", "chunked")
    kernels = {"fla": FLA}
    chunk_size = 32  # tokens per chunk of `wkv_chunked`
    conformance_configs = ({"head_dim": 8, "mix_rank": 4, "decay_rank": 4, "ffn_ratio": 1.0},)

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        if d_model % cfg.head_dim:
            raise ValueError(f"d_model={d_model} is not a multiple of head_dim={cfg.head_dim}")
        D, R = d_model, cfg.mix_rank
        self.n_head, self.head_dim = D // cfg.head_dim, cfg.head_dim
        # RWKV-6 initialises by layer depth; the mixer does not know its depth, so use mid-depth values.
        depth, keep = 0.5, 0.5  # ratio_0_to_1, ratio_1_to_almost0
        ddd = torch.arange(D) / D
        self.mu_x = nn.Parameter(1 - ddd**keep)
        self.mu = nn.Parameter(torch.stack([1 - ddd**keep, 1 - ddd**keep, 1 - (ddd**keep + 0.3 * depth),
                                            1 - ddd ** (0.5 * keep), 1 - ddd ** (0.5 * keep)]))  # (5, D)
        # RWKV-6 zero-inits the first LoRA matrix, which leaves the second one's first gradient exactly
        # zero; both start small instead so that every parameter learns from step one.
        self.mix_a = nn.Parameter(torch.empty(D, 5 * R).uniform_(-1e-2, 1e-2))
        self.mix_b = nn.Parameter(torch.empty(5, R, D).uniform_(-1e-2, 1e-2))
        n = torch.arange(D) / (D - 1)
        self.w0 = nn.Parameter(-6 + 5 * n ** (0.7 + 1.3 * depth))  # decay spread: w in [0.69, 0.9975]
        self.decay_a = nn.Parameter(torch.empty(D, cfg.decay_rank).uniform_(-1e-2, 1e-2))
        self.decay_b = nn.Parameter(torch.empty(cfg.decay_rank, D).uniform_(-1e-2, 1e-2))
        zigzag = ((torch.arange(D) + 1) % 3 - 1) * 0.1
        self.u = nn.Parameter((depth * (1 - n) + zigzag).view(self.n_head, self.head_dim))
        self.receptance, self.key, self.value, self.gate, self.output = (
            nn.Linear(D, D, bias=False) for _ in range(5))
        self.ln_x = nn.GroupNorm(self.n_head, D, eps=64e-5)  # per-head norm; eps as in RWKV-6
        # channel mixing
        F_ = int(cfg.ffn_ratio * D)
        self.cm_norm = nn.LayerNorm(D)
        self.cm_mu = nn.Parameter(torch.stack([1 - ddd**keep, 1 - ddd**keep]))  # (2, D) for k, r
        self.cm_key = nn.Linear(D, F_, bias=False)
        self.cm_value = nn.Linear(F_, D, bias=False)
        self.cm_receptance = nn.Linear(D, D, bias=False)

    # -- pieces shared by forward and step --------------------------------------------------------------
    def _time_mix_in(self, x: torch.Tensor, x_prev: torch.Tensor):
        """ddlerp token shift and projections; x, x_prev (B, T, D) -> r, k, v, lw (B, T, H, K), g."""
        B, T, D = x.shape
        dx = x_prev - x  # (B, T, D)
        h = torch.tanh((x + dx * self.mu_x) @ self.mix_a).view(B, T, 5, -1)  # (B, T, 5, R)
        mix = self.mu + torch.einsum("btfr,frd->btfd", h, self.mix_b)  # (B, T, 5, D)
        xw, xk, xv, xr, xg = (x.unsqueeze(2) + dx.unsqueeze(2) * mix).unbind(2)
        lw = -torch.exp(self.w0 + torch.tanh(xw @ self.decay_a) @ self.decay_b)  # (B, T, D) log decay
        heads = (B, T, self.n_head, self.head_dim)
        return (self.receptance(xr).view(heads), self.key(xk).view(heads), self.value(xv).view(heads),
                lw.view(heads), F.silu(self.gate(xg)))

    def _time_mix_out(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """o (B, T, H, V) -> GroupNorm per head, gate, output projection -> (B, T, D)."""
        B, T = o.shape[:2]
        o = self.ln_x(o.reshape(B * T, self.d_model).to(g.dtype)).view(B, T, -1)
        return self.output(o * g)

    def _channel_mix(self, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        dx = x_prev - x  # (B, T, D)
        xk, xr = x + dx * self.cm_mu[0], x + dx * self.cm_mu[1]
        return torch.sigmoid(self.cm_receptance(xr)) * self.cm_value(F.relu(self.cm_key(xk)).square())

    # -- the two modes ----------------------------------------------------------------------------------
    def _segment(self, x: torch.Tensor, carry: tuple, backend: str, want_state: bool):
        """Parallel mode over x (B, T, D) after carry = (the token before x (B, D), the WKV state or None,
        the channel mix's token before x (B, D)): y (B, T, D) and the carry after x."""
        x_before, S, xc_before = carry
        r, k, v, lw, g = self._time_mix_in(x, token_shift(x, x_before))
        if backend == "fla":
            o, S = wkv_fla(r, k, v, lw, self.u, S, want_state)
        else:
            wd = state_dtype(x.dtype)
            o, S = wkv_chunked(*(t.to(wd) for t in (r, k, v, lw, self.u)), S, self.chunk_size)
        a = self._time_mix_out(o, g)  # (B, T, D)
        # Block hands the mixer norm1(x), so the channel-mix residual runs on that: x + a, then LayerNorm.
        xc = self.cm_norm(x + a)
        y = a + self._channel_mix(xc, token_shift(xc, xc_before))
        return y, (x[:, -1], S, xc[:, -1])

    def _run(self, x: torch.Tensor, want_state: bool) -> tuple[torch.Tensor, State | None]:
        """Parallel mode from the empty state; the final state too if `want_state`."""
        backend = pick_backend(self, x)  # the reference where fla cannot serve this call
        B, T, D = x.shape
        zeros = x.new_zeros(B, D)  # no token before the first
        # The reference runs in cache-sized segments of whole chunks, carrying the state across
        # (common.py, `segment_length`); fla takes the sequence in one piece.
        width = 12 * D + int(self.cfg.ffn_ratio * D)  # the ddlerp mixes (5 D), r k v g lw, channel mix
        length = segment_length(B, width, self.chunk_size) if backend == "chunked" else T
        y, (x_last, S, xc_last) = in_segments(lambda seg, c: self._segment(seg, c, backend, want_state), x,
                                              (zeros, None, zeros), length)
        return y, ({"tm_shift": x_last, "wkv": S, "cm_shift": xc_last} if want_state else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, want_state=False)[0]  # (B, T, D)

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, State]:
        y, state = self._run(x, want_state=True)
        state["wkv"] = state["wkv"].to(state_dtype(x.dtype))
        return y, state

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        device, dtype = self.param_dtype_device(device, dtype)
        H, K = self.n_head, self.head_dim
        return {
            "tm_shift": torch.zeros(batch, self.d_model, device=device, dtype=dtype),  # x_{t-1}
            "wkv": torch.zeros(batch, H, K, K, device=device, dtype=state_dtype(dtype)),  # S
            "cm_shift": torch.zeros(batch, self.d_model, device=device, dtype=dtype),  # channel-mix x_{t-1}
        }

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = x_t.unsqueeze(1)  # (B, 1, D)
        r, k, v, lw, g = self._time_mix_in(x, state["tm_shift"].unsqueeze(1))
        S = state["wkv"]
        o, S = wkv_step(*(t[:, 0].to(S.dtype) for t in (r, k, v, lw)), self.u.to(S.dtype), S)
        a = self._time_mix_out(o.unsqueeze(1), g)  # (B, 1, D)
        xc = self.cm_norm(x + a)
        y = a + self._channel_mix(xc, state["cm_shift"].unsqueeze(1))
        return y[:, 0], {"tm_shift": x_t, "wkv": S, "cm_shift": xc[:, 0]}

    def flops(self, seq_len: int) -> int:
        """Projections, both LoRAs, the recurrent-form WKV (update S and read it out: 2 K V multiply-adds
        per head and token) and the channel mix. Elementwise work is left out."""
        D, cfg = self.d_model, self.cfg
        F_ = int(cfg.ffn_ratio * D)
        per_token = (5 * D * D  # r, k, v, g, output
                     + 2 * 5 * cfg.mix_rank * D + 2 * cfg.decay_rank * D  # ddlerp and decay LoRAs
                     + 2 * D * self.head_dim  # WKV: H heads x K x V, twice
                     + 2 * D * F_ + D * D)  # channel mix: key, value, receptance
        return 2 * seq_len * per_token
