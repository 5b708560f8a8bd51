"""archs/ops/selective_scan.py: the chunked selective scan against its sequential definition."""

import pytest
import torch
from helpers.op_parity import STATES, assert_chunked_matches_sequential, boundary_lengths

from archbench.archs.ops import selective_scan
from archbench.archs.ops.selective_scan import (
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_step,
)

CHUNK = 4


def _inputs(T: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(x, Δ, A, B, C) and an initial state h0, float64."""
    B, E, N = 2, 3, 2
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    x, Bm, Cm = torch.randn(B, T, E, **f64), torch.randn(B, T, N, **f64), torch.randn(B, T, N, **f64)
    delta = torch.rand(B, T, E, **f64) + 0.05  # Δ > 0, as after softplus
    A = -torch.rand(E, N, **f64) * 3 - 0.1  # A < 0
    return [x, delta, A, Bm, Cm], torch.randn(B, E, N, **f64)


# Chunks advanced side by side per Python step (B·E·N = 12 state elements): one, two, all of them.
@pytest.mark.parametrize("group", [1, 24, 1 << 17])
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", boundary_lengths(CHUNK))
def test_chunked_matches_sequential(T: int, state: str, group: int, monkeypatch) -> None:
    monkeypatch.setattr(selective_scan, "_GROUP", group)
    inputs, h0 = _inputs(T, seed=T)
    assert_chunked_matches_sequential(selective_scan_chunked, selective_scan_sequential, inputs, h0, CHUNK,
                                      with_state=state == "random_state", atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_other_chunk_sizes(chunk: int) -> None:
    inputs, h0 = _inputs(37)
    assert_chunked_matches_sequential(selective_scan_chunked, selective_scan_sequential, inputs, h0, chunk,
                                      with_state=True, atol=1e-12)


def test_sequential_chunks_on_cpu_when_one_step_fills_a_group(monkeypatch) -> None:
    """B·E·N >= _GROUP on CPU: chunks run one at a time, shortened to _SEQ_CHUNK (a separate branch)."""
    monkeypatch.setattr(selective_scan, "_GROUP", 12)
    inputs, h0 = _inputs(2 * CHUNK * 4 + 3)
    assert_chunked_matches_sequential(selective_scan_chunked, selective_scan_sequential, inputs, h0,
                                      CHUNK * 4, with_state=True, atol=1e-12)


@pytest.mark.parametrize(("T", "chunk", "group"), [(7, 1, 1 << 17), (7, 3, 1)])
def test_chunked_gradcheck(T: int, chunk: int, group: int, monkeypatch) -> None:
    """The hand-written backward against finite differences (not only against autograd of the loop)."""
    monkeypatch.setattr(selective_scan, "_GROUP", group)
    inputs, h0 = _inputs(T, seed=T)
    args = [t.requires_grad_() for t in (*inputs, h0)]
    assert torch.autograd.gradcheck(lambda *a: selective_scan_chunked(*a, chunk_size=chunk), args)


def test_large_decay_stays_finite() -> None:
    """|Δ A| in the thousands: decays underflow to 0, and nothing overflows (no exp(+cumsum))."""
    (x, delta, A, Bm, Cm), h0 = _inputs(40)
    delta = delta * 1000
    y, h = selective_scan_chunked(x, delta, A, Bm, Cm, h0, chunk_size=16)
    y_ref, h_ref = selective_scan_sequential(x, delta, A, Bm, Cm, h0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)


def test_step_is_one_token_of_the_sequence() -> None:
    (x, delta, A, Bm, Cm), h0 = _inputs(1)
    y, h = selective_scan_step(x[:, 0], delta[:, 0], A, Bm[:, 0], Cm[:, 0], h0)
    y_seq, h_seq = selective_scan_sequential(x, delta, A, Bm, Cm, h0)
    torch.testing.assert_close(y, y_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=0)
