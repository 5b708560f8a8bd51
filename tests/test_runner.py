"""The run loop: failures become rows and the sweep goes on; reruns resume without duplicates."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archbench.bench import runner
from archbench.bench.store import load_rows


def cells(lens=(16, 32, 64), arch="attention"):
    return [{"kind": "scaling", "arch": arch, "arch_cfg": {}, "mode": "prefill", "seq_len": n, "batch": 1,
             "d_model": 32, "device": "cpu", "dtype": "float32", "seed": 0} for n in lens]


def test_rerun_skips_finished_cells(tmp_path: Path) -> None:
    first = runner.run_cells(cells(), tmp_path, budget_s=0.01)
    second = runner.run_cells(cells(), tmp_path, budget_s=0.01)
    rows = load_rows(tmp_path / "raw")
    assert len(first) == 3 and second == []
    assert sorted(rows.seq_len) == [16, 32, 64] and set(rows.status) == {"ok"}
    assert rows.provenance.iloc[0]["torch"]


@pytest.mark.parametrize(
    "exc, status",
    [(MemoryError("x"), "oom"), (RuntimeError("CUDA out of memory. Tried"), "oom"),
     (ValueError("bad shape"), "error: ValueError: bad shape")],
)
def test_failure_becomes_a_row_and_longer_lengths_are_skipped(tmp_path, monkeypatch, exc, status) -> None:
    def fake(spec, budget_s, progress):
        if spec["seq_len"] >= 32:
            raise exc
        return {"time_median_s": 1.0}

    monkeypatch.setitem(runner.EXECUTORS, "scaling", fake)
    rows = runner.run_cells(cells((16, 32, 64)), tmp_path)
    assert [r["status"] for r in rows] == ["ok", status, f"skipped: n=32 was {status}"]
    # A rerun neither retries the failure nor the skipped length.
    assert runner.run_cells(cells((16, 32, 64, 128)), tmp_path)[0]["status"].startswith("skipped")


def test_decode_for_a_mixer_without_step_is_skipped_not_an_error(tmp_path, monkeypatch) -> None:
    from archbench.archs import get

    monkeypatch.setattr(get("attention"), "supports_step", False)  # as a plugin without `step` declares
    decode = [{**cell, "mode": "decode"} for cell in cells(lens=(16, 32))]
    rows = runner.run_cells(decode + cells(lens=(16,)), tmp_path, budget_s=0.01)
    assert [r["status"] for r in rows] == ["skipped: attention has no recurrent step"] * 2 + ["ok"]


def test_time_limit_turns_into_a_timeout_row(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(runner.EXECUTORS, "scaling", lambda spec, budget_s, progress: time.sleep(5))
    start = time.perf_counter()
    rows = runner.run_cells(cells((16,)), tmp_path, time_limit_s=0.2)
    assert rows[0]["status"] == "timeout" and time.perf_counter() - start < 3


def test_sigint_then_rerun_gives_every_cell_exactly_once(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "archbench.bench.cli", "run", "scaling", "--archs", "attention,mamba",
            "--modes", "prefill,decode", "--lens", "32,64,128", "--d-model", "32", "--budget", "0.3",
            "--out", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    raw = tmp_path / "raw"
    deadline = time.time() + 240
    while time.time() < deadline and not (raw.exists() and any(
            len(p.read_text().splitlines()) >= 2 for p in raw.glob("*.jsonl"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read().decode()[-2000:]
    partial = sum(len(p.read_text().splitlines()) for p in raw.glob("*.jsonl"))
    assert 2 <= partial < 12
    done = subprocess.run(argv, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    keys = [json.loads(line)["cell"] for p in raw.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(keys) == 12 and len(set(keys)) == 12
