"""String copying: read a random string, then repeat it.

Jelassi, Brandfonbrener, Kakade, Malach 2024, "Repeat After Me: Transformers are Better than State
Space Models at Copying" (arXiv:2402.01032), Sec. 4: a fixed-size state cannot hold an arbitrarily
long string, attention can look it up; the gap shows when testing on strings longer than training.

    tokens  0 PAD, 1 BOS, 2 SEP, data [3, V)
    row     BOS s SEP s PAD ... with s of n uniform data tokens, n uniform in [min_len, max_len]
    targets next-token targets on the copy: the SEP position predicts s_1, the position of copied
            s_i predicts s_{i+1}; n scored positions; BOS, the source string and PAD are unscored

Worked example, `create("copy", seq_len=10, max_len=4, min_len=3, vocab_size=8)`:

    positions  0   1   2   3   4   5   6   7   8   9
    inputs     1   7   6   5   2   7   6   5   0   0      (BOS 7 6 5 SEP 7 6 5 PAD PAD)
    targets    .   .   .   .   7   6   5   .   .   .      (. = -100)

`with_length(L)` sets max_len = (L - 2) // 2 and, when L is longer than this task's seq_len,
min_len = old max_len + 1, so every test string is longer than any training string.

Glossary: N examples, L = seq_len, V = vocab_size, n string length, s the string.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from archbench.tasks import register
from archbench.tasks.base import IGNORE, Task, check_make_args

PAD, BOS, SEP, FIRST_DATA = 0, 1, 2, 3


@dataclass(frozen=True)
class Config:
    seq_len: int = 34
    max_len: int = 16  # longest string; needs 2 * max_len + 2 <= seq_len
    min_len: int = 4  # shortest string (short strings would repeat across seeds and be trivial)
    vocab_size: int = 32

    def __post_init__(self):
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"copy: need 1 <= min_len <= max_len, got min_len={self.min_len}, "
                             f"max_len={self.max_len}")
        if 2 * self.max_len + 2 > self.seq_len:
            raise ValueError(f"copy: seq_len={self.seq_len} cannot hold BOS s SEP s for max_len="
                             f"{self.max_len}; need seq_len >= 2 * max_len + 2 = {2 * self.max_len + 2}")
        if self.vocab_size <= FIRST_DATA:
            raise ValueError(f"copy: vocab_size must be > {FIRST_DATA} (PAD, BOS, SEP + data), "
                             f"got {self.vocab_size}")


@register("copy")
class Copy(Task):
    Config = Config

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        check_make_args(n_examples, rng)
        cfg, n = self.cfg, n_examples
        m = cfg.max_len
        s = rng.integers(FIRST_DATA, cfg.vocab_size, size=(n, m))  # (N, m), only the first n_i used
        lens = rng.integers(cfg.min_len, m + 1, size=n)  # (N,)
        j = np.arange(m)  # (m,)
        live = j < lens[:, None]  # (N, m)
        rows = np.arange(n)[:, None]

        inputs = np.full((n, cfg.seq_len), PAD, dtype=np.int64)  # (N, L)
        inputs[:, 0] = BOS
        inputs[:, 1:m + 1] = np.where(live, s, PAD)
        inputs[rows[:, 0], lens + 1] = SEP
        copy_pos = lens[:, None] + 2 + j  # (N, m), where s_j is repeated
        r, c = np.nonzero(live)
        inputs[r, copy_pos[r, c]] = s[r, c]

        targets = np.full((n, cfg.seq_len), IGNORE, dtype=np.int64)  # (N, L)
        targets[r, copy_pos[r, c] - 1] = s[r, c]  # the position before copied s_j predicts s_j
        return inputs, targets

    def with_length(self, seq_len: int) -> Copy:
        max_len = (seq_len - 2) // 2
        min_len = self.cfg.max_len + 1 if seq_len > self.cfg.seq_len else self.cfg.min_len
        return Copy(dataclasses.replace(self.cfg, seq_len=seq_len, max_len=max_len,
                                        min_len=min(min_len, max(max_len, 1))))
