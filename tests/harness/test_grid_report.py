"""The report's grid table: what each part of a grid has stored, the time it took (the rows' own wall_s),
the load then, and an estimate for the rest that is said to be one — none where a part has nothing
stored. The grid is the plan stored beside the rows; the report never rebuilds it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from helpers.rows import write_rows

from archbench.bench.experiments.retrieval import RetrievalResult
from archbench.bench.grids import Params, plan
from archbench.bench.report import write_report
from archbench.bench.report.grid import grid_table
from archbench.bench.runs.plans import write_plan
from archbench.bench.runs.schema import Row, cell_key


def test_parts_count_stored_cells_sum_their_time_and_estimate_only_from_their_own_median() -> None:
    parts = [("a", "k1"), ("a", "k2"), ("a", "k3"), ("b", "k4")]
    stored = pd.DataFrame({"cell": ["k1", "k2", "other"], "status": ["ok", "timeout", "ok"],
                           "wall_s": [100.0, 300.0, 5000.0], "load_1m": [1.0, None, 9.0]})
    table, raw, summary = grid_table(stored, parts, cores=2)
    a, b = raw.set_index("part").loc["a"], raw.set_index("part").loc["b"]
    assert (a["cells"], a["stored"], a["ok"], a["left"]) == (3, 2, 1, 1)
    assert a["measured_s"] == 400.0  # a cell outside the grid ("other") is not counted
    assert a["left_estimate_s"] == 200.0  # the median stored cell of the same part
    assert (b["stored"], b["left"]) == (0, 1) and pd.isna(b["left_estimate_s"])
    md = table.set_index("part")
    assert md.loc["b", "measured"] == "n/a" and md.loc["b", "left (estimate)"] == "1 (n/a)"
    assert md.loc["a", "load (median, range)"] == "1.0 (1.0–1.0)"
    assert summary.startswith("2 of 4 cells stored") and "no estimate for b (none stored)" in summary
    assert "(0.06 h of wall time at one process per core on 2 cores)" in summary  # 400 s / 2


def test_serial_parts_count_their_whole_time_towards_the_wall_time() -> None:
    parts = [("train", "k1"), ("train", "k2"), ("cost", "k3"), ("cost", "k4")]
    stored = pd.DataFrame({"cell": ["k1", "k2", "k3"], "status": ["ok"] * 3,
                           "wall_s": [3600.0, 3600.0, 1800.0], "load_1m": [2.0, 2.0, 0.1]})
    _, _, summary = grid_table(stored, parts, cores=2)
    # training 2 h over 2 cores, cost 0.5 h one cell at a time; the cost cell left, 0.5 h, in turn too
    assert "2.50 h of cell time measured (1.50 h of wall time at one process per core on 2 cores, " \
           "the cost cells one at a time)" in summary
    assert "about 0.50 h of cell time (0.50 h wall)" in summary


def test_the_grid_table_comes_from_the_rows_and_the_plan_stored_beside_them(tmp_path: Path) -> None:
    frontier = plan("frontier", Params(device="cpu"))
    parts = list(zip(frontier.parts, frontier.cells, strict=True))
    part, cell = next((p, c) for p, c in parts if p == "headline")
    result = RetrievalResult(
        backend="chunked", params=1000, steps=10, examples_seen=640, train_seconds=1.0, state_bytes=1000,
        accuracy=0.5, accuracy_by_len={"64": 0.5, "128": 0.25}, test_len=128, accuracy_by_slice={},
        final_loss=0.5, stopped_early=False)
    prov = {"device_name": "Test CPU (2 CPUs)", "cpu_count": 2, "load_1m": 1.5}
    row = Row("retrieval", cell.spec, result, "ok", prov, 60.0, "frontier", part)
    raw = write_rows(tmp_path / "results", retrieval=[row.to_json()]) / "raw"
    write_report(tmp_path / "results")
    assert not (tmp_path / "results" / "frontier_test-cpu-2-cpus_grid.md").exists()  # no plan, no table
    write_plan(raw, "frontier", "cpu", [(p, cell_key(c.spec)) for p, c in parts])
    write_report(tmp_path / "results")
    text = (tmp_path / "results" / "frontier_test-cpu-2-cpus_grid.md").read_text()
    headline = next(line for line in text.splitlines() if line.startswith("| headline "))
    cells = [c.strip() for c in headline.strip("|").split("|")]
    n_headline = sum(p == "headline" for p, _ in parts)
    assert cells[1:5] == [str(n_headline), "1", "1", "0.02 h"] and cells[6] == "1.5 (1.5–1.5)"
    assert f"1 of {len(parts)} cells stored" in text


def test_the_report_imports_nothing_of_the_grids_or_the_run_loop() -> None:
    """The report is a function of the stored rows and plans: it never builds a grid or runs a cell."""
    import subprocess
    import sys

    code = ("import sys, archbench.bench.report as r; r.write_report; "
            "print(sorted(m for m in sys.modules if m.startswith(('archbench.bench.grids', "
            "'archbench.bench.runs.loop', 'archbench.bench.runs.cell', 'archbench.bench.runs.executors'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
