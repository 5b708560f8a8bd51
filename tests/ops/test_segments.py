"""The pure-PyTorch parallel paths run a cache-sized segment at a time, carrying the state across
(archs/ops/common.py, `segment_length` / `in_segments`): in many small segments a mixer must give what it
gives in one piece, outputs and prefill state, in float64, for every registered mixer."""

from __future__ import annotations

import pytest
import torch

from archbench.archs import create, list_archs
from archbench.archs.ops import common
from archbench.archs.ops.common import in_segments, segment_length


def test_segment_length_is_whole_chunks_and_at_least_one() -> None:
    assert segment_length(1, 1024, 64) == 1024  # 2^20 elements of 1024 per token
    assert segment_length(1, 1000, 64) % 64 == 0
    assert segment_length(4, 1 << 20, 64) == 64  # wider than the budget: one chunk


def test_in_segments_carries_the_state() -> None:
    x = torch.arange(10.0).view(1, 10, 1)
    y, total = in_segments(lambda seg, c: (seg.cumsum(1) + c, c + seg.sum()), x, torch.tensor(0.0), 3)
    torch.testing.assert_close(y, x.cumsum(1))
    assert total == 45


def _run(name: str, x: torch.Tensor):
    torch.manual_seed(0)
    mixer = create(name, 32).double()
    with torch.no_grad():
        return mixer(x), mixer.prefill(x)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", list_archs())
def test_segments_match_one_piece(name: str, monkeypatch) -> None:
    x = torch.randn(2, 131, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(common, "_SEGMENT_ELEMENTS", 1 << 40)  # one segment
    y_one, (y_pre_one, state_one) = _run(name, x)
    monkeypatch.setattr(common, "_SEGMENT_ELEMENTS", 1)  # one chunk per segment: three or more segments
    y_seg, (y_pre_seg, state_seg) = _run(name, x)
    torch.testing.assert_close(y_seg, y_one, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_pre_seg, y_pre_one, rtol=1e-10, atol=1e-10)
    flat_one, flat_seg = (torch.utils._pytree.tree_leaves(s) for s in (state_one, state_seg))
    assert len(flat_one) == len(flat_seg)
    for a, b in zip(flat_seg, flat_one, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
