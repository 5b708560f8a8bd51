"""The chunked (WY) RWKV-7 op against the loop-over-time reference: values and gradients, odd lengths."""

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference

from archbench.archs.ops.rwkv7 import rwkv7_chunked, rwkv7_sequential

CHUNK = 4  # Q; the lengths below sit around it: 1, Q - 1, Q + 1, 2Q + 3
SPLIT = 16  # a chunk of two sub-chunks (the op's sub-chunk is 8): pairs across sub-chunks are matmuls


def _inputs(T: int, seed: int = 0, state: bool = True, generic: bool = False,
            decay_scale: float = 0.6065) -> list[torch.Tensor]:
    """RWKV-7's own structure (a = -κ̂, b = κ̂ ⊙ η, |κ̂| = 1, η in (0, 1)), or a generic small a, b."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    B, H, K, V = 2, 3, 4, 5
    r, k = (torch.randn(B, T, H, K, **f64) for _ in range(2))
    v = torch.randn(B, T, H, V, **f64)
    lw = -torch.rand(B, T, H, K, **f64) * decay_scale  # log decay in [-scale, 0]
    if generic:
        a, b = (0.3 * torch.randn(B, T, H, K, **f64) for _ in range(2))
    else:
        kappa = F.normalize(torch.randn(B, T, H, K, **f64), dim=-1)
        a, b = -kappa, kappa * torch.rand(B, T, H, K, **f64)
    ins = [r, lw, k, v, a, b] + ([torch.randn(B, H, V, K, **f64)] if state else [])
    return [t.requires_grad_() for t in ins]


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("state", [True, False])
@pytest.mark.parametrize("T", [1, CHUNK - 1, CHUNK + 1, 2 * CHUNK + 3])
def test_chunked_matches_sequential_values_and_gradients(T: int, state: bool, generic: bool) -> None:
    def s0(x):
        return x[6] if len(x) > 6 else None

    assert_op_matches_reference(lambda *x: rwkv7_chunked(*x[:6], chunk_size=CHUNK, initial_state=s0(x)),
                                lambda *x: rwkv7_sequential(*x[:6], initial_state=s0(x)),
                                _inputs(T, state=state, generic=generic), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("state", [True, False])
@pytest.mark.parametrize("T", [SPLIT - 1, SPLIT + 1, 2 * SPLIT + 3])
def test_chunk_of_several_sub_chunks_matches_sequential(T: int, state: bool) -> None:
    def s0(x):
        return x[6] if len(x) > 6 else None

    assert_op_matches_reference(lambda *x: rwkv7_chunked(*x[:6], chunk_size=SPLIT, initial_state=s0(x)),
                                lambda *x: rwkv7_sequential(*x[:6], initial_state=s0(x)),
                                _inputs(T, state=state), rtol=1e-10, atol=1e-10)


def test_default_chunk_over_several_groups() -> None:
    """The default chunk (16) over a length that spans several groups of chunks."""
    import archbench.archs.ops.rwkv7 as op

    ins = [t.detach() for t in _inputs(75)]
    old, op._GROUP_ELEMENTS = op._GROUP_ELEMENTS, 1  # one chunk per group
    try:
        got = rwkv7_chunked(*ins[:6], initial_state=ins[6])
    finally:
        op._GROUP_ELEMENTS = old
    want = rwkv7_sequential(*ins[:6], initial_state=ins[6])
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_strong_decay_stays_finite() -> None:
    """Log decays of -50 per token: every exponent in the chunked form is a difference <= 0."""
    ins = [t.detach() for t in _inputs(37, decay_scale=50.0)]
    got = rwkv7_chunked(*ins[:6], chunk_size=16, initial_state=ins[6])
    want = rwkv7_sequential(*ins[:6], initial_state=ins[6])
    for x, y in zip(got, want, strict=True):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("state", [True, False])
@pytest.mark.parametrize(("chunk", "T"), [(CHUNK, 2 * CHUNK + 3), (SPLIT, SPLIT + 1), (64, 75)])
def test_factored_pairs_under_the_layer_bound_match_sequential(chunk: int, T: int, state: bool) -> None:
    """With the decay floor the layer guarantees (-e^{-1/2}), the pair matrices are factored matmuls."""
    bound = -0.6065306597126334

    def s0(x):
        return x[6] if len(x) > 6 else None

    assert_op_matches_reference(
        lambda *x: rwkv7_chunked(*x[:6], chunk_size=chunk, initial_state=s0(x), lower_bound=bound),
        lambda *x: rwkv7_sequential(*x[:6], initial_state=s0(x)),
        _inputs(T, state=state, decay_scale=-bound), rtol=1e-10, atol=1e-10)


def test_a_chunk_too_long_for_its_bound_keeps_the_exact_pairs() -> None:
    """Log decays down to -50 per token declared by the caller: the factored decays would overflow, so
    the op builds every ratio elementwise, and the result stays finite and exact."""
    ins = [t.detach() for t in _inputs(37, decay_scale=50.0)]
    got = rwkv7_chunked(*ins[:6], chunk_size=16, initial_state=ins[6], lower_bound=-50.0)
    want = rwkv7_sequential(*ins[:6], initial_state=ins[6])
    for x, y in zip(got, want, strict=True):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)
