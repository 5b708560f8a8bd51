"""The chunked WKV op against the loop-over-time reference: values and gradients, odd lengths."""

import pytest
import torch
from op_parity import assert_op_matches_reference

from archbench.archs.rwkv import wkv_sequential
from archbench.archs.wkv import log_decay_floor, wkv_chunked


def _inputs(T: int, seed: int = 0, decay_scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    B, H, K = 2, 3, 4
    r, k, v = (torch.randn(B, T, H, K, **f64) for _ in range(3))
    lw = -torch.rand(B, T, H, K, **f64) * decay_scale  # log decay <= 0
    u = torch.randn(H, K, **f64)
    S0 = torch.randn(B, H, K, K, **f64)
    return [t.requires_grad_() for t in (r, k, v, lw, u, S0)]


@pytest.mark.parametrize("chunk", [4, 8, 32])
@pytest.mark.parametrize("T", [1, 7, 37])
def test_chunked_matches_sequential_values_and_gradients(T: int, chunk: int) -> None:
    assert_op_matches_reference(lambda *a: wkv_chunked(*a, chunk_size=chunk), wkv_sequential, _inputs(T),
                                rtol=1e-10, atol=1e-10)


def test_chunked_without_initial_state() -> None:
    r, k, v, lw, u, _ = _inputs(19)
    o, S = wkv_chunked(r, k, v, lw, u, chunk_size=8)
    o_ref, S_ref = wkv_sequential(r, k, v, lw, u)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(S, S_ref)


def test_strong_decay_stays_finite_and_matches_the_floored_reference() -> None:
    """Log decays far below the floor: the chunked op clamps them (no overflow in its exponent
    differences), which the reference given the same clamped decays reproduces."""
    r, k, v, lw, u, S0 = (t.detach() for t in _inputs(40, decay_scale=500.0))
    o, S = wkv_chunked(r, k, v, lw, u, S0, chunk_size=32)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    o_ref, S_ref = wkv_sequential(r, k, v, lw.clamp(min=log_decay_floor(lw.dtype)), u, S0)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(S, S_ref)
