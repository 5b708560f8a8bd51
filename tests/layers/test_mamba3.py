"""The mamba3 layer's mamba-ssm fast path, exercised on CPU through a stand-in `mamba3_siso_combined`
written from the kernel's documented contract (raw trap and angles, biases, D and gate applied inside)."""

import math

import pytest
import torch
from helpers.stand_ins import install_kernel

from archbench.archs import create
from archbench.archs.mixers.mamba3 import rotate_pairs
from archbench.archs.ops.mamba3 import mamba3_sequential

pytestmark = pytest.mark.usefixtures("fresh_kernel_caches")  # no stand-in outlives its test

MODULE = "mamba_ssm.ops.triton.mamba3.mamba3_siso_combined"


def _stand_in(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, chunk_size, return_final_states):
    """Q, K (B, T, 1, N); V, Z (B, T, H, P); ADT, DT, Trap (B, H, T); Angles (B, T, H, R) raw."""
    theta = torch.cumsum(Angles.tanh() * math.pi * DT.transpose(1, 2)[..., None], 1) % (2 * math.pi)
    q, k = rotate_pairs(Q + Q_bias, theta), rotate_pairs(K + K_bias, theta)
    y, S = mamba3_sequential(q, k, V, ADT.transpose(1, 2), DT.transpose(1, 2), Trap.sigmoid().transpose(1, 2))
    out = (y + D[:, None] * V) * torch.nn.functional.silu(Z)
    return (out, theta[:, -1], S, k[:, -1], V[:, -1]) if return_final_states else out


def test_mamba_ssm_call_conventions(monkeypatch) -> None:
    install_kernel(monkeypatch, "mamba3", MODULE, "mamba3_siso_combined", _stand_in)
    torch.manual_seed(0)
    m = create("mamba3", 32)
    x = torch.randn(2, 19, 32)
    with torch.no_grad():
        y, state = m.set_backend("mamba_ssm").prefill(x)
        assert m.last_backend == "mamba_ssm"
        y_ref, state_ref = m.set_backend("chunked").prefill(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for key in ("angle", "ssm", "k", "v"):
        torch.testing.assert_close(state[key], state_ref[key], rtol=1e-4, atol=1e-5)


def test_shapes_the_kernel_does_not_take_run_the_reference(monkeypatch) -> None:
    """mamba-ssm's kernel needs power-of-two head_dim and d_state: other widths run "chunked" and say so."""
    install_kernel(monkeypatch, "mamba3", MODULE, "mamba3_siso_combined", _stand_in)
    m = create("mamba3", 24, head_dim=12).set_backend("mamba_ssm")
    with torch.no_grad():
        m(torch.randn(1, 5, 24))
    assert m.last_backend == "chunked (mamba-ssm needs power-of-two head_dim and d_state)"
