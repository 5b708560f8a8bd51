"""Shared by the report tests: rows built through the schema from small synthetic figures, written
where `archbench report` reads them."""

from __future__ import annotations

import json
from pathlib import Path

from archbench.archs import resolve_model
from archbench.bench.experiments import model_fields

DEVICE = "Test CPU (2 CPUs)"
PROV = {"git_commit": "0123456789abcdef", "git_dirty": False, "device_name": DEVICE}


def spec_fields(model: str, depth: int = 2, d_model: int = 64, configs: dict | None = None) -> dict:
    """A Spec's model fields; `configs` (per-letter mixer overrides) replaces the resolved ones."""
    fields = model_fields(resolve_model(model, depth, d_model))
    return fields if configs is None else {**fields, "configs": configs}


def write_rows(results: Path, **rows: list[dict]) -> Path:
    """`results/raw/<kind>.jsonl` for each keyword (an empty list writes an empty file); `results`."""
    raw = results / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for kind, objs in rows.items():
        (raw / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in objs))
    return results
