"""The chunked (SSD) Mamba-3 op against the loop-over-time reference: values and gradients, odd lengths."""

import pytest
import torch
from helpers.op_parity import assert_op_matches_reference

from archbench.archs.ops.mamba3 import mamba3_chunked, mamba3_sequential

CHUNK = 4  # Q; the lengths below sit around it: 1, Q - 1, Q + 1, 2Q + 3


def _inputs(T: int, seed: int = 0, state: bool = True, decay_scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    B, H, N, P = 2, 3, 4, 5
    q, k = (torch.randn(B, T, H, N, **f64) for _ in range(2))
    v = torch.randn(B, T, H, P, **f64)
    dt = torch.rand(B, T, H, **f64) + 0.1
    la = -torch.rand(B, T, H, **f64) * decay_scale * dt  # Δ A with A < 0
    lam = torch.rand(B, T, H, **f64)
    ins = [q, k, v, la, dt, lam]
    if state:
        ins += [torch.randn(B, H, P, N, **f64), torch.randn(B, H, N, **f64), torch.randn(B, H, P, **f64)]
    return [t.requires_grad_() for t in ins]


@pytest.mark.parametrize("state", [True, False])
@pytest.mark.parametrize("T", [1, CHUNK - 1, CHUNK + 1, 2 * CHUNK + 3])
def test_chunked_matches_sequential_values_and_gradients(T: int, state: bool) -> None:
    assert_op_matches_reference(lambda *x: mamba3_chunked(*x[:6], CHUNK, *x[6:]),
                                lambda *x: mamba3_sequential(*x[:6], *x[6:]),
                                _inputs(T, state=state), rtol=1e-10, atol=1e-10)


def test_default_chunk_over_several_blocks() -> None:
    """The default chunk (64) over a length that spans several groups of chunks."""
    import archbench.archs.ops.mamba3 as op

    ins = [t.detach() for t in _inputs(150)]
    old, op._BLOCK_ELEMENTS = op._BLOCK_ELEMENTS, 1  # one chunk per group
    try:
        got = mamba3_chunked(*ins[:6], 64, *ins[6:])
    finally:
        op._BLOCK_ELEMENTS = old
    for x, y in zip(got, mamba3_sequential(*ins[:6], *ins[6:]), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_strong_decay_stays_finite() -> None:
    """Log decays of up to -200 per token: every exponent in the chunked form is a difference <= 0."""
    ins = [t.detach() for t in _inputs(37, decay_scale=200.0)]
    got = mamba3_chunked(*ins[:6], 16, *ins[6:])
    for x, y in zip(got, mamba3_sequential(*ins[:6], *ins[6:]), strict=True):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_lambda_one_is_euler_and_the_previous_token_is_used_otherwise() -> None:
    """λ = 1 drops the previous-token term (Mamba-2's exponential-Euler rule): k0, v0 then have no
    effect; with λ < 1 they do."""
    q, k, v, la, dt, lam, S0, k0, v0 = (t.detach() for t in _inputs(6))
    ones = torch.ones_like(lam)
    y1 = mamba3_sequential(q, k, v, la, dt, ones, S0, k0, v0)[0]
    torch.testing.assert_close(y1, mamba3_sequential(q, k, v, la, dt, ones, S0, 0 * k0, 0 * v0)[0])
    y = mamba3_sequential(q, k, v, la, dt, lam, S0, k0, v0)[0]
    assert (y - mamba3_sequential(q, k, v, la, dt, lam, S0, 0 * k0, 0 * v0)[0]).abs().max() > 1e-3
