"""archs/ops/wkv.py: RWKV-6's chunked WKV and its one-token step against the sequential definition."""

import pytest
import torch
from helpers.op_parity import STATES, assert_chunked_matches_sequential, boundary_lengths

from archbench.archs.ops import wkv
from archbench.archs.ops.common import log_decay_floor
from archbench.archs.ops.wkv import wkv_chunked, wkv_sequential, wkv_step

CHUNK = 8  # two sub-chunks of wkv's 4 tokens, so both intra-chunk paths run


def _inputs(T: int, seed: int = 0, decay_scale: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(r, k, v, log decay, bonus u) and an initial state S0, float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    B, H, K = 2, 3, 4
    r, k, v = (torch.randn(B, T, H, K, **f64) for _ in range(3))
    lw = -torch.rand(B, T, H, K, **f64) * decay_scale  # log decay <= 0
    u = torch.randn(H, K, **f64)
    return [r, k, v, lw, u], torch.randn(B, H, K, K, **f64)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", boundary_lengths(CHUNK))
def test_chunked_matches_sequential(T: int, state: str) -> None:
    inputs, S0 = _inputs(T, seed=T)
    assert_chunked_matches_sequential(wkv_chunked, wkv_sequential, inputs, S0, CHUNK,
                                      with_state=state == "random_state")


@pytest.mark.parametrize("chunk", [4, 32])  # one sub-chunk per chunk; a chunk longer than T
def test_other_chunk_sizes(chunk: int) -> None:
    inputs, S0 = _inputs(19)
    assert_chunked_matches_sequential(wkv_chunked, wkv_sequential, inputs, S0, chunk, with_state=True)


def test_outputs_in_several_passes(monkeypatch) -> None:
    monkeypatch.setattr(wkv, "_PASS_ELEMENTS", 1)  # one chunk per pass of the output loop
    inputs, S0 = _inputs(3 * CHUNK + 2)
    assert_chunked_matches_sequential(wkv_chunked, wkv_sequential, inputs, S0, CHUNK, with_state=True)


def test_step_is_one_token_of_the_sequence() -> None:
    (r, k, v, lw, u), S0 = _inputs(1)
    o, S = wkv_step(r[:, 0], k[:, 0], v[:, 0], lw[:, 0], u, S0)
    o_seq, S_seq = wkv_sequential(r, k, v, lw, u, S0)
    torch.testing.assert_close(o, o_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(S, S_seq, rtol=0, atol=0)


def test_strong_decay_stays_finite_and_matches_the_floored_reference() -> None:
    """Log decays far below the floor: the chunked op clamps them (no overflow in its exponent
    differences), which the reference given the same clamped decays reproduces."""
    (r, k, v, lw, u), S0 = _inputs(40, decay_scale=500.0)
    o, S = wkv_chunked(r, k, v, lw, u, S0, chunk_size=32)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    o_ref, S_ref = wkv_sequential(r, k, v, lw.clamp(min=log_decay_floor(lw.dtype)), u, S0)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(S, S_ref)
