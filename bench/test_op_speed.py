"""pytest-benchmark: the chunked ops on their own, prefill, train and decode, each in a fresh worker process,
with their achieved FLOP/s against the measured matmul peak.

One benchmark is one call of an op's chunked form (archs/ops/) at batch 1, four heads of 64 (the
scaling suite's d_model 256), float32, one torch thread: `prefill` without gradients, `train` forward
and backward of the output's sum. Each op runs in its own spawned worker (bench/measure/op_timing.py),
so no op is timed in the allocator state another left; the benchmark's rounds time the request over a
pipe (a round trip of well under a millisecond on top of the call), and `extra_info["worker_median_s"]`
is the call as the worker timed it, which the FLOP/s use.

Each op runs in the chunk its layers use (`Op.chunk`, in the rows: 64, or 16 for the per-channel decays
of GLA and KDA, 32 for RWKV-6). Against it stands a yardstick common to every op: the matmul FLOPs of the
chunked form at Q = 64 whatever the op's own chunk, 2Q(K + V) + 4KV per token and head (scores and their
values within a chunk, the state read and written; Yang et al. 2024, arXiv 2312.06635 §3), × 3 for train,
over the single-core matmul peak measured in this process (bench/measure/train_flops.py).
`extra_info["frac_of_peak"]` is that share: not each op's exact count (the delta rule's triangular solve
and the decays are left out), so one yardstick compares the ops. Decode (one token) is each layer's
`step`, timed per layer by the scaling suite (`archbench run scaling --modes decode`); here `decode` is
the op's own one-token step (archs/ops/, as the layers' `step` runs it) from a state of zeros, 100 steps
per call, the seconds per step in `worker_median_s` and its yardstick the state's read and write, 4KV per
head. Where an op is far from the peak, `extra_info["time_shares"]` says what bounds it: a prefill call
under the profiler, its time split into matmuls, copies, other ops (the elementwise decays and masks) and
Python.

    taskset -c 1 pytest bench/test_op_speed.py --benchmark-only \\
        --benchmark-json=results/raw/pytest-benchmark/op_speed.json
    ARCHBENCH_OP_LENS=1024 pytest bench/test_op_speed.py --benchmark-only -k rwkv7
"""

from __future__ import annotations

import os
import statistics

import pytest

from archbench.bench.measure.op_timing import (
    DECODE_STEPS,
    OPS,
    YARDSTICK_CHUNK,
    OpWorker,
    allocator_state,
    one_at_a_time,
    yardstick_flops,
)
from archbench.bench.measure.train_flops import matmul_peak_flops

LENS = [int(n) for n in os.environ.get("ARCHBENCH_OP_LENS", "1024,4096,16384").split(",")]
ROUNDS = 5


@pytest.fixture(scope="module")
def workers():
    """One live worker at a time: a fresh one whenever the op changes."""
    with one_at_a_time(OpWorker) as get:
        yield get


@pytest.mark.parametrize("n", LENS)
@pytest.mark.parametrize("mode", ["prefill", "train"])
@pytest.mark.parametrize("op", list(OPS))
def test_op(benchmark, workers, op: str, mode: str, n: int) -> None:
    worker = workers(op)
    inside: list[float] = []
    worker.call(mode, n)  # warm-up: inputs built, caches and allocator warm
    benchmark.group = f"op {mode} n={n}"
    benchmark.pedantic(lambda: inside.append(worker.call(mode, n)), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    median = statistics.median(inside[-ROUNDS:])
    _record(benchmark, op, mode, n, median, yardstick_flops(n, YARDSTICK_CHUNK, mode == "train"))
    if mode == "prefill":  # after the timed rounds: the profiler's overhead stays out of the timing
        benchmark.extra_info["time_shares"] = worker.profile(n)


@pytest.mark.parametrize("op", list(OPS))
def test_op_decode(benchmark, workers, op: str) -> None:
    worker = workers(op)
    inside: list[float] = []
    worker.call("decode", 1)
    benchmark.group = "op decode"
    benchmark.pedantic(lambda: inside.append(worker.call("decode", 1)), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    _record(benchmark, op, "decode", 1, statistics.median(inside[-ROUNDS:]), yardstick_flops(1, 0, False))
    benchmark.extra_info["steps_per_call"] = DECODE_STEPS


def _record(benchmark, op: str, mode: str, n: int, median: float, flops: int) -> None:
    peak = matmul_peak_flops(1)
    benchmark.extra_info.update(op=op, mode=mode, seq_len=n, chunk=OPS[op].chunk, worker_median_s=median,
                                yardstick_flops=flops, flops_per_s=flops / median,
                                matmul_peak_flops_per_s=peak, frac_of_peak=flops / median / peak, threads=1,
                                allocator=allocator_state(), load_1m=round(os.getloadavg()[0], 2))
