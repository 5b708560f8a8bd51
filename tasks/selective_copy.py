"""Selective copying: remember the data tokens scattered among noise, then replay them in order.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv:2312.00752),
Sec. 3.1 and Fig. 2 (from Arjovsky et al. 2016's copying task, with random spacing): because the
data positions vary, a time-invariant (LTI) recurrence cannot solve it; content-aware selection can.
The Mamba paper uses L = 4096, 16 data tokens and V = 16.

    tokens  0 noise, 1 marker, data [2, V)
    row     C = L - K context positions holding K data tokens at random distinct positions (in
            order of position) and noise elsewhere, then K markers
    targets the j-th marker position's target is the j-th data token: the model writes the data
            out in order while it reads markers; only those K positions are scored

Worked example, `create("selective_copy", seq_len=10, num_tokens=3, vocab_size=8)`:

    positions  0   1   2   3   4   5   6   7   8   9
    inputs     0   7   6   5   0   0   0   1   1   1
    targets    .   .   .   .   .   .   .   7   6   5      (. = -100)

Glossary: N examples, L = seq_len, V = vocab_size, K = num_tokens, C = L - K context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbench.tasks import register
from archbench.tasks.base import IGNORE, Task, check_make_args, sample_distinct

NOISE, MARKER, FIRST_DATA = 0, 1, 2


@dataclass(frozen=True)
class Config:
    seq_len: int = 64
    num_tokens: int = 8  # K data tokens to copy
    vocab_size: int = 16

    def __post_init__(self):
        if self.num_tokens < 1:
            raise ValueError(f"selective_copy: num_tokens must be >= 1, got {self.num_tokens}")
        if self.seq_len < 2 * self.num_tokens:
            raise ValueError(f"selective_copy: seq_len={self.seq_len} cannot hold {self.num_tokens} data "
                             f"tokens and {self.num_tokens} markers; need seq_len >= {2 * self.num_tokens}")
        if self.vocab_size <= FIRST_DATA:
            raise ValueError(f"selective_copy: vocab_size must be > {FIRST_DATA} (noise, marker + data), "
                             f"got {self.vocab_size}")


@register("selective_copy")
class SelectiveCopy(Task):
    Config = Config

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        check_make_args(n_examples, rng)
        n, k, length = n_examples, self.cfg.num_tokens, self.cfg.seq_len
        context = length - k
        pos = np.sort(sample_distinct(rng, n, k, 0, context), axis=1)  # (N, K), in order
        data = rng.integers(FIRST_DATA, self.cfg.vocab_size, size=(n, k))  # (N, K)

        inputs = np.full((n, length), NOISE, dtype=np.int64)  # (N, L)
        np.put_along_axis(inputs, pos, data, axis=1)
        inputs[:, context:] = MARKER
        targets = np.full((n, length), IGNORE, dtype=np.int64)  # (N, L)
        targets[:, context:] = data
        return inputs, targets
