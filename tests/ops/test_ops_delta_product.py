"""The Gated DeltaProduct op (archs/ops/delta_product.py): its chunked form, the delta rule over the
interleaved Householder steps, against the definition written out token by token, values and gradients,
with and without the gate, for n_h = 1, 2, 3 at chunk sizes that end chunks between two steps of one
token; the one-token update against the product of Householder matrices; and prefill-then-step."""

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference, boundary_lengths

from archbench.archs.ops import delta_rule
from archbench.archs.ops.delta_product import (
    delta_product_chunked,
    delta_product_sequential,
    delta_product_step,
)
from archbench.archs.ops.delta_rule import delta_rule_sequential

Q = 5  # pseudo-tokens per chunk: with n_h = 2 or 3 a chunk ends in the middle of a token
B, H, K, V = 2, 3, 4, 5


def _inputs(T: int, n: int, gated: bool, with_state: bool, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    q = torch.randn(B, T, H, K, **f64)
    k = F.normalize(torch.randn(B, T, n, H, K, **f64), dim=-1)  # as the layers give it
    v = torch.randn(B, T, n, H, V, **f64)
    beta = 2 * torch.rand(B, T, n, H, **f64)  # (0, 2): negative eigenvalues allowed, as in the paper
    ins = [q, k, v, beta]
    if gated:
        ins.append(-torch.rand(B, T, H, **f64))
    if with_state:
        ins.append(torch.randn(B, H, K, V, **f64))
    return [t.requires_grad_() for t in ins]


def _call(fn, gated: bool, with_state: bool, **kw):
    """fn over the flat list `_inputs` gives (no None in it, so that every tensor gets a gradient)."""
    def run(q, k, v, beta, *rest):
        g = rest[0] if gated else None
        S0 = rest[-1] if with_state else None
        return fn(q, k, v, beta, g, S0, **kw)
    return run


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("T", boundary_lengths(Q))
@pytest.mark.parametrize("gated", [False, True], ids=["deltaproduct", "gated"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_chunked_matches_sequential_values_and_gradients(n: int, gated: bool, T: int,
                                                         with_state: bool) -> None:
    assert_op_matches_reference(_call(delta_product_chunked, gated, with_state, chunk_size=Q),
                                _call(delta_product_sequential, gated, with_state),
                                _inputs(T, n, gated, with_state), rtol=1e-10, atol=1e-10)


def test_state_carried_between_blocks_of_chunks(monkeypatch) -> None:
    """One chunk per block of the delta rule: the mapping holds across its block boundaries too."""
    monkeypatch.setattr(delta_rule, "_BLOCK_ELEMENTS", 1)
    assert_op_matches_reference(_call(delta_product_chunked, True, True, chunk_size=4),
                                _call(delta_product_sequential, True, True),
                                _inputs(9, 3, True, True, seed=2), rtol=1e-10, atol=1e-10)


def _after(Hs: list[torch.Tensor], j: int) -> torch.Tensor:
    """Π_{i=n..j+1} H_i: the Householder steps that follow step j (all of them for j = -1)."""
    P = torch.eye(Hs[0].shape[0], dtype=Hs[0].dtype)
    for i in range(j + 1, len(Hs)):
        P = Hs[i] @ P
    return P


@pytest.mark.parametrize("gated", [False, True], ids=["deltaproduct", "gated"])
def test_step_is_the_product_of_householder_matrices(gated: bool) -> None:
    """S_t = α Π_{j=n..1} (I − β_j k_j k_jᵀ) S_{t-1} + Σ_j Π_{l=n..j+1} (I − β_l k_l k_lᵀ) β_j k_j v_jᵀ and
    o_t = S_tᵀ q / √K, as dense matrices per head (the paper's form, gate outside the product)."""
    n = 3
    *tensors, S0 = (t.detach() for t in _inputs(1, n, gated, True, seed=3))
    q, k, v, beta, *rest = (t[:, 0] for t in tensors)  # token 0
    lg = rest[0] if gated else None
    o, S = delta_product_step(q, k, v, beta, lg, S0)
    eye = torch.eye(K, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            Hs = [eye - beta[b, j, h] * torch.outer(k[b, j, h], k[b, j, h]) for j in range(n)]
            writes = sum(_after(Hs, j) @ (beta[b, j, h] * torch.outer(k[b, j, h], v[b, j, h]))
                         for j in range(n))
            alpha = 1.0 if lg is None else lg[b, h].exp()
            want = alpha * _after(Hs, -1) @ S0[b, h] + writes
            torch.testing.assert_close(S[b, h], want, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(o[b, h], want.T @ q[b, h] / K**0.5, rtol=1e-12, atol=1e-12)


def test_one_step_per_token_is_gated_deltanet() -> None:
    """n_h = 1 is the gated delta rule itself."""
    q, k, v, beta, lg, S0 = (t.detach() for t in _inputs(7, 1, True, True, seed=4))
    o, S = delta_product_sequential(q, k, v, beta, lg, S0)
    o_ref, S_ref = delta_rule_sequential(q, k[:, :, 0], v[:, :, 0], beta[:, :, 0], lg, S0)
    torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S, S_ref, rtol=1e-12, atol=1e-12)


def test_prefill_then_step_equals_sequential() -> None:
    """The chunked form over a prompt, then `delta_product_step` token by token from its state."""
    q, k, v, beta, lg, S0 = (t.detach() for t in _inputs(2 * Q + 3, 2, True, True, seed=5))
    want, S_ref = delta_product_sequential(q, k, v, beta, lg, S0)
    P = Q + 1
    o, S = delta_product_chunked(q[:, :P], k[:, :P], v[:, :P], beta[:, :P], lg[:, :P], S0, chunk_size=Q)
    outs = [o]
    for t in range(P, q.shape[1]):
        o_t, S = delta_product_step(q[:, t], k[:, t], v[:, t], beta[:, t], lg[:, t], S)
        outs.append(o_t[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-10)
