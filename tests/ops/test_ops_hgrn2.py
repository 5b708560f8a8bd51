"""archs/ops/hgrn2.py: HGRN2 through the gated-linear op (k = 1 − f, decay f). The chunked form against the
sequential one, both against HGRN2 written out from the paper in probability space (S_t = Diag(f_t) S_{t-1}
+ (1 − f_t) v_tᵀ, o_t = S_tᵀ (scale q_t), f = β + (1 − β) σ(z)), values and gradients — the lower bound's
included — across chunk boundaries and from a non-zero state; the step; the gate at extreme logits."""

from __future__ import annotations

import pytest
import torch
from helpers.op_parity import STATES, assert_op_matches_reference, boundary_lengths

from archbench.archs.ops.hgrn2 import hgrn2_chunked, hgrn2_log_forget, hgrn2_sequential, hgrn2_step

Q = 16  # two sub-chunks of gated_linear's per-channel path per chunk
B, H, K, V = 2, 3, 4, 5
SCALE = 0.5
BOUNDS = ["no_bound", "lower_bound"]


def _inputs(T: int, bounded: bool, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(q, v, forget logits, [lower bound (H, K)]) and an initial state (B, H, K, V), float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    q, z = torch.randn(B, T, H, K, **f64), 2 * torch.randn(B, T, H, K, **f64)
    v = torch.randn(B, T, H, V, **f64)
    beta = [0.9 * torch.rand(H, K, **f64)] if bounded else []
    return [q, v, z, *beta], torch.randn(B, H, K, V, **f64)


def _through_gated_linear(op, **kw):
    """The op's contract from (q, v, logits, [β], [S0]): log f formed by `hgrn2_log_forget`."""
    def run(q, v, z, *rest, bounded: bool, with_state: bool):
        beta, S0 = (rest[0] if bounded else None), (rest[-1] if with_state else None)
        return op(q, v, hgrn2_log_forget(z, beta), SCALE, initial_state=S0, **kw)
    return run


def _paper(q, v, z, *rest, bounded: bool, with_state: bool):
    """HGRN2 as the paper writes it: f in probability space, the outer product (1 − f) v_tᵀ, one loop."""
    beta = rest[0] if bounded else torch.zeros(())
    f = beta + (1 - beta) * torch.sigmoid(z)  # (B, T, H, K)
    S = rest[-1] if with_state else q.new_zeros(B, H, K, V)
    out = []
    for t in range(q.shape[1]):
        S = f[:, t, ..., None] * S + (1 - f[:, t, ..., None]) * v[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", SCALE * q[:, t], S))
    return torch.stack(out, 1), S


def _check(op, reference, T: int, bounded: bool, state: str) -> None:
    inputs, S0 = _inputs(T, bounded, seed=T)
    with_state = state == "random_state"
    args = [t.requires_grad_() for t in (*inputs, *([S0] if with_state else []))]
    kw = {"bounded": bounded, "with_state": with_state}
    assert_op_matches_reference(lambda *a: op(*a, **kw), lambda *a: reference(*a, **kw), args,
                                rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", boundary_lengths(Q))
@pytest.mark.parametrize("bound", BOUNDS)
def test_chunked_matches_sequential(bound: str, T: int, state: str) -> None:
    _check(_through_gated_linear(hgrn2_chunked, chunk_size=Q), _through_gated_linear(hgrn2_sequential), T,
           bound == "lower_bound", state)


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("op", ["chunked", "sequential"])
def test_matches_the_paper_form(op: str, bound: str) -> None:
    fn = {"chunked": _through_gated_linear(hgrn2_chunked, chunk_size=Q),
          "sequential": _through_gated_linear(hgrn2_sequential)}[op]
    _check(fn, _paper, 2 * Q + 3, bound == "lower_bound", "random_state")


def test_step_is_one_token_of_the_sequence() -> None:
    (q, v, z, beta), S0 = _inputs(1, bounded=True)
    log_f = hgrn2_log_forget(z, beta)
    o, S = hgrn2_step(q[:, 0], v[:, 0], log_f[:, 0], SCALE, S0)
    o_seq, S_seq = hgrn2_sequential(q, v, log_f, SCALE, S0)
    torch.testing.assert_close(o, o_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(S, S_seq, rtol=0, atol=0)


def test_forget_gate_at_extreme_logits() -> None:
    """f = β + (1 − β) σ(z) in log space: equal to the direct form, finite in float32 at |z| = 200 (where
    σ underflows to 0 or rounds to 1), at least β, and the key 1 − f = −expm1(log f) in [0, 1 − β]."""
    z = torch.tensor([-200.0, -30.0, -1.0, 0.0, 3.0, 30.0, 200.0], dtype=torch.float64)
    for beta in (None, torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)):
        b = 0.0 if beta is None else float(beta)
        log_f = hgrn2_log_forget(z, beta)
        want = b + (1 - b) * torch.sigmoid(z[1:-1])
        torch.testing.assert_close(log_f[1:-1].exp(), want, rtol=1e-12, atol=0)
        lf32 = hgrn2_log_forget(z.float(), None if beta is None else beta.float())
        assert torch.isfinite(lf32).all() and (lf32.exp() >= b - 1e-6).all()
        key = -torch.expm1(lf32)
        assert (key >= 0).all() and (key <= 1 - b + 1e-6).all()


def test_strong_forget_gates_stay_finite_in_float32() -> None:
    """No lower bound (HGRN2's first layer) and logits down to −400: log f to −400 per token; the float32
    chunked form is finite, values and gradients, and matches the float64 definition."""
    T = 2 * 64 + 3
    (q, v, z), S0 = _inputs(T, bounded=False)
    z = z * 100
    assert z.min() < -400
    want, S_want = hgrn2_sequential(q, v, hgrn2_log_forget(z), SCALE, S0)
    args = [t.float().requires_grad_() for t in (q, v, z, S0)]
    o, S = hgrn2_chunked(args[0], args[1], hgrn2_log_forget(args[2]), SCALE, chunk_size=64,
                         initial_state=args[3])
    torch.testing.assert_close(o.double(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    torch.testing.assert_close(S.double(), S_want, rtol=1e-4, atol=1e-4 * float(S_want.abs().max()))
    (o.square().sum() + S.square().sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in args)
