"""What `archbench run` prints about its cells: one plain line per finished cell for a log, and the
tables at the end — one per experiment kind, of the rows it wrote, with the columns each experiment
declares (`summary_columns`, checked against its Spec and Result).

Figures carry their units (ms, µs, MiB: the report's formatters) and the tables fit 80 columns: short
headers, a column that holds one value in every row said once in the title instead, and text that
wraps (a long model name folds onto a second line) rather than being cut to "atte…".
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archbench.archs.names import override_label
from archbench.bench.report.format import fmt_bytes, fmt_seconds
from archbench.bench.runs.schema import Row, experiment, require_columns, short_status

# Column -> header: short, so that a table fits 80 columns; the unit is in every cell instead.
HEADERS = {"seq_len": "n", "num_kv_pairs": "K", "d_model": "d", "time_median_s": "median",
           "peak_mem_bytes": "peak mem", "state_bytes": "state", "train_seconds": "train time",
           "prompt_len": "P", "gen_len": "G", "ttft_s": "TTFT", "token_latency_s": "per token",
           "tokens_per_s": "tokens/s", "memory_needed_bytes": "memory", "fits_budget": "fits"}
TEXT_COLUMNS = ("model", "backend", "task", "mode", "status")  # wrap; figures do not


def fmt_value(column: str, value: Any) -> str:
    """One figure as text with its unit, by the column's name: *_bytes in KiB/MiB, *_s and *_seconds in
    s/ms/µs, *_per_s as a rate; None (no figure) as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if column.endswith("_bytes"):
            return fmt_bytes(value)
        if column.endswith(("_s", "_seconds")) and not column.endswith("_per_s"):
            return fmt_seconds(value)
        if column.endswith("_per_s"):
            return f"{value:,.0f}/s" if value >= 100 else f"{value:.3g}/s"
        if isinstance(value, float):
            return f"{value:.3g}"
    return str(value)


def header(column: str) -> str:
    return HEADERS.get(column, column.replace("_", " "))


def _record(row: Row) -> dict[str, Any]:
    r = row.flat()
    if "model" in r and r.get("configs"):  # the model as it was asked for: 'mamba2 d_state=32'
        r = {**r, "model": override_label(r["model"], r["mixers"], r["configs"])}
    r = {**r, "status": short_status(r["status"])}
    # Room to wrap between the parts of a hybrid's backend and a pattern's letters, where rich would
    # otherwise cut a long word anywhere ("chunked+attenti / on:sdpa").
    if isinstance(r.get("backend"), str):
        r["backend"] = r["backend"].replace("+", " + ")
    if isinstance(r.get("model"), str):
        r["model"] = r["model"].replace(",", ", ")
    return r


def cell_line(row: Row, done: int, total: int, label: str, eta: str = "") -> str:
    """'[3/40] mamba2 ×4 prefill n=256 d=64: ok in 2.1 s, median 1.23 ms; ~4 min left'. A failed
    cell's line gives its whole status (why it failed), cut at 200 characters."""
    head = f"[{done}/{total}] {label}: "
    if row.status != "ok":
        body = row.status if len(row.status) <= 200 else row.status[:199] + "…"
        return head + body + (f"; {eta}" if eta else "")
    if row.wall_s is None:
        text = f"{head}ok"
    else:  # wall times are stored to the millisecond
        text = f"{head}ok in {fmt_seconds(row.wall_s) if row.wall_s >= 1e-3 else '< 1 ms'}"
    key = experiment(row.kind).key_result
    if key is not None and row.result is not None:
        text += f", {header(key)} {fmt_value(key, getattr(row.result, key, None))}"
    return text + (f"; {eta}" if eta else "")


def summary_tables(rows: list[Row]) -> list[Group]:
    """One title line and one table per kind. The title is a line of its own, not the table's: rich
    wraps a table's title to the table's width, a narrow column of words over a narrow table."""
    tables = []
    for kind in sorted({r.kind for r in rows}):
        cols = list(require_columns(kind, experiment(kind).summary_columns, f"the {kind} summary"))
        mine = [_record(r) for r in rows if r.kind == kind]
        same = {c: mine[0][c] for c in cols if len(mine) > 1 and len({repr(r[c]) for r in mine}) == 1}
        said = [f"{header(c)} {fmt_value(c, v)}" for c, v in same.items() if c != "status"]
        title = f"{len(mine)} {kind} cells measured this run" + (f" · {', '.join(said)}" if said else "") + \
            (" · all ok" if same.get("status") == "ok" else "")
        shown = [c for c in cols if c not in same] or cols[:1]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for c in shown:
            if c in TEXT_COLUMNS:
                table.add_column(header(c), overflow="fold")
            else:
                table.add_column(header(c), justify="right", no_wrap=True)
        for r in mine:
            table.add_row(*(fmt_value(c, r[c]) for c in shown))
        tables.append(Group(Text(title, style="bold"), table))
    return tables
