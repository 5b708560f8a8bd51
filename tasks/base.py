"""The task contract: a frozen config plus a pure generator of (inputs, targets).

A *task* makes int64 arrays `inputs, targets` of shape (N, L). `targets[i, t]` is the token the model
should output at position t (usually the next token); positions that are not scored hold `IGNORE`
(-100, the `ignore_index` of `torch.nn.functional.cross_entropy`). Generators draw only from the
`numpy.random.Generator` they are given, so the same seed gives the same data and no global RNG
(numpy, `random`, torch) is touched.

Glossary: N examples, L = seq_len, V = vocab_size, K items to recall (pairs, tokens).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

IGNORE = -100  # target at unscored positions


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task and its Config overrides: what a retrieval cell trains and scores on."""

    name: str
    config: dict[str, Any]

    def field(self, name: str) -> Any:
        """A Config field as the task runs it: the override, else the task's default, else None."""
        if name in self.config:
            return self.config[name]
        from archbench.tasks import get

        defaults = {f.name: f.default for f in dataclasses.fields(get(self.name).Config)}
        return defaults.get(name)


class Task(abc.ABC):
    """Base class of every synthetic task. Subclasses set `Config` and implement `make`."""

    name: ClassVar[str] = "?"  # set by @register
    Config: ClassVar[type]  # frozen dataclass with `seq_len` and `vocab_size`; defaults are tiny

    def __init__(self, cfg: Any = None):
        self.cfg = cfg if cfg is not None else self.Config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg})"

    @property
    def seq_len(self) -> int:
        return self.cfg.seq_len

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    @abc.abstractmethod
    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`(inputs, targets)`, int64 arrays of shape (n_examples, seq_len); IGNORE where unscored."""

    def slices(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Named boolean masks (N, L), each a subset of the scored positions, for per-slice accuracy."""
        return {}

    def with_length(self, seq_len: int) -> Task:
        """The same task at another sequence length (e.g. longer than training)."""
        return type(self)(dataclasses.replace(self.cfg, seq_len=seq_len))


# -- helpers shared by the built-in tasks -------------------------------------------------------------
def check_make_args(n_examples: int, rng: Any) -> None:
    """Reject the two easy mistakes: a negative count, and a seed or `np.random` instead of a Generator."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if int(n_examples) != n_examples or n_examples < 0:
        raise ValueError(f"n_examples must be a non-negative integer, got {n_examples!r}")


def sample_distinct(rng: np.random.Generator, n: int, k: int, low: int, high: int) -> np.ndarray:
    """(n, k) int64: each row k distinct integers from [low, high), uniform over ordered k-tuples.

    Vectorised over rows. With a pool at least 8k: draw with replacement, then redraw every entry
    that repeats an earlier one in its row, until no row repeats (each redraw collides with
    probability < k / pool <= 1/8, so few rounds). Relabelling the pool maps this process onto
    itself, so every ordered tuple of distinct values is equally likely. Otherwise take the k
    smallest of `pool` uniform keys per row, in row chunks to bound memory.
    """
    pool = high - low
    if not 0 <= k <= pool:
        raise ValueError(f"cannot draw {k} distinct values from [{low}, {high})")
    if 8 * k <= pool:
        out = rng.integers(low, high, size=(n, k))  # (N, K)
        rows = np.arange(n)
        while rows.size:
            sub = out[rows]  # (n_r, K)
            order = np.argsort(sub, axis=1, kind="stable")
            srt = np.take_along_axis(sub, order, 1)
            repeat = np.zeros(sub.shape, dtype=bool)  # (n_r, K): equals an earlier entry of its row
            np.put_along_axis(repeat, order[:, 1:], srt[:, 1:] == srt[:, :-1], 1)
            keep = repeat.any(axis=1)
            rows, repeat = rows[keep], repeat[keep]
            r, c = np.nonzero(repeat)
            out[rows[r], c] = rng.integers(low, high, size=r.size)
        return out
    out = np.empty((n, k), dtype=np.int64)
    chunk = max(1, (1 << 22) // pool)  # about 2^22 float64 keys per chunk, whatever the pool
    for start in range(0, n, chunk):
        u = rng.random((min(chunk, n - start), pool))  # (n_chunk, pool)
        idx = np.argpartition(u, k - 1, axis=1)[:, :k] if k else np.empty((len(u), 0), np.int64)
        order = np.argsort(np.take_along_axis(u, idx, 1), axis=1)  # argpartition's order is not random
        out[start:start + len(u)] = low + np.take_along_axis(idx, order, 1)
    return out


def position_buckets(pos: np.ndarray, span: int, n_buckets: int, scored: np.ndarray,
                     label: str = "depth") -> dict[str, np.ndarray]:
    """Split scored positions by where a row's needle sits: `pos` (N,) in [0, span), equal-width buckets.

    Returns `{f"{label}_{lo:02d}-{hi:02d}%": mask}` with masks (N, L), each `scored` restricted to the
    rows whose needle falls in that bucket.
    """
    bucket = np.minimum(pos * n_buckets // max(span, 1), n_buckets - 1)  # (N,)
    out = {}
    for b in range(n_buckets):
        lo, hi = 100 * b // n_buckets, 100 * (b + 1) // n_buckets
        out[f"{label}_{lo:02d}-{hi:02d}%"] = scored & (bucket == b)[:, None]  # (N, L)
    return out
