"""The experiment contract: what one kind of cell is, how one cell runs, what its rows hold.

An experiment kind is one file in bench/experiments/ with an `Experiment` subclass registered under
the kind's name (`@register("scaling")`), declaring
  Spec                  frozen dataclass: everything that identifies and reproduces one cell; its
                        canonical JSON is the cell's resume key (bench/runs/schema.py)
  Result                frozen dataclass: the figures one ok cell measured
  summary_columns       the columns `archbench run` prints at the end (fields of Spec, Result or Row)
  key_result            the one figure of a finished cell that its line in a log shows (a Result field)
  default_time_limit_s  the per-cell limit when the user gives none
  machine_bound         whether a cell's figures hold only for the machine that measured them (True:
                        timings, memory); False where they are a property of the Spec on any machine
                        of its device kind (a trained model's accuracy), so a row from another machine
                        of that kind counts as done (bench/runs/schema.py `place`)
  run(spec, budget_s, progress) -> Result     one cell, in this process (an executor decides where)
and optionally `skip_reason` (a cell that cannot run by design), `series` (cells that differ only in
a length, so longer ones are skipped after a failure; `series_name` names that length in the skip
rows, "n" unless the series runs over something else, generation's batches) and `label` (the progress
bar's text).

A Spec holds the objects it is made of, not copies of their fields: the model as an `archs.ModelSpec`
(`model`), a retrieval cell's task as a `tasks.TaskSpec` and its training as a `TrainConfig`. The row
schema (bench/runs/schema.py) turns them into JSON and back, and into flat columns for the report.

Glossary
  kind    the registered name of an experiment ("scaling", "retrieval"); every row carries it
  cell    one Spec: one point of a suite's grid
  series  the cells of one Spec but for its length n; their key leaves n out
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from archbench.archs import Backbone

Progress = Callable[[float, str], None]  # (fraction of the cell done in [0, 1], one-line status)


def resolved_configs(backbone: Backbone) -> dict[str, dict[str, Any]]:
    """letter -> the Config each layer of that letter ran with, defaults resolved: what actually ran."""
    return {c: dataclasses.asdict(b.mixer.cfg) for c, b in zip(backbone.spec.pattern, backbone.blocks,
                                                               strict=True)}


class Experiment:
    """Base class of every experiment kind; subclasses set the class attributes and `run`."""

    name: ClassVar[str] = "?"  # the kind, set by @register
    Spec: ClassVar[type]
    Result: ClassVar[type]
    summary_columns: ClassVar[tuple[str, ...]] = ("status",)
    key_result: ClassVar[str | None] = None
    default_time_limit_s: ClassVar[float] = 600.0
    series_name: ClassVar[str] = "n"  # what `series` counts, as a skip row names it: "skipped: n=64 was oom"
    machine_bound: ClassVar[bool] = True

    @classmethod
    def run(cls, spec: Any, budget_s: float, progress: Progress | None = None) -> Any:
        """Measure one cell; returns a `Result`. Raise to fail it (the run loop records why)."""
        raise NotImplementedError

    @classmethod
    def skip_reason(cls, spec: Any) -> str | None:
        """Why this cell cannot run at all, by design rather than failure, or None."""
        return None

    @classmethod
    def series(cls, spec: Any) -> tuple[Any, int] | None:
        """(the spec without its length, the length n), or None when the kind has no length series."""
        return None

    @classmethod
    def label(cls, spec: Any) -> str:
        """A few words for the progress bar."""
        return " ".join(str(v) for v in dataclasses.astuple(spec)[:1])
