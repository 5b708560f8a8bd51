"""A grid's plan beside its rows: `raw/plans/<grid>_<device>.json`, the (part, cell key) of every cell the
grid holds on that device, written when a grid is run as it is defined (no flag narrowing it). The report
counts what a grid has stored and has left from its rows and this file alone, so it never rebuilds a grid
(and installing a plugin does not change a committed table).

    {"grid": "frontier", "device": "cpu", "cells": [["headline", "<cell key>"], ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archbench.bench.runs.store import regular_files, slug, write_atomic

PLANS = "plans"  # under raw/


def plan_path(raw: Path, grid: str, device: str) -> Path:
    return Path(raw) / PLANS / f"{slug(grid)}_{slug(device)}.json"


def write_plan(raw: Path, grid: str, device: str, cells: list[tuple[str, str]]) -> Path:
    """Write atomically (a temporary file, fsync, rename): a reader sees the old plan or the new one."""
    path = plan_path(raw, grid, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"grid": grid, "device": device, "cells": [list(c) for c in cells]}, indent=0)
    write_atomic(path, (data + "\n").encode("utf-8"))
    return path


def read_plans(raw: Path) -> list[dict[str, Any]]:
    """Every readable plan under raw/plans/, sorted by file name; a file that is not one is skipped (with
    a warning when it is no regular file: a FIFO would block the report)."""
    out = []
    for path in regular_files(sorted((Path(raw) / PLANS).glob("*.json"))):
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(plan, dict) and {"grid", "device", "cells"} <= set(plan):
                out.append(plan)
        except (OSError, ValueError):
            continue
    return out
