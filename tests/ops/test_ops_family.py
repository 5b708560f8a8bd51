"""The gated-linear family: Mamba-2's SSD and RWKV-6's WKV are the diagonal-decay op of
archs/ops/gated_linear.py (S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ (scale · q_t)) with their inputs
mapped, in float64, values and gradients, from a non-zero state, across chunk boundaries:

- SSD (h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ, y_t = h_t C_t): q = C and k = B broadcast to every head,
  v = Δ x, log decay Δ A (a scalar per head and token), scale 1; the op's state is hᵀ.
- WKV (S_t = diag(w_t) S_{t-1} + k_tᵀ v_t, o_t = r_t (S_{t-1} + diag(u) k_tᵀ v_t)): q = r, and k, v and
  the log decay delayed by one token (a zero token first, so the op's S at t is WKV's S_{t-1}); the
  bonus (r_t ⊙ u ⊙ k_t)·v_t is added outside; one more token with q = 0 carries the final state.

Why SSD and WKV still keep their own chunked forms is in the docstrings of archs/ops/ssd.py and wkv.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference

from archbench.archs.ops.gated_linear import gated_linear_chunked, gated_linear_sequential
from archbench.archs.ops.ssd import ssd_sequential
from archbench.archs.ops.wkv import wkv_sequential

CHUNK = 8
OPS = {"chunked": lambda *a, **kw: gated_linear_chunked(*a, chunk_size=CHUNK, **kw),
       "sequential": gated_linear_sequential}


def _randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=g)


def ssd_as_gated_linear(op, x, dt, A, Bm, Cm, h0):
    """`ssd_sequential`'s contract through the gated-linear `op`."""
    H = x.shape[2]
    q, k = (m[:, :, None].expand(-1, -1, H, -1) for m in (Cm, Bm))  # (B, T, H, N): one group, every head
    o, S = op(q, k, x * dt[..., None], dt * A, scale=1.0, initial_state=h0.transpose(-1, -2))
    return o, S.transpose(-1, -2)  # state (B, H, N, P) -> SSD's (B, H, P, N)


def wkv_as_gated_linear(op, r, k, v, lw, u, S0):
    """`wkv_sequential`'s contract through the gated-linear `op`."""
    def delayed(t):  # a zero token first: position t gets token t - 1; and T + 1 tokens in all
        return F.pad(t, (0, 0, 0, 0, 1, 0))

    q = F.pad(r, (0, 0, 0, 0, 0, 1))  # the extra last token reads nothing; it only moves the state on
    o, S = op(q, delayed(k), delayed(v), delayed(lw), scale=1.0, initial_state=S0)
    bonus = (r * u * k).sum(-1, keepdim=True) * v  # (B, T, H, V): the current token, weighted by u
    return o[:, :-1] + bonus, S


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("T", [1, CHUNK + 1, 2 * CHUNK + 3])
def test_ssd_is_the_gated_linear_op(op: str, T: int) -> None:
    g = torch.Generator().manual_seed(T)
    B, H, P, N = 2, 3, 4, 5
    x, Bm, Cm = _randn(B, T, H, P, g=g), _randn(B, T, N, g=g), _randn(B, T, N, g=g)
    dt = torch.rand(B, T, H, dtype=torch.float64, generator=g) + 0.05  # Δ > 0
    A = -torch.rand(H, dtype=torch.float64, generator=g) * 3 - 0.1  # A < 0
    inputs = [t.requires_grad_() for t in (x, dt, A, Bm, Cm, _randn(B, H, P, N, g=g))]
    assert_op_matches_reference(lambda *a: ssd_as_gated_linear(OPS[op], *a), ssd_sequential, inputs,
                                rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("T", [1, CHUNK + 1, 2 * CHUNK + 3])
def test_wkv_is_the_gated_linear_op_delayed_plus_bonus(op: str, T: int) -> None:
    g = torch.Generator().manual_seed(T)
    B, H, K, V = 2, 3, 4, 5
    r, k, v = _randn(B, T, H, K, g=g), _randn(B, T, H, K, g=g), _randn(B, T, H, V, g=g)
    lw = -torch.rand(B, T, H, K, dtype=torch.float64, generator=g)  # log decay <= 0, per channel
    inputs = [t.requires_grad_() for t in (r, k, v, lw, _randn(H, K, g=g), _randn(B, H, K, V, g=g))]
    assert_op_matches_reference(lambda *a: wkv_as_gated_linear(OPS[op], *a), wkv_sequential, inputs,
                                rtol=1e-10, atol=1e-10)
