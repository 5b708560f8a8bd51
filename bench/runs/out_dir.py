"""Where `archbench run` writes when `--out` is not given: a fresh `runs/<grid>-<UTC time>/`.

Why a fresh folder, and not `results/`: `results/` is committed, and the report merges every row
under it by device name, so a run that wrote there by default would dirty the repository and slip its
rows into the committed tables (a quick `--lens 256` check beside the maintainers' sweep). `runs/` is
git-ignored, and a new folder per run mixes no run with another. Writing into `results/` (how the
committed rows are regenerated) or into an earlier run's folder (to resume it, or `--retry-failed`)
takes `--out` naming it: a choice made on purpose, never by default.

    default_out_dir("quick", datetime(2026, 5, 1, 12, tzinfo=timezone.utc))
        == Path("runs/quick-20260501T120000Z")
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

RUNS = Path("runs")


def default_out_dir(grid: str, now: datetime | None = None, root: Path = RUNS) -> Path:
    """`runs/<grid>-<UTC timestamp>`, one that does not exist yet (`-2`, `-3`, ... after a run started
    in the same second)."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = root / f"{grid}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path
