"""Induction heads: after a trigger token, recall the token that followed its first occurrence.

Olsson et al. 2022, "In-context Learning and Induction Heads"; as a synthetic task in Fu, Dao et al.
2023 (H3, `safari`'s induction_head data) and Gu & Dao 2023 (Mamba, Sec. 4.1.2, Table 2), which
trains at L = 256 with V = 16 and tests up to L = 2^20 to measure length extrapolation
(`with_length`).

    tokens  0 unused, 1 trigger, random tokens [2, V)
    row     uniform random tokens; the trigger at position p, uniform in [0, L-3], then its value
            (the random token at p + 1); the trigger again at position L-1
    targets the value at position L-1, the only scored position

Worked example, `create("induction", seq_len=10, vocab_size=8)`:

    positions  0   1   2   3   4   5   6   7   8   9
    inputs     7   5   5   3   3   1   2   2   3   1      (trigger at p = 5, value 2)
    targets    .   .   .   .   .   .   .   .   .   2      (. = -100)

`slices` reports accuracy by where the first trigger sits, p / (L-2), in `depth_buckets` buckets.

Glossary: N examples, L = seq_len, V = vocab_size, p first trigger position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbench.tasks import register
from archbench.tasks.base import IGNORE, Task, check_make_args, position_buckets

TRIGGER, FIRST_DATA = 1, 2


@dataclass(frozen=True)
class Config:
    seq_len: int = 64
    vocab_size: int = 16
    depth_buckets: int = 5  # slices: equal-width buckets of the first trigger's position

    def __post_init__(self):
        if self.seq_len < 3:
            raise ValueError(f"induction: seq_len must be >= 3 (trigger, value, trigger), got {self.seq_len}")
        if self.vocab_size <= FIRST_DATA:
            raise ValueError(f"induction: vocab_size must be > {FIRST_DATA} (unused, trigger + data), "
                             f"got {self.vocab_size}")
        if self.depth_buckets < 1:
            raise ValueError(f"induction: depth_buckets must be >= 1, got {self.depth_buckets}")


@register("induction")
class Induction(Task):
    Config = Config

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        check_make_args(n_examples, rng)
        n, length = n_examples, self.cfg.seq_len
        rows = np.arange(n)
        inputs = rng.integers(FIRST_DATA, self.cfg.vocab_size, size=(n, length))  # (N, L)
        pos = rng.integers(0, length - 2, size=n)  # (N,) in [0, L-3]
        inputs[rows, pos] = TRIGGER
        inputs[:, -1] = TRIGGER
        targets = np.full((n, length), IGNORE, dtype=np.int64)  # (N, L)
        targets[:, -1] = inputs[rows, pos + 1]
        return inputs, targets

    def slices(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        pos = np.argmax(inputs[:, :-1] == TRIGGER, axis=1)  # (N,)
        return position_buckets(pos, self.seq_len - 2, self.cfg.depth_buckets, targets != IGNORE)
