"""The banded sliding-window op against the per-query reference: values and gradients, odd lengths."""

import pytest
import torch
from helpers.op_parity import assert_op_matches_reference

from archbench.archs.ops.sliding_window import band_mask, sliding_window_banded, sliding_window_sequential

BLOCK = 8  # Q; the lengths below sit around it: 1, Q - 1, Q + 1, 2Q + 3


def _inputs(T: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, T, 4, dtype=torch.float64, generator=g).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("window", [1, 3, BLOCK, 11])  # w < Q, w = Q, w > Q (the block grows to w)
@pytest.mark.parametrize("T", [1, BLOCK - 1, BLOCK + 1, 2 * BLOCK + 3, 40])
def test_banded_matches_sequential_values_and_gradients(T: int, window: int) -> None:
    assert_op_matches_reference(lambda q, k, v: (sliding_window_banded(q, k, v, window, BLOCK),),
                                lambda q, k, v: (sliding_window_sequential(q, k, v, window),),
                                _inputs(T), rtol=1e-10, atol=1e-10)


def test_window_covering_the_sequence_is_causal_attention() -> None:
    q, k, v = (t.detach() for t in _inputs(2 * BLOCK + 3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(sliding_window_banded(q, k, v, 100, BLOCK), full)


def test_a_key_outside_the_window_has_no_effect() -> None:
    """Changing key/value t - w leaves query t unchanged; changing t - w + 1 moves it."""
    w, t = 5, 30
    q, k, v = (x.detach() for x in _inputs(40))
    y = sliding_window_banded(q, k, v, w, BLOCK)
    for s, moves in ((t - w, False), (t - w + 1, True)):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, s] += 1.0
        v2[:, :, s] += 1.0
        moved = (sliding_window_banded(q, k2, v2, w, BLOCK)[:, :, t] - y[:, :, t]).abs().max().item()
        assert (moved > 1e-6) == moves, (s, moved)


def test_band_mask_counts_window_keys_per_query() -> None:
    m = band_mask(4, 7, 3)  # queries at key indices 3..6
    assert m.sum(1).tolist() == [3, 3, 3, 3]
    assert m[0].tolist() == [False, True, True, True, False, False, False]

