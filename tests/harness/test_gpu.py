"""Device checks: run by .ci/device_run.sh on a lent GPU (`pytest -m gpu`), skipped without CUDA.

The fast-path parity checks themselves live in the conformance suite (`fast_matches_reference` runs
on CUDA whenever a device is present); these cover what only a GPU has: CUDA-graph decode, the
per-cell choice of the fastest kernel, and the NVML energy counter.
"""

import dataclasses

import pytest
import torch

from archbench.archs import resolve_model
from archbench.bench.experiments import scaling
from archbench.bench.grids.common import models_at as scaling_models
from archbench.bench.measure import energy

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def spec(model: str, mode: str, n: int = 512, **extra) -> scaling.ScalingSpec:
    return scaling.ScalingSpec(resolve_model(model, 2, 256), mode=mode, seq_len=n, batch=2,
                               device="cuda", dtype="float32", **extra)


@pytest.mark.parametrize("model", scaling_models(2))
def test_cuda_graph_decode_matches_eager(model: str) -> None:
    s = spec(model, "decode")
    backbone = scaling.build_backbone(s)
    graphed = scaling.make_call(backbone, s)  # GRAPH_WARMUP eager steps, then capture
    eager = scaling.make_call(backbone, dataclasses.replace(s, cuda_graph=False))
    for _ in range(scaling.GRAPH_WARMUP):  # a mixer may advance its state in place at every step
        eager()
    assert torch.allclose(graphed()[0], eager()[0], rtol=1e-4, atol=1e-5)


def test_fastest_backend_is_measured_per_cell() -> None:
    best, trials = scaling.fastest_backend(spec("attention", "prefill", n=2048, dtype="bfloat16"))
    assert best in trials and len(trials) >= 2 and trials[best] == min(trials.values())


def test_nvml_energy_is_read_on_gpu() -> None:
    x = torch.randn(4096, 4096, device="cuda")
    reading = energy.energy_joules(lambda: x @ x, "cuda", min_window_s=1.0)
    if reading is None:
        pytest.skip("nvidia-ml-py is not installed or the driver exposes no energy counter")
    assert reading.source == "nvml" and reading.joules_per_call > 0 and reading.window_s >= 1.0
