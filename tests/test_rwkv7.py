"""The rwkv7 layer's fla fast path, exercised on CPU through a stand-in `fla.ops.rwkv7.chunk_rwkv7`."""

import sys
import types

import pytest
import torch

from archbench.archs import create, get, kernels
from archbench.archs.ops.rwkv7 import rwkv7_sequential

REFUSAL = "Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results (see #640)"


def _install(monkeypatch, fn) -> None:
    fake = types.ModuleType("fla.ops.rwkv7")
    fake.chunk_rwkv7 = fn
    for name in ("fla", "fla.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "fla.ops.rwkv7", fake)
    monkeypatch.setattr(get("rwkv7"), "backend_unavailable", classmethod(lambda cls, b, d: None))  # no CUDA
    kernels.clear_caches()


@pytest.fixture(autouse=True)
def fresh_caches():
    yield
    kernels.clear_caches()


def test_fla_call_conventions(monkeypatch) -> None:
    """fla gets (B, T, H, K) tensors, the LOG decay, scale 1, and returns its state as (B, H, K, V)."""
    seen = {}

    def chunk_rwkv7(r, w, k, v, a, b, scale, output_final_state, safe_gate, lower_bound, chunk_size,
                    initial_state=None):
        seen.update(shape=r.shape, scale=scale, w_max=float(w.max()), w_min=float(w.min()), lb=lower_bound)
        o, S = rwkv7_sequential(r, w, k, v, a, b)
        return o, (S.transpose(-1, -2) if output_final_state else None)

    _install(monkeypatch, chunk_rwkv7)
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


class _RefusingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(REFUSAL + "\nPlease upgrade Triton")


def test_trains_on_reference_when_fla_refuses_backward(monkeypatch) -> None:
    _install(monkeypatch, lambda **kw: (_RefusingBackward.apply(kw["v"] * 1.0), None))
    torch.manual_seed(0)
    m = create("rwkv7", 32)
    x = torch.randn(2, 21, 32, requires_grad=True)
    y = m.set_backend("fla")(x)
    y.sum().backward()  # would raise, had the fla path run
    assert m.last_backend == f"chunked (fla backward refused: {REFUSAL})"
    torch.testing.assert_close(y, m.set_backend("chunked")(x))
