"""archs/ops/ssd.py: Mamba-2's chunked SSD and its one-token step against the sequential definition."""

import pytest
import torch
from helpers.op_parity import STATES, assert_chunked_matches_sequential, boundary_lengths

from archbench.archs.ops import ssd
from archbench.archs.ops.ssd import ssd_chunked, ssd_sequential, ssd_step

CHUNK = 4


def _inputs(T: int, B: int = 2, H: int = 3, P: int = 2, N: int = 3, seed: int = 0, dt_scale: float = 1.0):
    """(x, Δ, A, B, C) and an initial state h0, float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    x = torch.randn(B, T, H, P, **f64)
    dt = (torch.rand(B, T, H, **f64) + 0.05) * dt_scale  # Δ > 0, as after softplus
    A = -torch.rand(H, **f64) * 3 - 0.1  # A < 0
    Bm, Cm = torch.randn(B, T, N, **f64), torch.randn(B, T, N, **f64)
    return [x, dt, A, Bm, Cm], torch.randn(B, H, P, N, **f64)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", boundary_lengths(CHUNK))
def test_chunked_matches_sequential(T: int, state: str) -> None:
    inputs, h0 = _inputs(T, seed=T)
    assert_chunked_matches_sequential(ssd_chunked, ssd_sequential, inputs, h0, CHUNK,
                                      with_state=state == "random_state")


@pytest.mark.parametrize("block", [1, 1 << 20])  # chunks per pass of `_ssd_chunks`: one, or all
def test_chunks_passed_in_several_blocks(block: int, monkeypatch) -> None:
    monkeypatch.setattr(ssd, "_BLOCK_ELEMENTS", block)
    inputs, h0 = _inputs(3 * CHUNK + 2)
    assert_chunked_matches_sequential(ssd_chunked, ssd_sequential, inputs, h0, CHUNK, with_state=True)


def test_chunk_longer_than_the_sequence() -> None:
    inputs, h0 = _inputs(5)
    assert_chunked_matches_sequential(ssd_chunked, ssd_sequential, inputs, h0, 64, with_state=True)


def test_step_is_one_token_of_the_sequence() -> None:
    (x, dt, A, Bm, Cm), h0 = _inputs(1)
    y, h = ssd_step(x[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], h0)
    y_seq, h_seq = ssd_sequential(x, dt, A, Bm, Cm, h0)
    torch.testing.assert_close(y, y_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=0)


def test_large_decay_stays_finite() -> None:
    """|Δ A| in the hundreds: within-chunk decays underflow to 0, and nothing overflows (only
    exponents <= 0 are taken)."""
    (x, dt, A, Bm, Cm), h0 = _inputs(2 * CHUNK + 3, dt_scale=300.0)
    y, h = ssd_chunked(x, dt, A, Bm, Cm, h0, chunk_size=CHUNK)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    y_ref, h_ref = ssd_sequential(x, dt, A, Bm, Cm, h0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)
