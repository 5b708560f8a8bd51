"""The report's formatting API: numbers as human text, tables as Markdown and CSV, one table cell.

Markdown cells are human text ("17.4 µs", "n/a", "oom"); CSV cells keep raw SI values, empty when
missing, and a failed cell's short status in place of a value.

    fmt_seconds(1.74e-5) == "17.4 µs"     fmt_bytes(3 << 20) == "3.00 MiB"
    fmt_joules(2e-6) == "2.00 µJ"          fmt_pct(0.25) == "25.0%", fmt_pct(3.1e-4) == "0.031%"
    cell_text("ok", 1e-3, fmt_seconds) == "1.00 ms"; cell_text("error: boom", None, fmt_seconds) == "error"

Glossary
  NA       "n/a": the cell ran but has no figure (e.g. no energy counter readable)
  MISSING  "-": the cell was never run
  status   "ok", or why a cell failed ("oom", "timeout", "error: ...", "skipped: ...")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from archbench.bench.runs.schema import short_status
from archbench.bench.runs.store import slug

NA = "n/a"
MISSING = "-"  # a cell that was never run (as opposed to run and failed, or run without a figure)
MODE_ORDER = ("prefill", "train", "decode")

__all__ = ["MISSING", "MODE_ORDER", "NA", "cell_raw", "cell_text", "csv_bytes", "fmt_bytes", "fmt_joules",
           "fmt_pct", "fmt_seconds", "is_missing", "markdown", "mode_rank", "short_status", "slug",
           "sort_rows"]


def _human(v: float, steps: Sequence[tuple[float, str]]) -> str:
    scale, unit = next(((s, u) for s, u in steps if abs(v) >= s), steps[-1])
    x = v / scale
    if unit == "B":
        return f"{int(v)} B"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2  # three significant figures
    return f"{x:.{digits}f} {unit}"


def fmt_seconds(v: float) -> str:
    return _human(v, ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")))


def fmt_bytes(v: float) -> str:
    return _human(v, ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")))


def fmt_joules(v: float) -> str:
    return _human(v, ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")))


def fmt_pct(v: float) -> str:
    pct = 100 * v  # below 1%, two significant figures: 0.03% must not print as "0.0%"
    return f"{pct:.1f}%" if abs(pct) >= 1 or pct == 0 else f"{pct:.2g}%"


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def mode_rank(mode: Any) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def sort_rows(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Sorted by `cols`, modes in prefill, train, decode order."""
    def key(s: pd.Series) -> pd.Series:
        return s.map(lambda m: mode_rank(m)[0]) if s.name == "mode" else s

    return df.sort_values(cols, key=key, kind="stable").reset_index(drop=True)


def markdown(df: pd.DataFrame) -> str:
    # disable_numparse: cells are already formatted text; tabulate must not re-round "0.950".
    return df.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def _csv_value(v: Any) -> Any:
    # Six significant figures is more than any timing here resolves, and drops repr noise (0.1 + 0.2).
    if isinstance(v, float):
        return None if math.isnan(v) else int(v) if v.is_integer() else float(f"{v:.6g}")
    return v


def csv_bytes(df: pd.DataFrame) -> bytes:
    # Built column by column as object dtype: pandas would turn an int column with a gap back into floats.
    clean = pd.DataFrame({c: pd.Series([_csv_value(v) for v in df[c]], dtype=object) for c in df.columns},
                         columns=df.columns)
    return clean.to_csv(index=False, lineterminator="\n").encode("utf-8")


def cell_text(status: str, value: Any, fmt: Callable[[Any], str]) -> str:
    """A Markdown cell: the formatted value of an ok row, "n/a" if it has none, else the short status."""
    if status != "ok":
        return short_status(status)
    return NA if is_missing(value) else fmt(value)


def cell_raw(status: str, value: Any) -> Any:
    """A CSV cell: the raw value of an ok row (None if it has none), else the short status."""
    if status != "ok":
        return short_status(status)
    return None if is_missing(value) else value


def cells(g: pd.DataFrame, value: str, conv: Callable[[str, Any], Any]) -> list[Any]:
    return [conv(s, v) for s, v in zip(g["status"], g[value], strict=True)]
