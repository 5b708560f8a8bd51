"""The chunked selective scan against the loop-over-time reference: values, and gradients by gradcheck."""

import pytest
import torch
from op_parity import assert_op_matches_reference

from archbench.archs import mamba, selective_scan
from archbench.archs.selective_scan import selective_scan_chunked


def _inputs(B: int, T: int, E: int, N: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    x, Bm, Cm = torch.randn(B, T, E, **f64), torch.randn(B, T, N, **f64), torch.randn(B, T, N, **f64)
    delta = torch.rand(B, T, E, **f64) + 0.05  # Δ > 0, as after softplus
    A = -torch.rand(E, N, **f64) * 3 - 0.1  # A < 0
    h0 = torch.randn(B, E, N, **f64)
    return [t.requires_grad_() for t in (x, delta, A, Bm, Cm, h0)]


@pytest.mark.parametrize("group", [1, 24, 1 << 17])  # chunks side by side (B·E·N = 12): one, two, all
@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("T", [7, 37])
def test_chunked_matches_sequential(T: int, chunk: int, group: int, monkeypatch) -> None:
    monkeypatch.setattr(selective_scan, "_GROUP", group)
    assert_op_matches_reference(lambda *a: selective_scan_chunked(*a, chunk_size=chunk),
                                mamba.selective_scan_sequential, _inputs(2, T, 3, 2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("T", "chunk", "group"), [(7, 1, 1 << 17), (7, 3, 1), (37, 3, 1 << 17), (20, 16, 1),
                                                   (37, 16, 24)])
def test_chunked_gradcheck(T: int, chunk: int, group: int, monkeypatch) -> None:
    """Gradients of y and of the final state w.r.t. x, Δ, A, B, C and h0, against finite differences."""
    monkeypatch.setattr(selective_scan, "_GROUP", group)
    inputs = _inputs(2, T, 3, 2, seed=T)
    assert torch.autograd.gradcheck(lambda *a: selective_scan_chunked(*a, chunk_size=chunk), inputs)


def test_chunked_without_h0() -> None:
    x, delta, A, Bm, Cm, _ = _inputs(2, 9, 3, 2)
    y, h = selective_scan_chunked(x, delta, A, Bm, Cm, chunk_size=4)
    y_ref, h_ref = mamba.selective_scan_sequential(x, delta, A, Bm, Cm)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)


def test_chunked_large_decay_stays_finite() -> None:
    """|Δ A| in the thousands: decays underflow to 0, and nothing overflows (no exp(+cumsum))."""
    x, delta, A, Bm, Cm, h0 = (t.detach() for t in _inputs(2, 40, 3, 2))
    delta = delta * 1000
    y, h = selective_scan_chunked(x, delta, A, Bm, Cm, h0, chunk_size=16)
    y_ref, h_ref = mamba.selective_scan_sequential(x, delta, A, Bm, Cm, h0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)
