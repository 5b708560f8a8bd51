"""The fla fast paths of hgrn2, gated_deltaproduct and based, on CPU, through stand-in kernels.

Each stand-in computes what fla's docstring says its kernel computes — (B, T, H, ·) layout, `scale`
defaulting to 1/√K, states (B, H, K, V) — with a reference written here or an op's sequential form:
`chunk_gla` (HGRN2: k = 1 − f, g = log f), `chunk_gated_delta_rule` (Gated DeltaProduct's interleaved
steps), `fused_chunk_based` (Based: 1 + s + s²/2 weights, normalised with ε = 1e-6, no state out). The
mixers' fla path must then give the chunked path's outputs and prefill states: the call plumbing
(argument names, log gates, the interleaving, the state Based sums beside the kernel), not fla itself.
The float64 and refused-backward fallbacks of every kernel are checked in tests/ops/test_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers.stand_ins import chunk_gla, install_kernel, kernel_result

from archbench.archs import create
from archbench.archs.ops.delta_rule import delta_rule_sequential

pytestmark = pytest.mark.usefixtures("fresh_kernel_caches")  # no stand-in outlives its test


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    assert g.dtype == torch.float32  # fla takes the log decay in float32
    o, S = delta_rule_sequential(q, k, v, beta, g, initial_state, scale)
    return kernel_result(o, S, output_final_state)


def fused_chunk_based(q, k, v, scale=None):
    assert q.shape[-1] <= 16  # fla's assert
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bthd,bshd->bhts", q * scale, k)
    w = (1 + s + s * s / 2).tril()  # causal Taylor weights
    o = torch.einsum("bhts,bshv->bthv", w, v)
    return o / (w.sum(-1).transpose(1, 2)[..., None] + 1e-6)


STAND_INS = {"hgrn2": ("fla.ops.gla", chunk_gla),
             "gated_deltaproduct": ("fla.ops.gated_delta_rule", chunk_gated_delta_rule),
             "based": ("fla.ops.based", fused_chunk_based)}


@pytest.mark.parametrize("arch", sorted(STAND_INS))
def test_fla_path_matches_chunked_path(arch: str, monkeypatch) -> None:
    module, fn = STAND_INS[arch]
    install_kernel(monkeypatch, arch, module, fn.__name__, fn)
    torch.manual_seed(0)
    mixer = create(arch, d_model=32)
    x = torch.randn(2, 21, 32)
    with torch.no_grad():  # the probes of the backward are tests/ops/test_kernels.py's
        y_fla, state_fla = mixer.set_backend("fla").prefill(x)
        assert mixer.last_backend == "fla"
        y_ref, state_ref = mixer.set_backend(mixer.reference_backend).prefill(x)
    torch.testing.assert_close(y_fla, y_ref, rtol=1e-4, atol=1e-5)
    assert state_fla.keys() == state_ref.keys()
    for name in state_ref:
        torch.testing.assert_close(state_fla[name], state_ref[name], rtol=1e-4, atol=1e-5)


def test_based_wider_features_than_fla_takes_run_the_reference(monkeypatch) -> None:
    module, fn = STAND_INS["based"]
    install_kernel(monkeypatch, "based", module, fn.__name__, fn)
    mixer = create("based", 32, feature_dim=24).set_backend("fla")
    with torch.no_grad():
        mixer(torch.randn(1, 5, 32))
    assert mixer.last_backend == "chunked (fla's fused_chunk_based takes feature_dim <= 16)"
