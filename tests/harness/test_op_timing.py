"""The op benchmark's worker and yardstick (bench/measure/op_timing.py) and its report table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archbench.bench.measure.op_timing import OPS, OpWorker, yardstick_flops
from archbench.bench.report import write_report


def test_a_worker_times_its_op_in_its_own_process() -> None:
    worker = OpWorker("retnet")
    try:
        seconds = [worker.call(mode, 64) for mode in ("prefill", "train", "prefill", "decode")]
    finally:
        worker.close()
    assert all(0 < s < 60 for s in seconds)
    assert not worker._proc.is_alive()


def test_an_unknown_op_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from linear_attention, retnet"):
        OpWorker("retnett")


def test_every_op_builds_inputs_its_call_accepts() -> None:
    import torch

    for op, spec in OPS.items():
        out = spec.call(*spec.inputs(70, torch.Generator().manual_seed(0)))  # crosses a chunk of 64
        assert out.shape[:2] == (1, 70) and torch.isfinite(out).all(), op
        assert spec.chunk in (16, 32, 64), op


@pytest.mark.parametrize("op", list(OPS))
def test_each_ops_step_continues_its_chunked_form(op: str) -> None:
    import torch

    # the chunked form over 9 tokens equals 8 tokens chunked, then one step from their state (float64)
    spec = OPS[op]
    xs = [x.double() for x in spec.inputs(9, torch.Generator().manual_seed(1))]
    whole = spec.call(*xs)[:, -1]
    state = spec.zero_state(torch.float64)
    for t in range(9):
        out, state = spec.step([x[:, t:t + 1] if x.dim() > 2 else x for x in xs], state)
    assert torch.allclose(out, whole, rtol=1e-9, atol=1e-9), op


def test_a_worker_says_where_a_prefill_calls_time_goes() -> None:
    worker = OpWorker("gla")
    try:
        shares = worker.profile(128)
    finally:
        worker.close()
    assert set(shares) == {"matmul", "copies", "other ops", "python"}
    assert shares["matmul"] > 0 and shares["other ops"] > 0 and 0.9 < sum(shares.values()) < 1.1


def test_the_yardstick_counts_the_chunked_form_and_train_triples_it() -> None:
    # 4 heads, K = V = 64, Q = 64: 2·64·128 + 4·64·64 = 32768 per token and head
    assert yardstick_flops(1, 64, False) == 4 * 32768
    assert yardstick_flops(10, 64, True) == 3 * 10 * 4 * 32768


SHARES = {"matmul": 0.3, "copies": 0.1, "other ops": 0.5, "python": 0.1}


def test_the_report_writes_the_op_speed_table(tmp_path: Path) -> None:
    bench = {"machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "commit_info": {"id": "abc"},
             "benchmarks": [{"group": f"op {mode} n=1024", "name": f"test_op[rwkv7-{mode}-1024]",
                             "stats": {"median": 0.02, "min": 0.02, "max": 0.03, "rounds": 5},
                             "extra_info": {"op": "rwkv7", "mode": mode, "seq_len": 1024, "chunk": 64,
                                            "worker_median_s": 0.01, "flops_per_s": 2e9,
                                            "frac_of_peak": 0.25, "matmul_peak_flops_per_s": 8e9,
                                            **({"time_shares": SHARES} if mode == "prefill" else {})}}
                            for mode in ("prefill", "train")]
             + [{"group": "op decode", "name": "test_op_decode[rwkv7]",
                 "stats": {"median": 0.003, "min": 0.003, "max": 0.004, "rounds": 5},
                 "extra_info": {"op": "rwkv7", "mode": "decode", "seq_len": 1, "chunk": 64,
                                "worker_median_s": 2e-5, "flops_per_s": 3e9, "frac_of_peak": 0.04,
                                "matmul_peak_flops_per_s": 8e10}}]}
    folder = tmp_path / "raw" / "pytest-benchmark"
    folder.mkdir(parents=True)
    (folder / "op_speed.json").write_text(json.dumps(bench))
    write_report(tmp_path)
    table = (tmp_path / "op_speed.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| rwkv7"))
    assert row.count("10.0 ms · 25%") == 2
    assert "prefill n=1024" in table and "train n=1024" in table and "decode (per step)" in table
    assert "20.0 µs · 4%" in row and "30% / 10% / 50% / 10%" in row
    assert "prefill n=1024: matmul / copies / other ops / Python" in table


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's environment in /proc")
def test_workers_start_in_the_stated_allocator_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from archbench.bench.measure.op_timing import ALLOCATOR, allocator_state

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    worker = OpWorker("retnet")
    try:
        worker.call("decode", 1)  # the child is up and has run an op
        child = Path(f"/proc/{worker._proc.pid}/environ").read_bytes()
    finally:
        worker.close()
    # glibc parses the variable in place at start-up (':' becomes a NUL), so look for each tunable
    assert b"GLIBC_TUNABLES=" in child and all(t.encode() in child for t in ALLOCATOR.split(":"))
    assert "GLIBC_TUNABLES" not in __import__("os").environ  # the parent's environment is left as it was
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")  # a user's own tunables are kept
    assert allocator_state() == "glibc.malloc.arena_max=1"


def test_one_worker_lives_at_a_time_and_all_close() -> None:
    from archbench.bench.measure.op_timing import one_at_a_time

    class Fake:
        def __init__(self, name: str):
            self.name, self.closed = name, False

        def close(self) -> None:
            self.closed = True

    with one_at_a_time(Fake) as get:
        a = get("a")
        assert get("a") is a and not a.closed
        b = get("b")
        assert a.closed and not b.closed
    assert b.closed
