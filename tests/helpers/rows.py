"""Shared by the report tests: rows built through the schema from small synthetic figures, written
where `archbench report` reads them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from archbench.archs import ModelSpec, resolve_model

DEVICE = "Test CPU (2 CPUs)"
PROV = {"git_commit": "0123456789abcdef", "git_dirty": False, "device_name": DEVICE}


def model_spec(model: str, depth: int = 2, d_model: int = 64, configs: dict | None = None) -> ModelSpec:
    """A Spec's model; `configs` (per-letter mixer overrides) replaces the resolved ones."""
    spec = resolve_model(model, depth, d_model)
    return spec if configs is None else dataclasses.replace(spec, configs=configs)


def write_rows(results: Path, **rows: list[dict]) -> Path:
    """`results/raw/<kind>.jsonl` for each keyword (an empty list writes an empty file); `results`."""
    raw = results / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for kind, objs in rows.items():
        (raw / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in objs))
    return results
