"""archs/ops/rglru.py: the RG-LRU's chunked scan and its one-token step against the sequential definition,
and both against formulations derived apart from the loop: the closed form for constant gates, the
dense (T, T) form for any gates, and the variance the normaliser sqrt(1 − a²) preserves."""

from __future__ import annotations

import pytest
import torch
from helpers.op_parity import STATES, assert_chunked_matches_sequential, boundary_lengths

from archbench.archs.ops.rglru import rglru_chunked, rglru_log_a, rglru_norm, rglru_sequential, rglru_step

CHUNK = 8
B, D = 2, 5


def _inputs(T: int, seed: int = 0, strength: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(x, log a) and an initial state h0, float64; log a through the paper's gate, a^(c r_t), with a^c in
    the spread Griffin initialises to and beyond (strength scales Λ's logit down)."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    x = torch.randn(B, T, D, **f64)
    r = torch.rand(B, T, D, **f64)
    lam = torch.linspace(4.0, -1.0, D, dtype=torch.float64) * strength
    return [x, rglru_log_a(r, lam)], torch.randn(B, D, **f64)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", boundary_lengths(CHUNK))
def test_chunked_matches_sequential(T: int, state: str) -> None:
    inputs, h0 = _inputs(T, seed=T)
    assert_chunked_matches_sequential(rglru_chunked, rglru_sequential, inputs, h0, CHUNK,
                                      with_state=state == "random_state")


@pytest.mark.parametrize("chunk", [1, 3, 64])  # one token per chunk; a chunk not dividing T; one chunk
def test_other_chunk_sizes(chunk: int) -> None:
    inputs, h0 = _inputs(37)
    assert_chunked_matches_sequential(rglru_chunked, rglru_sequential, inputs, h0, chunk, with_state=True)


def test_step_is_one_token_of_the_sequence() -> None:
    (x, log_a), h0 = _inputs(1)
    y, h = rglru_step(x[:, 0], log_a[:, 0], h0)
    y_seq, h_seq = rglru_sequential(x, log_a, h0)
    torch.testing.assert_close(y, y_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=0)


def test_prefill_then_steps_match_one_pass() -> None:
    """The chunked scan over a prefix crossing a chunk boundary, then one step per token."""
    T, split = 2 * CHUNK + 3, CHUNK + 1
    (x, log_a), h0 = _inputs(T)
    y_all, h_all = rglru_sequential(x, log_a, h0)
    y, h = rglru_chunked(x[:, :split], log_a[:, :split], h0, chunk_size=CHUNK)
    ys = [y]
    for t in range(split, T):
        y_t, h = rglru_step(x[:, t], log_a[:, t], h)
        ys.append(y_t[:, None])
    torch.testing.assert_close(torch.cat(ys, 1), y_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_all, rtol=1e-12, atol=1e-12)


def test_closed_form_for_constant_gates() -> None:
    """Constant a and input u per channel: h_t = a^(t+1) h0 + sqrt(1 − a²) u (1 − a^(t+1)) / (1 − a)."""
    T = 2 * CHUNK + 3
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([0.05, 0.5, 0.9, 0.99, 0.999], dtype=torch.float64)
    u = torch.randn(B, 1, D, dtype=torch.float64, generator=g)
    h0 = torch.randn(B, D, dtype=torch.float64, generator=g)
    p = a ** torch.arange(1, T + 1, dtype=torch.float64)[:, None]  # (T, D): a^(t+1)
    want = p * h0[:, None] + (1 - a**2).sqrt() * u * (1 - p) / (1 - a)
    x, log_a = u.expand(B, T, D), a.log().expand(B, T, D)
    for y, h in (rglru_chunked(x, log_a, h0, chunk_size=CHUNK), rglru_sequential(x, log_a, h0)):
        torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h, want[:, -1], rtol=1e-12, atol=1e-12)


def _dense(x: torch.Tensor, log_a: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = P_t h0 + Σ_{j<=t} (P_t / P_j) sqrt(1 − a_j²) x_j, P_t = Π_{s<=t} a_s, as one (T, T) matrix
    per channel (the exponents are masked to -inf above the diagonal before exp)."""
    T = x.shape[1]
    cum = log_a.cumsum(1)  # (B, T, D)
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, :, :, None]
    L = (cum[:, :, None] - cum[:, None]).masked_fill(~keep, -torch.inf).exp()  # (B, T, T, D)
    y = torch.einsum("btjd,bjd->btd", L, (1 - torch.exp(2 * log_a)).sqrt() * x) + cum.exp() * h0[:, None]
    return y, y[:, -1]


def test_chunked_matches_the_dense_form() -> None:
    """Values and gradients of the chunked scan against the (T, T) form, derived apart from any loop."""
    T = 2 * CHUNK + 3
    inputs, h0 = _inputs(T, seed=3)
    assert_chunked_matches_sequential(rglru_chunked, _dense, inputs, h0, CHUNK, with_state=True)


def test_the_normaliser_preserves_variance() -> None:
    """The paper's reason for sqrt(1 − a²): with a constant a, T unit impulses (one per batch row, at every
    position) give final states whose squares sum to 1 − a^(2T), the variance of h_T for white unit input."""
    T = 2 * CHUNK + 3
    a = torch.tensor([0.1, 0.7, 0.95, 0.999], dtype=torch.float64)
    x = torch.eye(T, dtype=torch.float64)[:, :, None].expand(T, T, a.numel())  # row j: impulse at j
    _, h = rglru_chunked(x, a.log().expand(T, T, -1), chunk_size=CHUNK)
    torch.testing.assert_close(h.square().sum(0), 1 - a ** (2 * T), rtol=1e-12, atol=1e-12)


def test_log_a_is_the_papers_gate() -> None:
    """a_t = σ(Λ)^(c r_t), computed in log space: equal where the power is representable, finite beyond."""
    g = torch.Generator().manual_seed(0)
    r = torch.rand(3, 4, 6, dtype=torch.float64, generator=g)
    lam = torch.linspace(-3, 8, 6, dtype=torch.float64)
    torch.testing.assert_close(rglru_log_a(r, lam).exp(), torch.sigmoid(lam) ** (8 * r), rtol=1e-12, atol=0)
    deep = rglru_log_a(torch.ones(1, dtype=torch.float32), torch.tensor([-200.0]))
    assert torch.isfinite(deep).all() and deep.item() < -1000


def test_normaliser_gradient_is_bounded_as_a_goes_to_one() -> None:
    """sqrt(1 − a²) at a = 1 (r_t = 0) and just below: finite gradients, its derivative in 1 − a² at most
    1000 (RecurrentGemma's bound), exact away from the bound."""
    log_a = torch.tensor([0.0, -1e-12, -1e-3, -0.5], dtype=torch.float64, requires_grad=True)
    n = rglru_norm(log_a)
    torch.testing.assert_close(n[2:], (1 - torch.exp(2 * log_a[2:].detach())).sqrt(), rtol=1e-12, atol=0)
    near_one = torch.tensor([0.0, 2e-12], dtype=torch.float64).sqrt()  # sqrt(−2 log a) to first order
    torch.testing.assert_close(n[:2], near_one, rtol=1e-9, atol=0)
    (grad,) = torch.autograd.grad(n.sum(), log_a)
    assert torch.isfinite(grad).all()
    z_grad = 2 * torch.exp(2 * log_a.detach())  # d(1 − a²)/d log a, up to sign
    assert (grad.abs() <= 1000 * z_grad * (1 + 1e-12)).all()
    exact = -torch.exp(2 * log_a.detach()) / n.detach()
    torch.testing.assert_close(grad[2:], exact[2:], rtol=1e-12, atol=0)


def test_strong_decay_stays_finite_in_float32() -> None:
    """Log decays down to −1000 per token (far below e^−88 over a chunk): float32 values and gradients are
    finite and the values match the float64 definition."""
    T = 2 * 64 + 3
    (x, log_a), h0 = _inputs(T, strength=100.0)
    assert log_a.min() < -500
    want, h_want = rglru_sequential(x, log_a, h0)
    args = [t.float().requires_grad_() for t in (x, log_a, h0)]
    y, h = rglru_chunked(*args, chunk_size=64)
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.double(), h_want, rtol=1e-5, atol=1e-5)
    (y.square().sum() + h.square().sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in args)
