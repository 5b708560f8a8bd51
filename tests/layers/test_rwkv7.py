"""The rwkv7 layer's fla fast path, exercised on CPU through a stand-in `fla.ops.rwkv7.chunk_rwkv7` (its
float64 and refused-backward fallbacks are checked with every other kernel's in tests/ops/test_kernels.py)."""

import pytest
import torch
from helpers.stand_ins import install_kernel

from archbench.archs import create
from archbench.archs.ops.rwkv7 import rwkv7_sequential

pytestmark = pytest.mark.usefixtures("fresh_kernel_caches")  # no stand-in outlives its test


def test_fla_call_conventions(monkeypatch) -> None:
    """fla gets (B, T, H, K) tensors, the LOG decay, scale 1, and returns its state as (B, H, K, V)."""
    seen = {}

    def chunk_rwkv7(r, w, k, v, a, b, scale, output_final_state, safe_gate, lower_bound, chunk_size,
                    initial_state=None):
        seen.update(shape=r.shape, scale=scale, w_max=float(w.max()), w_min=float(w.min()), lb=lower_bound)
        o, S = rwkv7_sequential(r, w, k, v, a, b)
        return o, (S.transpose(-1, -2) if output_final_state else None)

    install_kernel(monkeypatch, "rwkv7", "fla.ops.rwkv7", "chunk_rwkv7", chunk_rwkv7)
    torch.manual_seed(0)
    m = create("rwkv7", 32)
    x = torch.randn(2, 21, 32)
    with torch.no_grad():
        y, state = m.set_backend("fla").prefill(x)
        assert m.last_backend == "fla"
        y_ref, state_ref = m.set_backend("chunked").prefill(x)
    assert seen["shape"] == (2, 21, 2, 16) and seen["scale"] == 1.0
    assert seen["lb"] <= seen["w_min"] and seen["w_max"] < 0
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state["wkv"], state_ref["wkv"], rtol=1e-4, atol=1e-5)
