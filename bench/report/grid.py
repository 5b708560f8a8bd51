"""How much of the frontier grid is stored and what it took, for `archbench report`.

A grid such as the frontier grid is sized to a wall-time budget (bench/grids/frontier.py), so its size is
a measured figure like any other: for each part of the grid the cells it has, how many are
stored, the seconds the stored ones took (each row's own `wall_s`) and the machine's load when they
were written (`load_1m`, rows from before it was recorded show n/a). Cells still to run are estimated
from the median of the same part's stored cells, and said to be an estimate; a part with no stored cell
gets no estimate.

The grid is the plan stored beside the rows (bench/runs/plans.py: written when a grid is run as it is
defined, or by `archbench run GRID --dry-run`); the report never rebuilds a grid. Cells an older plan
ran under other settings are not counted (they stay in their own tables).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from archbench.bench.report.format import NA, markdown, slug
from archbench.bench.report.outputs import Outputs
from archbench.bench.runs.plans import read_plans
from archbench.bench.runs.schema import OK, device_kind


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def grid_table(stored: pd.DataFrame, parts: list[tuple[str, str]], cores: int,
               serial: tuple[str, ...] = ("cost",)) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(table, its raw CSV, a summary) for one device. `stored`: one row per stored cell (columns cell,
    status, wall_s, load_1m); `parts`: (part, cell key) of the grid in run order. The summary's wall
    time runs the `serial` parts one cell at a time (the cost cells time the model: nothing else may
    run beside them) and every other part at one process per core."""
    joined = pd.DataFrame(parts, columns=["part", "cell"]).merge(stored, on="cell", how="left")
    md, csv = [], []
    for part, g in joined.groupby("part", sort=False):
        done = g[g["status"].notna()]
        left = len(g) - len(done)
        median = float(done["wall_s"].median()) if len(done) else None
        estimate = None if median is None else median * left
        loads = pd.to_numeric(done["load_1m"]).dropna()
        ok = int((done["status"] == OK).sum())
        csv.append({"part": part, "cells": len(g), "stored": len(done), "ok": ok,
                    "measured_s": float(done["wall_s"].sum()), "median_cell_s": median,
                    "load_1m_median": float(loads.median()) if len(loads) else None,
                    "left": left, "left_estimate_s": estimate})
        md.append({"part": part, "cells": len(g), "stored": len(done), "ok": ok,
                   "measured": _hours(csv[-1]["measured_s"]) if len(done) else NA,
                   "median cell": NA if median is None else f"{median:.0f} s",
                   "load (median, range)": f"{loads.median():.1f} ({loads.min():.1f}–{loads.max():.1f})"
                   if len(loads) else NA,
                   "left (estimate)": "0" if not left else
                   f"{left} ({NA if estimate is None else _hours(estimate)})"})
    raw = pd.DataFrame(csv)
    one_by_one = raw["part"].isin(serial)

    def wall(column: str) -> float:  # the parallel parts shared over the cores, the serial ones in turn
        seconds = raw[column].fillna(0)
        return float(seconds[~one_by_one].sum() / cores + seconds[one_by_one].sum())

    took, est = float(raw["measured_s"].sum()), float(raw["left_estimate_s"].fillna(0).sum())
    no_estimate = raw[(raw["left"] > 0) & raw["left_estimate_s"].isna()]["part"].tolist()
    how = f"one process per core on {cores} cores" + (
        f", the {', '.join(raw[one_by_one]['part'])} cells one at a time" if one_by_one.any() else "")
    summary = (f"{int(raw['stored'].sum())} of {int(raw['cells'].sum())} cells stored, {_hours(took)} of "
               f"cell time measured ({_hours(wall('measured_s'))} of wall time at {how}). "
               + (f"The {int(raw['left'].sum())} cells left: about {_hours(est)} of cell time "
                  f"({_hours(wall('left_estimate_s'))} wall), each part's median stored cell times its "
                  "cells left"
                  + (f"; no estimate for {', '.join(no_estimate)} (none stored)" if no_estimate else "")
                  + "." if int(raw["left"].sum()) else "Every cell is stored.")
               + " Seconds are the rows' own `wall_s`; the load is the 1-minute load average when a row "
               "was written (`load_1m`; n/a for rows from before it was recorded).")
    return pd.DataFrame(md), raw, summary


def grid_tables(out: Outputs, frames: dict[str, pd.DataFrame], slugs: dict[str, str], raw_dir: Path) -> None:
    """One table per grid plan (bench/runs/plans.py) and device name that holds rows of that plan."""
    kinds = [f for k, f in frames.items() if k in ("retrieval", "scaling", "generation")]
    plans = read_plans(raw_dir)
    if not kinds or not plans:
        return
    cols = ["cell", "status", "wall_s", "device_name", "place", "device", "provenance"]
    stored = pd.concat([f[cols] for f in kinds], ignore_index=True)
    stored = stored.assign(kind=[device_kind(str(d)) for d in stored["device"]],
                           load_1m=[p.get("load_1m") for p in stored["provenance"]],
                           cores=[p.get("cpu_count") for p in stored["provenance"]])
    for plan in plans:
        parts = [(part, key) for part, key in plan["cells"]]
        keys = {k for _, k in parts}
        ours = stored[stored["kind"] == plan["device"]]
        pooled = ours[ours["place"] == plan["device"]]  # recall cells: stored for every machine of the kind
        for dev_name, rows in ours.groupby("device_name", sort=True):
            rows = pd.concat([rows[rows["place"] == dev_name], pooled]).drop_duplicates("cell", keep="last")
            mine = rows[rows["cell"].isin(keys)]
            if mine.empty:
                continue
            cores = int(pd.to_numeric(mine["cores"]).max()) if mine["cores"].notna().any() else 1
            table, raw, summary = grid_table(mine[["cell", "status", "wall_s", "load_1m"]], parts, cores)
            out.table(f"{plan['grid'].capitalize()} grid: {dev_name}",
                      f"{slug(plan['grid'])}_{slugs[dev_name]}_grid",
                      f"the {plan['grid']} grid by part: cells stored and the time they took (a recall "
                      f"cell counts if any {plan['device'].upper()} trained it, as a run here skips it, and "
                      "its time is that machine's; a cost cell only if this machine measured it)",
                      markdown(table) + "\n\n" + summary, raw)
