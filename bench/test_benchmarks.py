"""pytest-benchmark entry point: every scaling-suite model × mode × n, the same cells `archbench run`
measures (a Backbone of one depth, width and MLP ratio).

    pytest bench/ --benchmark-only --benchmark-json=runs/bench.json
    ARCHBENCH_BENCH_LENS=1024,4096 ARCHBENCH_BENCH_DEVICE=cuda pytest bench/ --benchmark-only

Not collected by plain `pytest` (testpaths = tests). Groups are "mode n=N", so pytest-benchmark's
table compares models side by side at each length; `extra_info` carries the backend that ran, the
measured state bytes and peak memory. `archbench report` ingests the JSON from
results/raw/pytest-benchmark/, and from any file or folder given as `--benchmarks PATH` (e.g.
pytest-benchmark's own .benchmarks/). bench/conftest.py says up front how many benchmarks were collected.
"""

import os
import time

import pytest
import torch

from archbench.archs import resolve_model
from archbench.bench.experiments.scaling import MODES, Scaling, ScalingSpec, build_backbone, make_call
from archbench.bench.grids.common import models_at as scaling_models
from archbench.bench.grids.scaling import D_MODEL as SCALING_D_MODEL
from archbench.bench.grids.scaling import DEPTH as SCALING_DEPTH
from archbench.bench.measure import device_name, peak_memory_bytes, sync

LENS = [int(n) for n in os.environ.get("ARCHBENCH_BENCH_LENS", "256,1024,4096").split(",")]
DEVICE = os.environ.get("ARCHBENCH_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
DTYPE = os.environ.get("ARCHBENCH_BENCH_DTYPE", "bfloat16" if DEVICE == "cuda" else "float32")
D_MODEL = int(os.environ.get("ARCHBENCH_BENCH_D_MODEL", str(SCALING_D_MODEL)))
DEPTH = int(os.environ.get("ARCHBENCH_BENCH_DEPTH", str(SCALING_DEPTH)))
BUDGET_S = 1.0  # seconds of timed rounds per benchmark


@pytest.mark.parametrize("n", LENS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", scaling_models(DEPTH))
def test_model(benchmark, model: str, mode: str, n: int) -> None:
    spec = ScalingSpec(resolve_model(model, DEPTH, D_MODEL), mode=mode, seq_len=n, batch=1, device=DEVICE,
                       dtype=DTYPE)
    reason = Scaling.skip_reason(spec)
    if reason:
        pytest.skip(reason)
    backbone = build_backbone(spec)
    call = make_call(backbone, spec)

    def timed():  # synchronise inside the timed function, or CUDA time is launch time
        call()
        sync(DEVICE)

    start = time.perf_counter()
    timed()  # warm-up, and a cost estimate to size the rounds
    rounds = max(3, min(50, int(BUDGET_S / max(time.perf_counter() - start, 1e-6))))
    benchmark.group = f"{mode} n={n}"
    benchmark.extra_info.update(
        backend=backbone.last_backend, device=device_name(DEVICE), dtype=DTYPE, depth=DEPTH, d_model=D_MODEL,
        state_bytes=backbone.state_bytes(1, n), peak_mem_bytes=peak_memory_bytes(call, DEVICE),
    )
    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
