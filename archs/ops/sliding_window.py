"""Sliding-window causal softmax attention: each query attends to the last `window` keys, itself included.

Mistral 7B (Jiang et al. 2023, arXiv 2310.06825, §2 "Sliding Window Attention"); Samba (Ren et al. 2024,
arXiv 2406.07522) and Gemma 3 use the same band. Query t reads keys s with t - w < s <= t:

    o_t = Σ_s softmax_s(q_t · k_s / √d) v_s        over s in (t - w, t]

`sliding_window_sequential` is the definition, one softmax per query over its own window (a loop over
time, the reference). `sliding_window_banded` is the parallel form: queries in blocks of Q >= w tokens,
each block against the w - 1 keys before it and its own Q keys, under one (Q, Q + w - 1) band mask shared
by every block. Work and memory are O(T (Q + w) d): linear in T for a fixed window, and no (T, T) mask or
score matrix is ever built. Both take and return (B, H, T, d) tensors; the layer
(archs/mixers/attention_layer.py with a window, registered as "swa") keeps the KV ring buffer, so these
ops have no state argument.

Glossary:
    B, H, T, d    batch, heads, sequence length, head width
    w             window: number of keys a query sees (itself and the w - 1 before it)
    Q             query block of the banded form (>= w, so a block's keys reach back at most one block)
    span          Q + w - 1, the keys one block reads
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_SCORE_ELEMENTS = 1 << 21  # size of the (blocks, Q, span) score tensors built in one SDPA call


def band_mask(n_query: int, n_key: int, window: int, device=None) -> torch.Tensor:
    """(n_query, n_key) bool, True where allowed, for queries that are the LAST n_query of the n_key
    positions: query i sits at key index i + n_key - n_query and sees the `window` keys ending there."""
    i = torch.arange(n_query, device=device)[:, None] + (n_key - n_query)
    j = torch.arange(n_key, device=device)[None, :]
    return (j <= i) & (j > i - window)


def sliding_window_sequential(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Reference: each query t takes a softmax over its window of keys (t - w, t]. (B, H, T, d) in and out."""
    T, scale = q.shape[2], 1 / math.sqrt(q.shape[-1])
    out = []
    for t in range(T):
        s0 = max(0, t - window + 1)
        scores = torch.einsum("bhd,bhsd->bhs", q[:, :, t], k[:, :, s0:t + 1]) * scale  # (B, H, <= w)
        out.append(torch.einsum("bhs,bhsd->bhd", scores.softmax(-1), v[:, :, s0:t + 1]))
    return torch.stack(out, 2)


def sliding_window_banded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                          block: int = 64) -> torch.Tensor:
    """The banded parallel form: same arguments and result as `sliding_window_sequential`, O(T (Q + w)).

    Q = max(block, window). The first block attends to its own keys; every later block of Q queries to
    the w - 1 keys before it and its own Q, all under the same band mask, several blocks per SDPA call.
    """
    B, H, T, d = q.shape
    w = window
    Q = max(block, w)
    first = min(Q, T)
    out = [F.scaled_dot_product_attention(q[:, :, :first], k[:, :, :first], v[:, :, :first],
                                          attn_mask=band_mask(first, first, w, q.device))]
    if T > Q:
        n = -(-(T - Q) // Q)  # blocks after the first
        pad = n * Q - (T - Q)  # padded queries are dropped; padded keys lie after every real query
        span = Q + w - 1

        def tail(t):  # (B, H, T, d) -> (B, H, n*Q + w - 1, d): from w - 1 keys before block 1 to the end
            return F.pad(t[:, :, Q - (w - 1):], (0, 0, 0, pad))

        qb = F.pad(q[:, :, Q:], (0, 0, 0, pad)).unflatten(2, (n, Q))  # (B, H, n, Q, d)
        kb, vb = (tail(t).unfold(2, span, Q).transpose(-1, -2) for t in (k, v))  # (B, H, n, span, d) views
        mask = band_mask(Q, span, w, q.device)  # (Q, span), the same for every block
        g = max(1, _SCORE_ELEMENTS // (B * H * Q * span))  # blocks per call: scores stay cache-sized
        for s in range(0, n, g):
            e = min(n, s + g)
            qs, ks, vs = (t[:, :, s:e].flatten(1, 2) for t in (qb, kb, vb))  # (B, H*(e-s), ·, d)
            out.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask).unflatten(1, (H, e - s))
                       .flatten(2, 3))  # (B, H, (e-s)*Q, d)
    return torch.cat(out, 2)[:, :, :T]
