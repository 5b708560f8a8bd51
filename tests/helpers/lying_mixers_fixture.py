"""Test fixture: mixers that lie to the conformance suite, each passing every check it had before
(shape, parity, prefill-then-step, causality, state bytes, determinism).

`ListCacheAttention` declares `complexity = "linear"` and a 4-byte state, but keeps its KV cache in a
Python list on the module: `state_bytes` reads 4 B while every `step` attends over all the tokens so
far. `step_uses_only_its_state` (the cache is not in the state) and `linear_cost` (one step costs more
as the context grows; the forward is softmax attention, T²) must fail it.

`PairwiseLinearAttention` is decayed linear attention computed in its quadratic form through a
(B, T, T, D) tensor, with a quadratic `flops()`, still declaring `linear`. Its `step` is the honest
fixed-size recurrence, so only `linear_cost` can catch it. `PairwiseFormOnly` keeps the quadratic
forward but reports linear flops (caught by counting the forward's work), `QuadraticFlopsOnly` is the
right chunked forward reporting quadratic flops (caught by `flops()` alone).

None is registered; tests register them for the duration of a test (`MIXERS.registered`).

Glossary: B batch, T length, D d_model, q k v (B, T, D), γ the decay in (0, 1), S (B, D, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archbench.archs.base import Mixer
from helpers.linear_attention_fixture import LinearAttention

_KV: list[torch.Tensor] = []  # the lie: the decode cache lives here, outside the state


@dataclass(frozen=True)
class Config:
    pass


class _Projections(Mixer):
    Config = Config
    complexity = "linear"  # the lie these mixers tell

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q, k, v = self.qkv(x).chunk(3, -1)  # (..., D) each
        return q, k / self.d_model ** 0.5, v


class ListCacheAttention(_Projections):
    """Single-head causal softmax attention whose decode cache is the module-level list `_KV`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)  # (B, T, D)
        T = x.shape[1]
        scores = q @ k.transpose(1, 2)  # (B, T, T)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), -torch.inf)
        return self.out(scores.softmax(-1) @ v)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, _ = self.param_dtype_device(device, dtype)
        if device.type != "meta":  # a new sequence: forget the old one (state_bytes asks on meta)
            _KV.clear()
        return {"t": torch.zeros(1, dtype=torch.int32, device=device)}  # 4 bytes: what state_bytes sees

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        q, k, v = self._qkv(x_t)  # (B, D)
        _KV.append(torch.stack([k, v]))  # (2, B, D), kept on the module
        kv = torch.stack(_KV, 2)  # (2, B, t, D): grows with the context
        p = (kv[0] @ q[..., None]).squeeze(-1).softmax(-1)  # (B, t)
        y = (p[:, None] @ kv[1]).squeeze(1)  # (B, D)
        return self.out(y), {"t": state["t"] + 1}

    def flops(self, seq_len: int) -> int:
        return 2 * seq_len * 4 * self.d_model ** 2  # the projections only: as linear as the claim


class PairwiseLinearAttention(_Projections):
    """S_t = γ S_{t-1} + k_tᵀ v_t, y_t = q_t S_t, but the forward builds every (t, s) pair."""

    gamma = 0.9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)  # (B, T, D)
        T = x.shape[1]
        i = torch.arange(T, device=x.device, dtype=x.dtype)
        gap = i[:, None] - i[None, :]  # (T, T): t - s
        decay = torch.where(gap >= 0, self.gamma ** gap.clamp(min=0), 0.0)  # (T, T)
        pairs = q[:, :, None, :] * k[:, None, :, :]  # (B, T, T, D): the quadratic intermediate
        weights = pairs.sum(-1) * decay  # (B, T, T)
        return self.out(weights @ v)

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> dict[str, torch.Tensor]:
        device, dtype = self.param_dtype_device(device, dtype)
        return {"S": torch.zeros(batch, self.d_model, self.d_model, device=device, dtype=dtype)}

    def step(self, x_t: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        q, k, v = self._qkv(x_t)  # (B, D)
        S = self.gamma * state["S"] + k[:, :, None] * v[:, None, :]  # (B, D, D)
        return self.out((q[:, None] @ S).squeeze(1)), {"S": S}

    def flops(self, seq_len: int) -> int:
        return 2 * seq_len * 4 * self.d_model ** 2 + 4 * seq_len ** 2 * self.d_model  # honest: T² D


class PairwiseFormOnly(PairwiseLinearAttention):
    def flops(self, seq_len: int) -> int:
        return 2 * seq_len * 4 * self.d_model ** 2 + 4 * seq_len * self.d_model ** 2  # claims O(T)


class QuadraticFlopsOnly(LinearAttention):
    def flops(self, seq_len: int) -> int:
        return super().flops(seq_len) + 2 * seq_len ** 2 * self.d_model
