"""Rotary positions (archs/ops/rope.py, used by attention, swa, retnet, mamba3): a rotation of the right
feature pairs, relative, and exact at long positions in bf16."""

from __future__ import annotations

import math

import pytest
import torch

from archbench.archs.ops.rope import rope, rope_rotation


def test_rope_rotates_each_pair_by_pos_times_theta() -> None:
    hd, base, pos = 8, 10000.0, 7
    x = torch.randn(1, hd, dtype=torch.float64)
    y = rope(x, rope_rotation(torch.tensor([pos]), hd, base, x.dtype))
    for j in range(hd // 2):
        a = pos * base ** (-2 * j / hd)
        x0, x1 = x[0, 2 * j], x[0, 2 * j + 1]
        expected = torch.stack((x0 * math.cos(a) - x1 * math.sin(a), x0 * math.sin(a) + x1 * math.cos(a)))
        torch.testing.assert_close(y[0, 2 * j:2 * j + 2], expected)


def test_half_split_pairing_rotates_j_with_j_plus_half() -> None:
    """retnet's pairing (fla's rotate_half): feature j turns with feature j + d/2, by the same angles."""
    hd, base, pos = 8, 10000.0, 5
    x = torch.randn(3, 1, hd, dtype=torch.float64)  # (T=3 batch of one position each, 1 head, hd)
    y = rope(x, rope_rotation(torch.tensor([pos]), hd, base, x.dtype), interleaved=False)
    for j in range(hd // 2):
        a = pos * base ** (-2 * j / hd)
        x0, x1 = x[..., j], x[..., j + hd // 2]
        torch.testing.assert_close(y[..., j], x0 * math.cos(a) - x1 * math.sin(a))
        torch.testing.assert_close(y[..., j + hd // 2], x0 * math.sin(a) + x1 * math.cos(a))


def test_rope_scores_depend_only_on_relative_position() -> None:
    hd = 16
    q, k = torch.randn(2, 1, hd, dtype=torch.float64).unbind(0)

    def score(m: int, n: int) -> float:
        rq = rope(q, rope_rotation(torch.tensor([m]), hd, 10000.0, q.dtype))
        rk = rope(k, rope_rotation(torch.tensor([n]), hd, 10000.0, k.dtype))
        return float((rq * rk).sum())

    assert score(10, 3) == pytest.approx(score(107, 100), rel=1e-9)
    assert score(10, 3) != pytest.approx(score(10, 4), rel=1e-3)


def test_rope_angles_do_not_round_positions_in_bfloat16() -> None:
    # bf16 holds integers exactly only up to 256; the angles must come from the exact positions.
    pos = torch.tensor([1001, 60001])
    low = rope_rotation(pos, 64, 10000.0, torch.bfloat16)
    exact = rope_rotation(pos, 64, 10000.0, torch.float64)
    # float32 angles near 4e4 rad are good to ~3e-3 rad; bf16-rounded positions would be off by O(1).
    torch.testing.assert_close(low.to(torch.complex128), exact, atol=1e-2, rtol=0)
    rounded = rope_rotation(pos.to(torch.bfloat16).to(torch.long), 64, 10000.0, torch.float64)
    assert (rounded - exact).abs().max() > 0.5


def test_rope_keeps_dtype_and_shape_on_a_strided_view() -> None:
    qkv = torch.randn(2, 5, 3, 4, 8).permute(2, 0, 3, 1, 4).to(torch.bfloat16)  # (3, B, H, T, hd) view
    y = rope(qkv[:2], rope_rotation(torch.arange(5), 8, 10000.0, qkv.dtype))
    assert y.shape == qkv[:2].shape and y.dtype == torch.bfloat16


@pytest.mark.parametrize("interleaved", [True, False])
def test_real_rotation_equals_the_complex_one(interleaved: bool) -> None:
    """Under torch.compile the rotation is (cos, sin) in real arithmetic (no complex dtype in inductor):
    both pairings must give the complex multiply's values."""
    x = torch.randn(2, 4, 3, 8, dtype=torch.float64)  # (B, T, H, hd)
    rotation = rope_rotation(torch.arange(4), 8, 10000.0, x.dtype)[:, None]  # (T, 1, hd/2)
    real = torch.stack([rotation.real, rotation.imag], -1)  # (T, 1, hd/2, 2): (cos, sin)
    torch.testing.assert_close(rope(x, real, interleaved), rope(x, rotation, interleaved))
    assert not torch.allclose(rope(x, real, interleaved), x)  # it did rotate
