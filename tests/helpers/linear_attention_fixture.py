"""Test fixture: a small decayed linear-attention mixer with a chunked parallel path, correct or broken.

Per head, with a learned decay γ in (0, 1) (RetNet-style retention without the normaliser):
    S_t = γ S_{t-1} + k_tᵀ v_t,    y_t = q_t S_t                        (state S: K x V per head)
Parallel mode runs it in chunks of Q tokens: inside a chunk y = ((q kᵀ) ∘ Γ) v with Γ[i, j] = γ^(i-j)
for i >= j, plus q_i γ^(i+1) S_in from the state carried in; after the chunk
S = γ^L S_in + Σ_j γ^(L-1-j) k_jᵀ v_j. `step` is the recurrence itself.

`LinearAttention` is right. `LinearAttentionNoCarry` drops the cross-chunk state update (every chunk
starts from the state the sequence started with), a bug a check at one length
shorter than the chunk never sees: conformance must fail it. Neither is registered; tests register
them for the duration of a test (`MIXERS.registered`).

Glossary: B batch, T length, D d_model, H heads, K = V = head_dim, Q chunk_size, L the current
chunk's length (Q, or less for the last one), q k v (B, H, T, K), S (B, H, K, V).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs.base import Mixer


@dataclass(frozen=True)
class Config:
    head_dim: int = 8


class LinearAttention(Mixer):
    Config = Config
    complexity = "linear"
    backends = ("chunked",)
    chunk_size = 64  # longer than the old single check length (37): only the boundary lengths catch a bug
    conformance_configs = ({"head_dim": 16},)
    carry_state = True  # False: the bug — the state is not carried from one chunk to the next

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        self.n_head = d_model // cfg.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.decay_logit = nn.Parameter(torch.linspace(1.0, 4.0, self.n_head))  # γ = sigmoid: 0.73..0.98

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T, D) -> q, k, v, each (B, H, T, K); k scaled by 1/√K to keep S small."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
        return q, k / k.shape[-1] ** 0.5, v

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel mode from the zero state: y (B, T, D) and the final state (B, H, K, V)."""
        self.last_backend = "chunked"
        q, k, v = self._heads(x)
        B, H, T, K = q.shape
        log_g = F.logsigmoid(self.decay_logit)[:, None, None]  # (H, 1, 1)
        S0 = x.new_zeros(B, H, K, K)
        S, ys = S0, []
        for t0 in range(0, T, self.chunk_size):
            qc, kc, vc = (t[:, :, t0:t0 + self.chunk_size] for t in (q, k, v))  # (B, H, L, K)
            i = torch.arange(qc.shape[2], device=x.device, dtype=x.dtype)
            gap = i[:, None] - i[None, :]  # (L, L): i - j
            decay = torch.where(gap >= 0, torch.exp(log_g * gap.clamp(min=0)), 0.0)  # (H, L, L) Γ
            y = ((qc @ kc.transpose(-1, -2)) * decay) @ vc  # (B, H, L, V)
            S_in = S if self.carry_state else S0
            y = y + (qc * torch.exp(log_g * (i[:, None] + 1))) @ S_in
            S = torch.exp(log_g * len(i)) * S_in + (kc * torch.exp(log_g * (len(i) - 1 - i[:, None]))
                                                    ).transpose(-1, -2) @ vc
            ys.append(y)
        y = torch.cat(ys, 2).transpose(1, 2).reshape(B, T, -1)  # (B, T, D)
        return self.out(y), S

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, dict]:
        y, S = self._run(x)
        return y, {"S": S}

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        K = self.cfg.head_dim
        return {"S": torch.zeros(batch, self.n_head, K, K, device=device, dtype=dtype)}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        q, k, v = (t[:, :, 0] for t in self._heads(x_t[:, None]))  # (B, H, K)
        g = torch.sigmoid(self.decay_logit)[:, None, None]  # (H, 1, 1)
        S = g * state["S"] + k[..., :, None] * v[..., None, :]  # (B, H, K, V)
        y = (q[..., None, :] @ S)[..., 0, :]  # (B, H, V)
        return self.out(y.reshape(x_t.shape[0], -1)), {"S": S}

    def flops(self, seq_len: int) -> int:
        D, Q = self.d_model, min(self.chunk_size, seq_len)
        return 2 * seq_len * (4 * D * D + 2 * Q * D + 2 * D * self.cfg.head_dim)


class LinearAttentionNoCarry(LinearAttention):
    carry_state = False
