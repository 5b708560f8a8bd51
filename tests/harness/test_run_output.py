"""What a run prints: the estimate of the time left (bench/runs/eta.py) and the end-of-run tables and
per-cell lines (bench/runs/summary.py) — units on every figure, 80 columns, no name cut short."""

from __future__ import annotations

import dataclasses
import io
import typing

import pytest
from rich.console import Console

from archbench.bench import grids
from archbench.bench.experiments import get, list_experiments
from archbench.bench.runs.eta import Eta, duration
from archbench.bench.runs.schema import Row
from archbench.bench.runs.summary import cell_line, fmt_value, summary_tables


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(eta: Eta, clock: Clock, part: str, wall: float) -> None:
    eta.start(part)
    clock.now += wall
    eta.finish(part, wall)


def test_each_part_is_priced_by_its_own_finished_cells() -> None:
    clock = Clock()
    eta = Eta(["cost"] * 3 + ["train"] * 2, clock)
    assert eta.remaining_s() is None and eta.text() == "ETA after the first cell"
    _run(eta, clock, "cost", 2.0)
    assert eta.remaining_s() == pytest.approx(2 * 2 + 2 * 2)  # no train cell yet: the overall mean
    _run(eta, clock, "train", 100.0)
    assert eta.remaining_s() == pytest.approx(2 * 2 + 1 * 100)
    eta.drop("train")  # skipped after a failure: costs nothing
    assert eta.remaining_s() == pytest.approx(2 * 2) and eta.text() == "~4 s left"
    _run(eta, clock, "cost", 2.0), _run(eta, clock, "cost", 2.0)
    assert eta.remaining_s() == 0 and eta.text() == ""


def test_a_part_with_no_cell_finished_yet_is_priced_by_its_stored_cells() -> None:
    """A resumed grid: the cost cells earlier runs stored took seconds, so the 100 left are priced at
    that, not at the minutes of the training cell this run finished first."""
    clock = Clock()
    eta = Eta(["train"] * 2 + ["cost"] * 100, clock, stored={"cost": [2.0, 4.0], "train": [50.0]})
    _run(eta, clock, "train", 100.0)
    assert eta.remaining_s() == pytest.approx(1 * 100 + 100 * 3)


def test_a_cell_in_flight_counts_down_and_cells_at_once_divide_the_rest() -> None:
    clock = Clock()
    eta = Eta(["p"] * 4, clock)
    _run(eta, clock, "p", 10.0)
    eta.start("p")
    clock.now += 4
    assert eta.remaining_s() == pytest.approx(3 * 10 - 4)
    # Two workers: two 10 s cells finished within 10 s of the first start, so two run at once.
    clock, eta = Clock(), Eta(["p"] * 6, Clock())
    eta.clock = clock
    eta.start("p"), eta.start("p")
    clock.now = 10
    eta.finish("p", 10.0), eta.finish("p", 10.0)
    assert eta.remaining_s() == pytest.approx(4 * 10 / 2)


@pytest.mark.parametrize("seconds, text", [(40, "40 s"), (700, "12 min"), (3900, "1 h 05 min")])
def test_durations_read_as_estimates(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize("column, value, text", [
    ("time_median_s", 3.393e-05, "33.9 µs"), ("peak_mem_bytes", 8653824, "8.25 MiB"),
    ("train_seconds", 75.0, "75.0 s"), ("tokens_per_s", 12345.6, "12,346/s"), ("accuracy", 0.953, "0.953"),
    ("fits_budget", True, "yes"), ("state_bytes", None, "-"),
])
def test_figures_carry_their_units(column: str, value, text: str) -> None:
    assert fmt_value(column, value) == text


def _fake_result(cls: type) -> typing.Any:
    """A Result whose numbers look like real ones (seconds 3.4e-5, bytes 8.25 MiB, rates 1,234/s,
    accuracy 0.953) and whose text fields are as long as a hybrid's backend."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        arms = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        seconds = 1234.5 if f.name.endswith("_per_s") else 0.953 if "accuracy" in f.name else 3.393e-05
        values[f.name] = {int: 8653824, float: seconds, bool: True,
                          str: "gated_deltanet:chunked+attention:sdpa+compiled"}.get(arms[0])
    return cls(**values)


def _rows_of_every_kind() -> list[Row]:
    grid_of = {"scaling": "quick", "retrieval": "retrieval", "generation": "generation"}
    assert set(grid_of) == set(list_experiments()), "a new experiment kind: give it a grid here"
    rows = []
    for kind, grid in sorted(grid_of.items()):
        plan = grids.plan(grid, grids.Params(device="cpu"))
        cells = [c for c in plan.cells if c.kind == kind][:8]
        for c in cells:
            rows.append(Row(kind, c.spec, _fake_result(get(kind).Result), "ok", {"device_name": "cpu"}, 1.5))
        rows.append(Row(kind, cells[0].spec, None, "error: RuntimeError: boom", {"device_name": "cpu"}, 1.5))
    return rows


@pytest.mark.parametrize("kind", sorted(list_experiments()))
def test_the_end_of_run_table_fits_80_columns_with_units_and_whole_names(kind: str) -> None:
    rows = [r for r in _rows_of_every_kind() if r.kind == kind]
    console = Console(width=80, record=True, file=io.StringIO())
    for table in summary_tables(rows):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "e-05" not in text and "8653824" not in text
    assert "33.9 µs" in text or "8.25 MiB" in text
    for row in rows:  # every model name whole (a registered name is one word: it never folds)
        assert str(row.spec.model.name) in text


def test_a_cell_line_names_the_cell_its_status_time_and_key_figure() -> None:
    ok, *_, failed = [r for r in _rows_of_every_kind() if r.kind == "scaling"]
    assert cell_line(ok, 3, 40, "mamba2 ×4 prefill n=256", "~4 min left") == \
        "[3/40] mamba2 ×4 prefill n=256: ok in 1.50 s, median 33.9 µs; ~4 min left"
    assert cell_line(failed, 4, 40, "x", "") == "[4/40] x: error: RuntimeError: boom"
