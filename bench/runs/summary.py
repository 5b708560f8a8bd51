"""The tables `archbench run` prints at the end: one per experiment kind, of the rows it wrote, with
the columns each experiment declares (`summary_columns`, checked against its Spec and Result)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from archbench.archs.names import override_label
from archbench.bench.runs.schema import Row, experiment, require_columns


def summary_tables(rows: list[Row]) -> list[Table]:
    tables = []
    for kind in sorted({r.kind for r in rows}):
        cols = require_columns(kind, experiment(kind).summary_columns, f"the {kind} summary")
        mine = [r.flat() for r in rows if r.kind == kind]
        table = Table(*cols, title=f"{len(mine)} {kind} cells measured this run")
        for r in mine:
            if "model" in r and r.get("configs"):  # the model as it was asked for: 'mamba2 d_state=32'
                r = {**r, "model": override_label(r["model"], r["mixers"], r["configs"])}
            table.add_row(*(_fmt(r[c]) for c in cols))
        tables.append(table)
    return tables


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
