"""Passkey (needle-in-a-haystack) retrieval at a chosen depth.

After Mohtashami & Jaggi 2023, "Landmark Attention" (passkey retrieval), reduced to tokens: one
(key, value) needle sits at a depth among noise tokens and the last position repeats the key; the
model must answer with the value. Token ranges are disjoint, so the key occurs exactly twice.

    keys   [1, V/4)     values [V/4, V/2)     noise [V/2, V)     (0 is unused)
    needle key at position p, value at p + 1, p in [0, L-3]: p = round(depth * (L - 3)), or
           uniform when depth is None
    query  the key again at position L-1; its target is the value, the only scored position

Worked example, `create("passkey", seq_len=12, vocab_size=16, depth=0.5)` (noise 8..15):

    positions  0   1   2   3   4   5   6   7   8   9  10  11
    inputs    14  13  12  10   2   6   8   8   9  14  13   2      (needle 2 6 at p = round(0.5 * 9) = 4)
    targets    .   .   .   .   .   .   .   .   .   .   .   6      (. = -100)

`slices` reports accuracy by needle depth p / (L-2) in `depth_buckets` equal buckets
(`depth_00-20%`, ...), read back from the inputs so it also works on stored data.

Glossary: N examples, L = seq_len, V = vocab_size, p needle position, depth = p / (L - 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbench.tasks import register
from archbench.tasks.base import IGNORE, Task, check_make_args, position_buckets


@dataclass(frozen=True)
class Config:
    seq_len: int = 64
    vocab_size: int = 64
    depth: float | None = None  # needle depth in [0, 1]; None = uniform over positions
    depth_buckets: int = 5  # slices: equal-width depth buckets

    def __post_init__(self):
        if self.seq_len < 3:
            raise ValueError(f"passkey: seq_len must be >= 3 (needle key, value, query), got {self.seq_len}")
        if self.vocab_size < 8:
            raise ValueError(f"passkey: vocab_size must be >= 8 (keys, values, noise ranges), "
                             f"got {self.vocab_size}")
        if self.depth is not None and not 0.0 <= self.depth <= 1.0:
            raise ValueError(f"passkey: depth must be in [0, 1] or None, got {self.depth}")
        if self.depth_buckets < 1:
            raise ValueError(f"passkey: depth_buckets must be >= 1, got {self.depth_buckets}")


@register("passkey")
class Passkey(Task):
    Config = Config

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        check_make_args(n_examples, rng)
        n, length, v = n_examples, self.cfg.seq_len, self.cfg.vocab_size
        rows = np.arange(n)
        inputs = rng.integers(v // 2, v, size=(n, length))  # (N, L) noise
        key = rng.integers(1, v // 4, size=n)  # (N,)
        value = rng.integers(v // 4, v // 2, size=n)  # (N,)
        if self.cfg.depth is None:
            pos = rng.integers(0, length - 2, size=n)  # (N,) in [0, L-3]
        else:
            pos = np.full(n, round(self.cfg.depth * (length - 3)), dtype=np.int64)
        inputs[rows, pos] = key
        inputs[rows, pos + 1] = value
        inputs[:, -1] = key
        targets = np.full((n, length), IGNORE, dtype=np.int64)  # (N, L)
        targets[:, -1] = value
        return inputs, targets

    def slices(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        pos = np.argmax(inputs[:, :-1] == inputs[:, -1:], axis=1)  # (N,) first occurrence of the key
        return position_buckets(pos, self.seq_len - 2, self.cfg.depth_buckets, targets != IGNORE)
