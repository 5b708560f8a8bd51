"""Multi-query associative recall (MQAR), the Zoology recipe.

Arora, Eyuboglu et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language Models"
(arXiv:2312.04927), Sec. 3 and `zoology/data/multiquery_ar.py`. A row first lists K key-value pairs,
then asks for every key once; the answer to a query is the value bound to that key earlier.

    keys   K distinct tokens from [1, V/2), in random order
    values K distinct tokens from [V/2, V) (Zoology draws them without replacement too)
    context positions 0 .. 2K-1:  k_1 v_1 k_2 v_2 ... k_K v_K
    queries the rest of the row has S = (L - 2K) // 2 query slots, at positions 2K + 2g for gap
            g = 0 .. S-1 (even offsets, so a query never sits right before another query);
            K distinct gaps are drawn without replacement with p(g) ∝ a (g+1)^(a-1): a power law
            (a = power_a = 0.01) that puts most queries close to the context, as repeated bigrams
            are in natural text. As in Zoology, the i-th drawn gap takes the i-th key.
    filler  every other position is 0 (Zoology's `random_non_queries=True` fills them with uniform
            random tokens from [0, V) instead; set `random_non_queries` for that)
    targets the bound value at each query position, IGNORE elsewhere: exactly K scored per row.

Worked example, `create("mqar", seq_len=16, num_kv_pairs=2, vocab_size=16)` (keys 1..7, values 8..15):

    positions  0   1   2   3   4   5   6   7   8   9  10  11  12  13  14  15
    inputs     6   8   2  10   0   0   6   0   0   0   0   0   0   0   2   0
    targets    .   .   .   .   .   .   8   .   .   .   .   .   .   .  10   .      (. = -100)

    (pairs 6->8, 2->10; S = 6 slots at 4, 6, ..., 14; drawn gaps 1 and 5)

Glossary: N examples, L = seq_len, V = vocab_size, K = num_kv_pairs, S query slots, a = power_a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbench.tasks import register
from archbench.tasks.base import IGNORE, Task, check_make_args, sample_distinct


@dataclass(frozen=True)
class Config:
    seq_len: int = 64
    num_kv_pairs: int = 4
    vocab_size: int = 8192
    power_a: float = 0.01  # power-law exponent of the query gaps; 1.0 is uniform
    random_non_queries: bool = False  # Zoology's newer default is True: filler = random tokens

    def __post_init__(self):
        k, length, v = self.num_kv_pairs, self.seq_len, self.vocab_size
        if k < 1:
            raise ValueError(f"mqar: num_kv_pairs must be >= 1, got {k}")
        if (length - 2 * k) // 2 < k:
            raise ValueError(
                f"mqar: seq_len={length} too short for num_kv_pairs={k}: the 2K={2 * k} context tokens "
                f"leave {max(length - 2 * k, 0) // 2} query slots (every other position) for K={k} "
                f"queries; need seq_len >= 4K = {4 * k}"
            )
        if v // 2 - 1 < k:
            raise ValueError(f"mqar: vocab_size={v} has {max(v // 2 - 1, 0)} key tokens [1, V/2) for "
                             f"num_kv_pairs={k} distinct keys; need vocab_size >= {2 * k + 2}")
        if not self.power_a > 0:
            raise ValueError(f"mqar: power_a must be > 0, got {self.power_a}")


@register("mqar")
class MQAR(Task):
    Config = Config

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        check_make_args(n_examples, rng)
        n, k, length, v = n_examples, self.cfg.num_kv_pairs, self.cfg.seq_len, self.cfg.vocab_size
        keys = sample_distinct(rng, n, k, 1, v // 2)  # (N, K)
        values = sample_distinct(rng, n, k, v // 2, v)  # (N, K)

        # Power-law gaps without replacement, in draw order: successive sampling (np.random.choice,
        # replace=False, p=p) is the same distribution as sorting log p + Gumbel noise descending
        # (Gumbel-top-k), which vectorises over rows.
        slots = (length - 2 * k) // 2
        a = self.cfg.power_a
        log_p = (a - 1) * np.log(np.arange(1, slots + 1))  # (S,), log of a x^(a-1) up to a constant
        score = log_p + rng.gumbel(size=(n, slots))  # (N, S)
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]  # (N, K), unordered
        order = np.argsort(-np.take_along_axis(score, top, 1), axis=1)
        gaps = np.take_along_axis(top, order, 1)  # (N, K), i-th drawn gap first
        query_pos = 2 * k + 2 * gaps  # (N, K)

        inputs = np.zeros((n, length), dtype=np.int64)  # (N, L)
        if self.cfg.random_non_queries:
            inputs[:] = rng.integers(0, v, size=(n, length))
        inputs[:, 0:2 * k:2] = keys
        inputs[:, 1:2 * k:2] = values
        np.put_along_axis(inputs, query_pos, keys, axis=1)
        targets = np.full((n, length), IGNORE, dtype=np.int64)  # (N, L)
        np.put_along_axis(targets, query_pos, values, axis=1)
        return inputs, targets

    def slices(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """By query index: the j-th query of a row (in order of position), in up to 4 equal groups."""
        k = self.cfg.num_kv_pairs
        scored = targets != IGNORE  # (N, L)
        ordinal = np.cumsum(scored, axis=1) - 1  # (N, L), 0-based index of the query at that position
        n_groups = min(k, 4)
        group = ordinal * n_groups // k
        out = {}
        for g in range(n_groups):
            lo, hi = g * k // n_groups + 1, (g + 1) * k // n_groups  # 1-based, inclusive
            out[f"query_{lo}" if lo == hi else f"query_{lo}-{hi}"] = scored & (group == g)
        return out
