"""End to end: tiny real cells of every experiment kind (and every retrieval task) through
`archbench run`, then `archbench report`, then every table the report writes holds a value wherever
its rows have one — the check the utilisation table (n/a in every cell, because the cell wrote
`flops_frac_measured` and the report read `util_flops_measured`) would have failed."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.runs import TINY_TRAIN, small_device_peaks

from archbench.bench import grids
from archbench.bench.cli import main
from archbench.bench.experiments import list_experiments
from archbench.bench.experiments.scaling import ScalingResult
from archbench.bench.grids import retrieval as _retrieval_grid  # noqa: F401 - loads grids.retrieval
from archbench.bench.measure import cpu_peak_method
from archbench.bench.runs.schema import Row, read_rows
from archbench.tasks import list_tasks

# The utilisation table's figures, by the Result's own names (not the report's); the bytes/s against a
# streaming copy is not shown (the report measures a decode step against its bound's yardstick instead).
UTIL = [f.name for f in dataclasses.fields(ScalingResult)
        if "_frac_" in f.name and f.name != "bytes_frac_measured"]
SCALING = ["run", "scaling", "--models", "attention,mamba-attn", "--depth", "2", "--lens", "16,32",
           "--modes", "prefill,train,decode", "--d-model", "16", "--budget", "0",
           "--decode-backend", "eager"]  # compiling is tests/harness/test_decode.py's (seconds per cell)
GENERATION = ["run", "generation", "--models", "attention,mamba-attn", "--depth", "2", "--d-model", "16",
              "--prompt-len", "16", "--gen-len", "3", "--vocab-size", "32", "--max-batch", "2",
              "--memory-budget", "64M", "--decode-backend", "eager"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    out = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grids.retrieval, "CPU_TRAIN", TINY_TRAIN)
        small_device_peaks(mp)
        assert main([*SCALING, "--out", str(out)]) == 0
        assert main([*GENERATION, "--out", str(out)]) == 0
        for task in list_tasks():  # every task with its own grid: the first length, the smallest width
            length = grids.retrieval.task_grid(task, "cpu").lengths()[0]
            assert main(["run", "retrieval", "--task", task, "--models", "attention,mamba-attn",
                         "--d-model", "16", "--lens", str(length), "--lrs", "3e-3", "--out", str(out)]) == 0
    assert main(["report", "--results", str(out)]) == 0
    return out, read_rows(out / "raw")


def _numbers(values: pd.Series) -> int:
    """How many cells of a CSV column hold a number (failed cells hold a status, missing ones nothing)."""
    return sum(1 for v in values if isinstance(v, int | float) and not math.isnan(v))


def _one(folder: Path, pattern: str) -> pd.DataFrame:
    (path,) = folder.glob(pattern)
    return pd.read_csv(path)


def test_every_kind_and_every_task_ran_ok(results) -> None:
    _, rows = results
    assert {r.kind for r in rows} == set(list_experiments())  # a new kind must join this test
    assert {r.spec.task.name for r in rows if r.kind == "retrieval"} == set(list_tasks())
    assert [r.status for r in rows if r.status != "ok"] == []


def test_scaling_rows_hold_the_figures_the_cpu_can_measure(results) -> None:
    _, rows = results
    for r in (r for r in rows if r.kind == "scaling"):
        assert r.result.time_median_s > 0 and r.result.state_bytes > 0
        assert r.result.flops_frac_measured is not None  # the CPU's matmul peak is measured here
        assert (r.result.bytes_frac_measured is not None) == (r.spec.mode == "decode")
        assert (r.result.peak_mem_bytes is not None) == (cpu_peak_method() is not None)


def test_every_scaling_table_has_a_value_wherever_its_rows_have_one(results) -> None:
    out, rows = results
    flat = pd.DataFrame([r.flat() for r in rows if r.kind == "scaling"])
    prefix = "scaling_*_float32_b1_L2_d16_mlp0"
    assert "depth 2 · d_model 16 · mlp_ratio 0" in next(out.glob(f"{prefix}_time_prefill.md")).read_text()
    index = ["mode", "model", "backend"]
    for mode in ("prefill", "train", "decode"):
        table = _one(out, f"{prefix}_time_{mode}.csv").drop(columns=["model", "backend"])
        assert _numbers(table.stack()) == flat[flat["mode"] == mode]["time_median_s"].notna().sum()
    table = _one(out, f"{prefix}_memory.csv").drop(columns=index)
    assert _numbers(table.stack()) == flat["peak_mem_bytes"].notna().sum()
    if flat["energy_j_per_token"].notna().any():
        table = _one(out, f"{prefix}_energy.csv").drop(columns=index)
        assert _numbers(table.stack()) == flat["energy_j_per_token"].notna().sum()
    else:  # no energy counter: the index says so in one line and writes no table
        assert not list(out.glob(f"{prefix}_energy.*"))
        assert "energy: no counter on this" in (out / "README.md").read_text()
    state = _one(out, f"{prefix}_state.csv").drop(columns=["model"])
    assert _numbers(state.stack()) == len(flat[flat["state_bytes"].notna()].groupby(["model", "seq_len"]))
    util = _one(out, f"{prefix}_util.csv")
    for col in UTIL:
        assert _numbers(util[col]) == flat[col].notna().sum(), col
    assert _numbers(util["bytes_frac_bound"]) == flat["bound_s"].notna().sum()  # every decode step
    util_md = next(out.glob(f"{prefix}_util.md")).read_text()
    assert "achieved FLOP/s ÷ measured matmul peak\n\n|" in util_md  # a table of values, not "n/a" everywhere


def test_every_retrieval_table_has_a_value_wherever_its_rows_have_one(results) -> None:
    out, rows = results
    ok = [r for r in rows if r.kind == "retrieval" and r.result.accuracy is not None]
    table = _one(out, "retrieval_*_accuracy.csv")
    assert _numbers(table["accuracy"]) == len(ok)  # one lr per cell here: every row is its cell's best
    accuracy_md = next(out.glob("retrieval_*_accuracy.md")).read_text()
    for task in list_tasks():
        assert f"## {task}" in accuracy_md


def test_every_generation_table_has_a_value_wherever_its_rows_have_one(results) -> None:
    out, rows = results
    ok = [r for r in rows if r.kind == "generation"]
    assert {(r.spec.model.name, r.spec.batch) for r in ok} == {(m, b) for m in ("attention", "mamba-attn")
                                                         for b in (1, 2)}
    by_batch = _one(out, "generation_*_by_batch.csv")
    assert _numbers(by_batch["tokens_per_s"]) == len(ok)
    largest = _one(out, "generation_*_largest_batch.csv")
    assert sorted(largest["largest_batch"]) == [2, 2] and _numbers(largest["tokens_per_s"]) == 2
