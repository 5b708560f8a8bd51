"""The provenance page's tables: for each device, what measured its rows — commits, versions, threads —
and the machine's load when they were written, all read from the rows' own provenance."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import pandas as pd

from archbench.bench.report.format import NA, is_missing, markdown
from archbench.bench.runs.schema import Row


def _join(values: Iterable[Any]) -> str:
    vals = sorted({str(v) for v in values if not is_missing(v) and v != ""})
    return ", ".join(vals) if vals else NA


def _load(values: list[Any]) -> str:
    loads = [float(v) for v in values if isinstance(v, int | float) and not is_missing(v)]
    if not loads:
        return NA
    missing = len(values) - len(loads)
    text = f"{statistics.median(loads):.2f} ({min(loads):.2f}–{max(loads):.2f})"
    return text + (f"; {missing} rows from before it was recorded" if missing else "")


def _dates(values: list[Any]) -> str:
    days = sorted({str(v)[:10] for v in values if v})
    return NA if not days else days[0] if len(days) == 1 else f"{days[0]} – {days[-1]}"


def provenance_markdown(rows: list[Row]) -> str:
    """Two tables (versions; threads and load), one row per device; empty text when there are no rows."""
    if not rows:
        return ""
    versions, machine = [], []
    for dev in sorted({r.device_name for r in rows}):
        mine = [r for r in rows if r.device_name == dev]
        prov = [r.provenance for r in mine]
        commits = {f"{str(p['git_commit'])[:12]}{'+dirty' if p.get('git_dirty') else ''}"
                   for p in prov if p.get("git_commit")}
        kinds = ", ".join(f"{k} {sum(r.kind == k for r in mine)}" for k in sorted({r.kind for r in mine}))
        versions.append({"device": dev, "rows": kinds, "measured": _dates([p.get("timestamp") for p in prov]),
                         "git commits": _join(commits) if commits else "none recorded",
                         "archbench": _join(p.get("archbench_version", p.get("archbench")) for p in prov),
                         **{k: _join(p.get(k) for p in prov) for k in ("torch", "cuda", "python", "numpy")}})
        machine.append({"device": dev, "kind": _join(p.get("device") for p in prov),
                        "dtypes": _join(p.get("dtype") for p in prov),
                        "cores": _join(p.get("cpu_count") for p in prov),
                        "torch threads": _join(p.get("torch_threads") for p in prov),
                        "load, 1 min (median, range)": _load([p.get("load_1m") for p in prov]),
                        "platform": _join(p.get("platform") for p in prov)})
    return (f"## Devices, commits and versions\n\n{markdown(pd.DataFrame(versions))}\n\n"
            f"## Machine and load\n\n{markdown(pd.DataFrame(machine))}\n\n"
            "The load is the 1-minute load average when a row was written: a timing taken beside other "
            "work is slower than the same cell on an idle machine.")
