"""pytest-benchmark entry point: every registered mixer x mode x n, the same cells `archbench run` measures.

    pytest bench/ --benchmark-only --benchmark-json=runs/bench.json
    ARCHBENCH_BENCH_LENS=1024,4096 ARCHBENCH_BENCH_DEVICE=cuda pytest bench/ --benchmark-only

Not collected by plain `pytest` (testpaths = tests). Groups are "mode n=N", so pytest-benchmark's
table compares mixers side by side at each length; `extra_info` carries the backend that ran, the
measured state bytes and peak memory. `archbench report` ingests the JSON from results/raw/pytest-benchmark/.
"""

import os
import time

import pytest
import torch

from archbench.archs import list_archs
from archbench.bench import measure, scaling

LENS = [int(n) for n in os.environ.get("ARCHBENCH_BENCH_LENS", "256,1024,4096").split(",")]
DEVICE = os.environ.get("ARCHBENCH_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
DTYPE = os.environ.get("ARCHBENCH_BENCH_DTYPE", "bfloat16" if DEVICE == "cuda" else "float32")
D_MODEL = int(os.environ.get("ARCHBENCH_BENCH_D_MODEL", "256"))
BUDGET_S = 1.0  # seconds of timed rounds per benchmark


@pytest.mark.parametrize("n", LENS)
@pytest.mark.parametrize("mode", scaling.MODES)
@pytest.mark.parametrize("arch", list_archs())
def test_mixer(benchmark, arch: str, mode: str, n: int) -> None:
    spec = {"kind": "scaling", "arch": arch, "arch_cfg": {}, "mode": mode, "seq_len": n, "batch": 1,
            "d_model": D_MODEL, "device": DEVICE, "dtype": DTYPE, "seed": 0}
    reason = scaling.skip_reason(spec)
    if reason:
        pytest.skip(reason)
    mixer = scaling.build_mixer(spec)
    call = scaling.make_call(mixer, spec)

    def timed():  # synchronise inside the timed function, or CUDA time is launch time
        call()
        measure.sync(DEVICE)

    start = time.perf_counter()
    timed()  # warm-up, and a cost estimate to size the rounds
    rounds = max(3, min(50, int(BUDGET_S / max(time.perf_counter() - start, 1e-6))))
    benchmark.group = f"{mode} n={n}"
    benchmark.extra_info.update(
        backend=mixer.last_backend or mixer.resolve_backend(DEVICE), device=measure.device_name(DEVICE),
        dtype=DTYPE, d_model=D_MODEL, state_bytes=mixer.state_bytes(1, n),
        peak_mem_bytes=measure.peak_memory_bytes(call, DEVICE),
    )
    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
