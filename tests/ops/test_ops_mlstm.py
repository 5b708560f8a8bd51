"""The mLSTM op (archs/ops/mlstm.py): the chunked form against the loop over time, values and gradients
(inputs, gates and the whole initial state (C̃, ñ, m)); the stabilised recurrence against the paper's
unstabilised one; large input gates; and prefill-then-step."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference, boundary_lengths

from archbench.archs.ops import mlstm
from archbench.archs.ops.mlstm import mlstm_chunked, mlstm_sequential, mlstm_step

Q = 4  # a small chunk, so every length below spans several chunks and a ragged last one
B, H, K, V = 2, 3, 4, 5


def _inputs(T: int, with_state: bool, seed: int = 0, gate_scale: float = 3.0) -> list[torch.Tensor]:
    """q, k, v, log_i, log_f and, if `with_state`, a state (C̃, ñ, m) as a run over earlier tokens leaves
    it (its m and the size of ñ are what the stabilised recurrence produces), all leaves needing grad."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    q, k = torch.randn(B, T, H, K, **f64), torch.randn(B, T, H, K, **f64)
    v = torch.randn(B, T, H, V, **f64)
    log_i = gate_scale * torch.randn(B, T, H, **f64)  # ĩ of both signs, several units wide
    log_f = F.logsigmoid(2 * torch.randn(B, T, H, **f64) + 2)  # sigmoid forget gates, mostly near 1
    ins = [q, k, v, log_i, log_f]
    if with_state:
        pre = [torch.randn(B, 6, H, d, **f64) for d in (K, K, V)]
        _, state = mlstm_sequential(*pre, gate_scale * torch.randn(B, 6, H, **f64),
                                    F.logsigmoid(torch.randn(B, 6, H, **f64) + 2))
        ins += list(state)
    return [t.detach().requires_grad_() for t in ins]


def _packed(fn, **kw):
    """fn over the flat list `_inputs` gives, with the state triple packed into one tensor, so that the
    shared parity check weighs all of it (C̃, ñ and m) in the gradient it compares."""
    def run(q, k, v, log_i, log_f, *state):
        h, (C, n, m) = fn(q, k, v, log_i, log_f, tuple(state) if state else None, **kw)
        return h, torch.cat([C.flatten(2), n, m[..., None]], -1)
    return run


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("T", boundary_lengths(Q))
def test_chunked_matches_sequential_values_and_gradients(T: int, with_state: bool) -> None:
    assert_op_matches_reference(_packed(mlstm_chunked, chunk_size=Q), _packed(mlstm_sequential),
                                _inputs(T, with_state), rtol=1e-10, atol=1e-10)


def test_state_carried_between_blocks_of_chunks(monkeypatch) -> None:
    """One chunk per block: the state and the stabiliser must cross every block boundary too."""
    monkeypatch.setattr(mlstm, "_BLOCK_ELEMENTS", 1)
    assert_op_matches_reference(_packed(mlstm_chunked, chunk_size=3), _packed(mlstm_sequential),
                                _inputs(17, True, seed=2), rtol=1e-10, atol=1e-10)


def test_stabilised_recurrence_is_the_papers() -> None:
    """With ε = 0 the stabilised op gives the paper's h_t = C_tᵀ q̃ / max(|n_tᵀ q̃|, 1) of the plain
    recurrence C_t = f C_{t-1} + i k vᵀ, n_t = f n_{t-1} + i k (i = e^ĩ, f = e^{log f}), and holds
    C_t e^{-m_t}, n_t e^{-m_t}. Gates kept moderate so that the plain recurrence stays finite."""
    q, k, v, log_i, log_f = (t.detach() for t in _inputs(9, False, seed=3, gate_scale=1.0))
    h, (C_s, n_s, m) = mlstm_sequential(q, k, v, log_i, log_f, eps=0.0)
    h_c, _ = mlstm_chunked(q, k, v, log_i, log_f, chunk_size=Q, eps=0.0)
    C, n = torch.zeros(B, H, K, V, dtype=torch.float64), torch.zeros(B, H, K, dtype=torch.float64)
    for t in range(9):
        f, i = log_f[:, t].exp(), log_i[:, t].exp()
        C = f[..., None, None] * C + i[..., None, None] * torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        n = f[..., None] * n + i[..., None] * k[:, t]
        qs = q[:, t] / K**0.5
        want = torch.einsum("bhk,bhkv->bhv", qs, C) / (qs * n).sum(-1).abs().clamp(min=1)[..., None]
        torch.testing.assert_close(h[:, t], want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h_c[:, t], want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(C_s * m.exp()[..., None, None], C, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(n_s * m.exp()[..., None], n, rtol=1e-12, atol=1e-12)


def test_stabiliser_scale_of_the_state_is_invisible_without_eps() -> None:
    """(C̃ e^{-δ}, ñ e^{-δ}, m + δ) is the same memory as (C̃, ñ, m): with ε = 0 both forms give the
    same outputs from either."""
    q, k, v, log_i, log_f, C, n, m = (t.detach() for t in _inputs(7, True, seed=4))
    d = 5.0
    for op in (mlstm_sequential, lambda *a, **kw: mlstm_chunked(*a, chunk_size=Q, **kw)):
        h, _ = op(q, k, v, log_i, log_f, (C, n, m), eps=0.0)
        h_d, _ = op(q, k, v, log_i, log_f, (C * math.exp(-d), n * math.exp(-d), m + d), eps=0.0)
        torch.testing.assert_close(h, h_d, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_input_gates_stay_finite_and_match(dtype: torch.dtype) -> None:
    """Input-gate pre-activations in the hundreds (e^ĩ overflows float32 past 88, float64 past 709): every
    exponent either form takes is <= 0, so values and gradients stay finite, and the forms agree."""
    inputs = [t.detach() for t in _inputs(2 * Q + 3, True, seed=5)]
    inputs[3] = inputs[3] * 300  # ĩ up to about ±1000
    q, k, v, log_i, log_f, C, n, m = (t.to(dtype).requires_grad_() for t in inputs)
    h, (C1, n1, m1) = mlstm_chunked(q, k, v, log_i, log_f, (C, n, m), chunk_size=Q)
    h_ref, (C_ref, n_ref, m_ref) = mlstm_sequential(q, k, v, log_i, log_f, (C, n, m))
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for a, b in ((h, h_ref), (C1, C_ref), (n1, n_ref), (m1, m_ref)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    (h.square().sum() + C1.square().sum() + m1.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v, log_i, log_f, C, n, m))


def test_prefill_then_step_equals_sequential() -> None:
    """The chunked form over a prompt, then `mlstm_step` token by token from its state, gives the
    reference's outputs and final state (as a layer's prefill and decode would)."""
    q, k, v, log_i, log_f, *state = (t.detach() for t in _inputs(2 * Q + 3, True, seed=6))
    want, state_ref = mlstm_sequential(q, k, v, log_i, log_f, tuple(state))
    P = Q + 1
    h, st = mlstm_chunked(q[:, :P], k[:, :P], v[:, :P], log_i[:, :P], log_f[:, :P], tuple(state),
                          chunk_size=Q)
    outs = [h]
    for t in range(P, q.shape[1]):
        h_t, st = mlstm_step(q[:, t], k[:, t], v[:, t], log_i[:, t], log_f[:, t], st)
        outs.append(h_t[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-10, atol=1e-10)
    for a, b in zip(st, state_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
