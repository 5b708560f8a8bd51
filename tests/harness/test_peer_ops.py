"""The peer comparison (bench/measure/peer_ops.py, bench/test_peer_speed.py): every peer gets the op's
inputs in its own conventions and computes the op's output, fla's naive ops load without fla's package
(so without Triton), a peer computing something else is refused, and the report writes the ratio table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archbench.bench.measure import peer_ops
from archbench.bench.measure.op_timing import OPS
from archbench.bench.measure.peer_ops import (
    PEERS,
    PeerBackwardFails,
    PeerMissing,
    PeerWorker,
    check_agreement,
)
from archbench.bench.report import write_report

HAVE_PEERS = all(importlib.util.find_spec(m) is not None for m in ("fla", "transformers", "einops"))
needs_peers = pytest.mark.skipif(not HAVE_PEERS, reason="the peers are not installed: pip install "
                                 "'archbench[peers]'")


@needs_peers
@pytest.mark.parametrize("pair", list(PEERS))
def test_each_peer_computes_the_ops_output_from_the_ops_inputs(pair: str) -> None:
    peer = PEERS[pair]
    xs = OPS[peer.op].inputs(128, torch.Generator().manual_seed(0))  # two chunks of 64, four of 32
    with torch.no_grad():
        check_agreement(pair, OPS[peer.op].call(*xs), peer.call(peer.load(), *peer.adapt(xs)))


@needs_peers
def test_fla_naive_ops_load_without_the_fla_package() -> None:
    code = ("import sys; from archbench.bench.measure.peer_ops import fla_naive; "
            "f = fla_naive('simple_gla/naive', 'naive_chunk_simple_gla'); "
            "print(callable(f), 'fla' in sys.modules, 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_a_missing_fla_is_reported_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_ops.importlib.util, "find_spec", lambda name: None)
    peer_ops.fla_naive.cache_clear()
    try:
        with pytest.raises(PeerMissing, match=r"archbench\[peers\]"):
            peer_ops.fla_naive("simple_gla/naive", "naive_chunk_simple_gla")
    finally:
        peer_ops.fla_naive.cache_clear()


@pytest.mark.parametrize(("peer", "match"), [(torch.ones(2, 3) * 1.001, "differ by 1.00e-03"),
                                             (torch.ones(3, 2), "output is"),
                                             (torch.full((2, 3), float("nan")), "differ by nan")])
def test_a_peer_that_computes_something_else_is_refused(peer: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_agreement("x · y", torch.ones(2, 3), peer)
    check_agreement("x · y", torch.ones(2, 3), torch.ones(2, 3) * (1 + 1e-6))


def test_an_unknown_pair_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from linear_attention · fla"):
        PeerWorker("retnet · nobody")


@needs_peers
def test_a_worker_times_both_sides_in_its_own_process() -> None:
    worker = PeerWorker("retnet · fla naive_chunk_simple_gla")
    try:
        rounds = [worker.round(mode, 128) for mode in ("prefill", "train", "prefill")]
    finally:
        worker.close()
    assert all(0 < s < 60 for r in rounds for s in r)
    assert not worker._proc.is_alive()


def test_the_report_writes_the_peer_table(tmp_path: Path) -> None:
    def bench(mode: str, n: int, ratio: float) -> dict:
        return {"group": f"peer {mode} n={n}", "name": f"test_peer[retnet-{mode}-{n}]",
                "stats": {"median": 0.03, "min": 0.03, "max": 0.04, "rounds": 7},
                "extra_info": {"op": "retnet", "peer": "fla naive_chunk_simple_gla", "package": "fla-core",
                               "package_version": "0.6.0", "source": "fla/ops/simple_gla/naive.py",
                               "mode": mode, "seq_len": n, "ours_median_s": 0.01 * ratio,
                               "peer_median_s": 0.01, "ratio": ratio, "round_ratio_q1": ratio - 0.05,
                               "round_ratio_q3": ratio + 0.05, "load_1m": 2.2}}

    data = {"machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "commit_info": {"id": "abc"},
            "benchmarks": [bench("prefill", 1024, 0.8), bench("train", 1024, 0.5)]}
    folder = tmp_path / "raw" / "pytest-benchmark"
    folder.mkdir(parents=True)
    (folder / "peer_speed.json").write_text(json.dumps(data))
    write_report(tmp_path)
    table = (tmp_path / "peer_speed.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| retnet"))
    assert "fla-core 0.6.0" in row and "0.80 [0.75–0.85] (8.00 ms / 10.0 ms)" in row and "0.50 [0.45" in row
    assert "prefill n=1024" in table and "train n=1024" in table and "2.2–2.2" in row


@needs_peers
def test_a_peer_whose_backward_fails_is_told_apart_from_an_error() -> None:
    # fla's naive chunked RWKV-6 writes its state in place, which its own autograd refuses
    worker = PeerWorker("rwkv6 (wkv) · fla naive_chunk_rwkv6")
    try:
        assert all(s > 0 for s in worker.round("prefill", 64))
        with pytest.raises(PeerBackwardFails, match="inplace"):
            worker.round("train", 64)
    finally:
        worker.close()
