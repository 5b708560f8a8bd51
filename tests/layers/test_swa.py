"""The swa layer: its w-slot decode ring, and the plumbing of its flash-attn fast path (a stand-in on CPU)."""

import pytest
import torch
from helpers.stand_ins import install_kernel

from archbench.archs import create
from archbench.archs.ops.sliding_window import sliding_window_sequential


@pytest.mark.parametrize("d_conv", [0, 4])
def test_ring_buffer_wraps_and_matches_forward(d_conv: int) -> None:
    """The decode ring holds exactly w slots and keeps matching the parallel path after it wraps."""
    torch.manual_seed(0)
    m = create("swa", 16, window=5, head_dim=8, d_conv=d_conv).double()
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        y_pre, state = m.prefill(x[:, :9], max_len=23)
        assert state["k"].shape[2] == 5 and m.state_bytes(2, 23) == m.state_bytes(2, 5000)
        steps = [m.step(x[:, t], state)[0] for t in range(9, 23)]
    torch.testing.assert_close(torch.cat([y_pre, torch.stack(steps, 1)], 1), y, rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("fresh_kernel_caches")
def test_flash_attn_plumbing_with_a_stand_in(monkeypatch) -> None:
    """The fast path hands flash-attn (B, T, H, hd) tensors, causal=True and window_size=(w - 1, 0);
    float32 inputs fall back to the banded path and say so."""
    calls = []

    def flash_attn_func(q, k, v, causal, window_size):
        calls.append((q.shape, causal, window_size))
        o = sliding_window_sequential(*(t.transpose(1, 2).float() for t in (q, k, v)), window_size[0] + 1)
        return o.transpose(1, 2).to(q.dtype)

    install_kernel(monkeypatch, "swa", "flash_attn", "flash_attn_func", flash_attn_func)
    torch.manual_seed(0)
    m = create("swa", 32, window=6).set_backend("flash_attn")
    x = torch.randn(2, 21, 32)
    y32 = m(x)
    assert m.last_backend == "banded (flash_attn has no float32 kernels)" and not calls
    m = m.to(torch.bfloat16)
    y = m(x.bfloat16())
    assert m.last_backend == "flash_attn"
    assert calls == [((2, 21, 2, 16), True, (5, 0))]
    torch.testing.assert_close(y.float(), y32, rtol=0.05, atol=0.05)
