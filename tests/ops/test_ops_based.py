"""Based's Taylor linear attention (archs/ops/based.py): the compact feature map against the Taylor kernel
and Zoology's full d² map; the chunked form against the loop over time, values and gradients (inputs and
the initial state (S, z)); the recurrence against the quadratic (attention) form; and prefill-then-step."""

import pytest
import torch
from helpers.op_parity import assert_op_matches_reference, boundary_lengths

from archbench.archs.ops import based
from archbench.archs.ops.based import (
    based_chunked,
    based_sequential,
    based_step,
    taylor_features,
    taylor_width,
)

Q = 4  # a small chunk, so every length below spans several chunks and a ragged last one
B, H, d, V = 2, 3, 4, 5


def _inputs(T: int, with_state: bool, seed: int = 0) -> list[torch.Tensor]:
    """q, k, v and, if `with_state`, the state (S, z) a run over earlier tokens leaves (so that z is a sum
    of features, as the normaliser expects), all leaves needing grad."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    ins = [torch.randn(B, T, H, d, **f64), torch.randn(B, T, H, d, **f64), torch.randn(B, T, H, V, **f64)]
    if with_state:
        _, state = based_sequential(torch.randn(B, 6, H, d, **f64), torch.randn(B, 6, H, d, **f64),
                                    torch.randn(B, 6, H, V, **f64))
        ins += list(state)
    return [t.detach().requires_grad_() for t in ins]


def _packed(fn, **kw):
    """fn over the flat list `_inputs` gives, with (S, z) packed into one tensor for the parity check."""
    def run(q, k, v, *state):
        y, (S, z) = fn(q, k, v, tuple(state) if state else None, **kw)
        return y, torch.cat([S, z[..., None]], -1)
    return run


def test_feature_map_gives_the_taylor_kernel() -> None:
    """φ(q)ᵀφ(k) = 1 + s + s²/2 (s = q·k / √d) with D = 1 + d + d(d+1)/2 entries, the same kernel as
    Zoology's TaylorExp, [1, x / d^¼, x⊗x / (√2 √d)] with all d² products."""
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(7, d, dtype=torch.float64, generator=g) for _ in range(2))
    phi_x, phi_y = taylor_features(x, d**-0.5), taylor_features(y, d**-0.5)
    assert phi_x.shape == (7, taylor_width(d)) == (7, 1 + d + d * (d + 1) // 2)
    s = (x * y).sum(-1) / d**0.5
    torch.testing.assert_close((phi_x * phi_y).sum(-1), 1 + s + s * s / 2, rtol=1e-13, atol=1e-13)

    def zoology(t: torch.Tensor) -> torch.Tensor:
        x2 = (t[..., :, None] * t[..., None, :]).flatten(-2) / 2**0.5
        return torch.cat([torch.ones_like(t[..., :1]), t / d**0.25, x2 / d**0.5], -1)
    torch.testing.assert_close((phi_x * phi_y).sum(-1), (zoology(x) * zoology(y)).sum(-1),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("T", boundary_lengths(Q))
def test_chunked_matches_sequential_values_and_gradients(T: int, with_state: bool) -> None:
    assert_op_matches_reference(_packed(based_chunked, chunk_size=Q), _packed(based_sequential),
                                _inputs(T, with_state), rtol=1e-10, atol=1e-10)


def test_state_carried_between_blocks_of_chunks(monkeypatch) -> None:
    """One chunk per block: the state must cross every block boundary, not only chunk boundaries."""
    monkeypatch.setattr(based, "_BLOCK_ELEMENTS", 1)
    assert_op_matches_reference(_packed(based_chunked, chunk_size=3), _packed(based_sequential),
                                _inputs(17, True, seed=2), rtol=1e-10, atol=1e-10)


def test_recurrence_is_normalised_taylor_attention() -> None:
    """y_t = Σ_{j<=t} A_tj v_j / (Σ_{j<=t} A_tj + ε), A = 1 + s + s²/2: Zoology's quadratic view, with no
    feature map at all."""
    q, k, v = (t.detach() for t in _inputs(9, False, seed=3))
    y, _ = based_sequential(q, k, v)
    s = torch.einsum("bthd,bshd->bhts", q, k) / d**0.5
    A = (1 + s + s * s / 2).tril()  # (B, H, T, T), causal
    want = torch.einsum("bhts,bshv->bthv", A, v) / (A.sum(-1).transpose(1, 2)[..., None] + 1e-12)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


def test_prefill_then_step_equals_sequential() -> None:
    """The chunked form over a prompt, then `based_step` token by token from its state."""
    q, k, v, *state = (t.detach() for t in _inputs(2 * Q + 3, True, seed=4))
    want, state_ref = based_sequential(q, k, v, tuple(state))
    P = Q + 1
    y, st = based_chunked(q[:, :P], k[:, :P], v[:, :P], tuple(state), chunk_size=Q)
    outs = [y]
    for t in range(P, q.shape[1]):
        y_t, st = based_step(q[:, t], k[:, t], v[:, t], st)
        outs.append(y_t[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-10, atol=1e-10)
    for a, b in zip(st, state_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_matches_float64() -> None:
    """The same op in float32 against float64, over several chunks of the default size."""
    q, k, v = (t.detach() for t in _inputs(150, False, seed=5))
    want, (S_ref, z_ref) = based_sequential(q, k, v)
    y, (S, z) = based_chunked(q.float(), k.float(), v.float())
    assert y.dtype == S.dtype == torch.float32
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z.double(), z_ref, rtol=1e-5, atol=1e-4)
