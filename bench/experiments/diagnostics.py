"""Per-layer diagnostics logged with a learning curve: what each mixer writes into the residual stream.

The answer-prior plateau (MQAR's loss stuck at ln(#values)) comes with a mixer output that is mostly
one vector, the same at every position and in every row: the model writes the answer prior into the
residual and nothing about the context. Two numbers per layer show it, over the scored evaluation
rows at every evaluation:

    rms          sqrt(mean |y|^2 / D): the size of the mixer's output y (B, T, D)
    const_share  |mean y|^2 / mean |y|^2, the mean over every position of every row: 1 when every
                 position gets the same vector, about 1 / (B T) for unrelated outputs
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class LayerStats:
    """Running sums of each mixer's output over the forward passes inside `watch`."""

    def __init__(self, n_layers: int):
        self.sum: list[torch.Tensor | None] = [None] * n_layers  # (D,) sum of y over positions
        self.sq = [0.0] * n_layers  # sum of |y|^2
        self.count = [0] * n_layers  # positions seen

    def add(self, i: int, y: torch.Tensor) -> None:
        y = y.detach().float().reshape(-1, y.shape[-1])  # (B*T, D)
        s = y.sum(0)
        self.sum[i] = s if self.sum[i] is None else self.sum[i] + s
        self.sq[i] += float((y * y).sum())
        self.count[i] += y.shape[0]

    def rms(self) -> list[float | None]:
        return [(sq / (n * s.numel())) ** 0.5 if n else None
                for sq, n, s in zip(self.sq, self.count, self.sum, strict=True)]

    def const_share(self) -> list[float | None]:
        out = []
        for s, sq, n in zip(self.sum, self.sq, self.count, strict=True):
            out.append(float((s / n).pow(2).sum()) / (sq / n) if n and sq > 0 else None)
        return out


@contextmanager
def watch(mixers: list[nn.Module]) -> Iterator[LayerStats]:
    """Collect `LayerStats` of `mixers`' outputs for the forward passes run inside the block."""
    stats = LayerStats(len(mixers))
    handles = [m.register_forward_hook(lambda mod, args, out, i=i: stats.add(i, out))
               for i, m in enumerate(mixers)]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
