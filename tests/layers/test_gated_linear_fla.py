"""The fla fast paths of linear_attention, retnet and gla, on CPU, through stand-in kernels.

Each stand-in computes what fla's docstring says its kernel computes — (B, T, H, ·) layout, `scale`
defaulting to 1/√K, states (B, H, K, V), fla's own γ_h for retention, (S, z) with z (B, 1, H, K) for
normalised linear attention — with the sequential reference op. The mixers' fla path must then give
the chunked path's outputs and prefill states: that checks the call plumbing (argument names, log decay
vs decay, state layout), not fla itself. The float64 and refused-backward fallbacks of every kernel are
checked in tests/ops/test_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers.stand_ins import chunk_gla, install_kernel, kernel_result

from archbench.archs import create
from archbench.archs.ops.gated_linear import gated_linear_sequential

pytestmark = pytest.mark.usefixtures("fresh_kernel_caches")  # no stand-in outlives its test


def chunk_retention(q, k, v, scale=None, initial_state=None, output_final_state=False):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    g_gamma = (1 - 2.0 ** (-5.0 - torch.arange(q.shape[2], dtype=torch.float32))).log()
    return kernel_result(*gated_linear_sequential(q, k, v, g_gamma, scale, initial_state), output_final_state)


def chunk_linear_attn(q, k, v, scale=None, initial_state=None, output_final_state=False, normalize=True):
    assert normalize and initial_state is None
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o, S = gated_linear_sequential(q, k, v, None, scale)
    z = k.cumsum(1)  # (B, T, H, K)
    o = o / ((q * scale * z).sum(-1, keepdim=True) + 1e-10)
    return kernel_result(o, (S, z[:, -1:]), output_final_state)


STAND_INS = {"gla": ("fla.ops.gla", chunk_gla), "retnet": ("fla.ops.retention", chunk_retention),
             "linear_attention": ("fla.ops.linear_attn", chunk_linear_attn)}


@pytest.mark.parametrize("arch", sorted(STAND_INS))
def test_fla_path_matches_chunked_path(arch: str, monkeypatch) -> None:
    module, fn = STAND_INS[arch]
    install_kernel(monkeypatch, arch, module, fn.__name__, fn)
    torch.manual_seed(0)
    mixer = create(arch, d_model=32)
    x = torch.randn(2, 21, 32)
    y_fla, state_fla = mixer.set_backend("fla").prefill(x)
    assert mixer.last_backend == "fla"
    y_ref, state_ref = mixer.set_backend("chunked").prefill(x)
    torch.testing.assert_close(y_fla, y_ref)
    assert state_fla.keys() == state_ref.keys()
    for name in state_ref:
        assert state_fla[name].dtype == state_ref[name].dtype and state_fla[name].is_contiguous()
        torch.testing.assert_close(state_fla[name], state_ref[name])
    mixer.set_backend("fla")(x).sum().backward()  # training runs the backward probe first
    assert mixer.last_backend == "fla"
