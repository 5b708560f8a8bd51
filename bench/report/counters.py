"""Measures that need a hardware counter (energy: RAPL on a CPU, NVML on a GPU) where the device has
none: one line in the report's index, said once per device, instead of a table whose every cell is
"n/a" (a table of nothing reads as if something had been measured and lost).

    note_no_counter(out, "cpu", "AMD EPYC (2 CPUs)")
    # out.notes: ["energy: no counter on this CPU (AMD EPYC (2 CPUs): RAPL not readable); no energy table"]
"""

from __future__ import annotations

import pandas as pd

from archbench.bench.report.outputs import Outputs


def has_figure(df: pd.DataFrame, column: str) -> bool:
    """Whether any ok cell of `df` holds a figure in `column`."""
    return bool(len(df)) and bool(df.loc[df["status"] == "ok", column].notna().any())


def note_no_counter(out: Outputs, device: str, device_name: str, what: str = "energy") -> None:
    kind, counter = ("GPU", "NVML") if str(device).startswith("cuda") else ("CPU", "RAPL")
    line = f"{what}: no counter on this {kind} ({device_name}: {counter} not readable); no {what} table"
    if line not in out.notes:
        out.notes.append(line)
