"""The capacity reference on the recall–state plots (bench/report/capacity.py): a labelled vertical line at
the state one d × d float32 memory needs to retrieve the panel's K pairs top-1, 2 K ln K elements
(arXiv 2605.05189), on the frontier's state chart and the retrieval accuracy-vs-state plot, and on no
time chart."""

from __future__ import annotations

import math

import pytest
from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import frontier, retrieval, write_report
from archbench.bench.report import plot as plot_module
from archbench.bench.report.capacity import SOURCE, capacity_bytes, capacity_series
from archbench.bench.report.plot import Panel
from archbench.bench.runs.schema import Row
from archbench.tasks import TaskSpec

K = 4


def _recall(model: str, acc: float, state: int) -> dict:
    spec = RetrievalSpec(model_spec(model), TaskSpec("mqar", {"seq_len": 64, "num_kv_pairs": K,
                                                              "vocab_size": 1024}),
                         TrainConfig(lr=1e-3), test_lens=(128,), device="cpu", dtype="float32")
    result = RetrievalResult(
        backend="chunked", params=1000, steps=10, examples_seen=640, train_seconds=1.0, state_bytes=state,
        accuracy=acc, accuracy_by_len={"128": acc}, test_len=128, accuracy_by_slice={}, final_loss=0.5,
        stopped_early=False, curve={"examples": [320, 640], "loss": [0.5, 0.5], "accuracy": [acc, acc]})
    return Row("retrieval", spec, result, "ok", PROV, 1.0).to_json()


def _cost(model: str, mode: str, n: int, state: int) -> dict:
    spec = ScalingSpec(model_spec(model), mode=mode, seq_len=n, batch=1, device="cpu", dtype="float32")
    t = 1e-3
    result = ScalingResult(
        backend="chunked", time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=3,
        peak_mem_bytes=None, peak_mem_method=None, state_bytes=state, params=1000, energy_j=None,
        energy_j_per_token=None, energy_source=None, flops=1000, tokens_per_s=1 / t, flops_per_s=None,
        bytes_per_s=None, flops_frac_measured=None, bytes_frac_measured=None, flops_frac_spec=None,
        bytes_frac_spec=None)
    return Row("scaling", spec, result, "ok", PROV, 1.0).to_json()


def test_capacity_bytes_is_two_k_ln_k_elements() -> None:
    assert capacity_bytes(8) == pytest.approx(2 * 8 * math.log(8) * 4)
    assert capacity_bytes(8, 8) == pytest.approx(2 * capacity_bytes(8))
    assert capacity_bytes(1) is None  # one pair has no distractor to beat
    assert capacity_series("passkey", -1, "float32") == []  # a task without K pairs gets no line
    (label, xs, ys, _), = capacity_series("mqar V=1024", 16, "bfloat16")  # states run in float32
    assert xs == [capacity_bytes(16)] * 2 and ys == [0.0, 1.0] and SOURCE in label and "float32" in label


@pytest.fixture()
def drawn(tmp_path, monkeypatch) -> dict[str, list]:
    """The panels each plot of the report was drawn from, by x label."""
    recall = [_recall("mamba2", 0.9, 1000), _recall("gated_deltanet", 0.95, 3000)]
    cost = [_cost(m, mode, n, s) for m, s in (("mamba2", 1000), ("gated_deltanet", 3000))
            for mode in ("decode", "prefill") for n in (4096, 16384)]
    results = write_rows(tmp_path / "results", retrieval=recall, scaling=cost)
    panels: dict[str, list] = {}
    real_plot = plot_module.plot

    def record(ps, x, y, *args, **kw):  # the panels of every plot, by each panel's own x label
        ps = [p if isinstance(p, Panel) else Panel(*p) for p in ps]
        for p in ps:
            panels.setdefault((p.x or x).label, []).append(p)
        return real_plot(ps, x, y, *args, **kw)

    monkeypatch.setattr(frontier, "plot", record)
    monkeypatch.setattr(retrieval, "plot", record)
    monkeypatch.setattr(frontier, "MIN_LRS", 1)  # one lr per cell here; the sweep rule has its own test
    write_report(results)
    return panels


def _lines(panels: list) -> list:
    return [s for p in panels for s in p.series if SOURCE in s[0]]


@pytest.mark.parametrize("xlabel", ["state bytes at n=16k (batch 1)", "state bytes (batch 1, at n)"])
def test_the_line_is_drawn_at_the_computed_state_bytes(drawn, xlabel: str) -> None:
    # the frontier's state chart and its headline figure; the retrieval accuracy-vs-state plot
    for panel in drawn[xlabel]:
        lines = _lines([panel])
        assert len(lines) == 1, (xlabel, panel.title)  # one MQAR panel, one line
        label, xs, ys, style = lines[0]
        assert xs == pytest.approx([2 * K * math.log(K) * 4] * 2) and ys == [0.0, 1.0]
        assert f"K={K}" in label and style["linestyle"] == "--"


def test_no_time_chart_gets_the_line(drawn) -> None:
    times = [x for x in drawn if "time" in x]
    assert times and not any(_lines(drawn[x]) for x in times)
