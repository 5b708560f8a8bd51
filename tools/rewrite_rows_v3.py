"""One-off: rewrite stored rows of schema 1 and 2 as schema 3 (bench/runs/schema.py), in place.

    python tools/rewrite_rows_v3.py results/raw [more dirs or .jsonl files]

Schema 3 nests a cell's spec — the model as a ModelSpec, a retrieval cell's task as a TaskSpec and its
training as a whole TrainConfig — where schema 2 flattened them, and adds the grid and part that ran the
cell. This script is the only code that still reads the older forms; archbench itself refuses them.

  v2 -> v3   the flat model fields become `spec.model`; `task` / `task_cfg` become `spec.task`;
             `train_cfg` becomes `spec.train` with every field (a field missing from an old row is at
             the default it ran with: the fields added later kept the old behaviour as their default)
  v1 -> v3   v1 retrieval rows named a mixer (`arch`, `arch_cfg`) and a depth (`n_layer`). Every v1
             arch but one was a pure stack of that mixer with `arch_cfg` applied; v1's `hybrid` was one
             block holding one sub-block per pattern letter at default configs, which at n_layer 1 and
             no MLPs is exactly that layer pattern ("MA" is mamba-attn). v1 scaling rows are refused
             (they timed single mixers beside a hybrid with MLPs: re-measure them).
  grid/part  the grid and part whose plan holds the cell today (bench/grids/; the first of frontier,
             plateau, scaling, retrieval, generation, quick, full); null where no grid holds it.

Every rewritten row is read back by archbench's own reader before its file is replaced (a temporary file,
fsync, rename), so a row that does not fit schema 3 stops the script with its file and line and no file
is half-written. Rows already at schema 3 are kept as they are.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from archbench.archs import ModelSpec, resolve_model
from archbench.archs.model import parse_pattern
from archbench.bench import grids
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs.schema import Row, RowSchemaError, cell_key
from archbench.bench.runs.store import dumps, write_atomic

MODEL_KEYS = ("model", "pattern", "mixers", "configs", "depth", "d_model", "mlp_ratio")
GRID_ORDER = ("frontier", "plateau", "scaling", "retrieval", "generation", "quick", "full")
V1_RETRIEVAL_RESULT = ("backend", "params", "state_bytes", "steps", "examples_seen", "train_seconds",
                       "accuracy", "accuracy_by_len", "test_len", "accuracy_by_slice", "final_loss",
                       "stopped_early", "curve")
V1_HYBRID_LETTERS = "M=mamba,A=attention,S=mamba2,R=rwkv"  # the v1 hybrid's default letter table


def model_v3(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": spec["model"], "pattern": spec["pattern"], "mixers": spec["mixers"],
            "configs": spec["configs"], "d_model": spec["d_model"], "mlp_ratio": spec["mlp_ratio"]}


def spec_v3(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in spec.items() if k not in MODEL_KEYS}
    out = {"model": model_v3(spec)}
    if kind == "retrieval":
        out["task"] = {"name": rest.pop("task"), "config": rest.pop("task_cfg")}
        out["train"] = dataclasses.asdict(TrainConfig(**rest.pop("train_cfg")))
    return {**out, **rest}


def v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("kind")
    if kind != "retrieval":
        raise ValueError(f"a version-1 {kind} row: only v1 retrieval rows migrate (v1 scaling rows timed "
                         "single mixers beside a hybrid with MLPs: re-measure them)")
    cell = json.loads(obj["cell"])
    model = _v1_model(cell)
    spec = {"model": model.name, "pattern": model.pattern, "mixers": dict(model.mixers),
            "configs": {k: dict(v) for k, v in model.configs.items()}, "depth": model.depth,
            "d_model": model.d_model, "mlp_ratio": model.mlp_ratio, "task": cell["task"],
            "task_cfg": cell["task_cfg"], "test_lens": cell.get("test_lens", []),
            "train_cfg": cell["train_cfg"], "device": cell["device"], "dtype": cell["dtype"],
            "seed": cell.get("seed", 0)}
    result = None
    if obj["status"] == "ok":
        result = {k: obj[k] for k in V1_RETRIEVAL_RESULT if k in obj}
        if cell["arch"] != "hybrid":  # a pure stack: every layer ran the row's resolved config
            result["resolved_configs"] = {letter: obj["arch_cfg"] for letter in model.mixers}
    provenance = obj.get("provenance") or {}
    if "device_name" not in provenance and obj.get("device_name"):
        provenance = {**provenance, "device_name": obj["device_name"]}
    return {"schema": 2, "kind": "retrieval", "spec": spec, "result": result, "status": obj["status"],
            "wall_s": obj.get("wall_s"), "provenance": provenance}


def _v1_model(cell: dict[str, Any]) -> ModelSpec:
    arch, n_layer, d_model = cell["arch"], cell["n_layer"], cell["d_model"]
    mlp_ratio, cfg = cell.get("mlp_ratio", 4), cell.get("arch_cfg") or {}
    if arch != "hybrid":
        return resolve_model(arch, n_layer, d_model, mlp_ratio, {arch: cfg} if cfg else None)
    pattern = cfg.get("pattern", "MA")
    if n_layer != 1 or mlp_ratio != 0 or cfg.get("mlp_ratio", 4) != 0:
        raise ValueError("only the v1 hybrid of one block without MLPs is a layer pattern")
    letters = dict(item.split("=", 1) for item in cfg.get("mixers", V1_HYBRID_LETTERS).split(","))
    used = ",".join(f"{c}={letters[c]}" for c in dict.fromkeys(pattern))
    unit, mixers = parse_pattern(f"{pattern}:{used}")
    name = "mamba-attn" if (unit, mixers) == ("MA", {"M": "mamba", "A": "attention"}) else \
        f"{unit}:" + ",".join(f"{k}={v}" for k, v in mixers.items())
    return ModelSpec(name=name, pattern=unit, mixers=mixers, configs={}, d_model=d_model, mlp_ratio=0)


def grid_parts() -> dict[str, tuple[str, str]]:
    """cell key -> (grid, part) of today's grids on CPU and CUDA (a grid that cannot plan here, such as
    a CUDA grid needing the device's memory, is left out)."""
    out: dict[str, tuple[str, str]] = {}
    for device in ("cpu", "cuda"):
        for name in GRID_ORDER:
            try:
                plan = grids.plan(name, grids.Params(device=device))
            except Exception:  # noqa: BLE001 - e.g. a CUDA grid that needs the device's memory size
                continue
            for cell, part in zip(plan.cells, plan.parts, strict=True):
                out.setdefault(cell_key(cell.spec), (name, part))
    return out


def rewrite_obj(obj: dict[str, Any], parts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    if obj.get("schema") == 3:
        return obj
    if "schema" not in obj:
        obj = v1_to_v2(obj)
    if obj.get("schema") != 2:
        raise ValueError(f"row schema {obj.get('schema')!r}: only 1 and 2 are rewritten")
    spec = spec_v3(obj["kind"], obj["spec"])
    row = Row.from_json({"schema": 3, "kind": obj["kind"], "grid": None, "part": None, "spec": spec,
                         "result": obj["result"], "status": obj["status"], "wall_s": obj["wall_s"],
                         "provenance": obj["provenance"]})
    grid, part = parts.get(row.cell, (None, None))
    return dataclasses.replace(row, grid=grid, part=part).to_json()


def rewrite_file(path: Path, parts: dict[str, tuple[str, str]]) -> tuple[int, int]:
    """(rows, rows rewritten) of one file, replaced atomically."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out, changed = [], 0
    for lineno, line in enumerate(lines, 1):
        obj = json.loads(line)
        try:
            new = rewrite_obj(obj, parts)
            Row.from_json(new, f"{path}:{lineno}")  # archbench's own reader takes it
        except (KeyError, TypeError, ValueError, RowSchemaError) as exc:
            raise SystemExit(f"{path}:{lineno}: cannot rewrite: {type(exc).__name__}: {exc}") from None
        changed += new is not obj
        out.append(dumps(new))
    write_atomic(path, "".join(line + "\n" for line in out).encode("utf-8"))
    return len(out), changed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    files = [f for a in argv for f in (sorted(Path(a).rglob("*.jsonl")) if Path(a).is_dir() else [Path(a)])]
    parts = grid_parts()
    for f in files:
        n, changed = rewrite_file(f, parts)
        print(f"{f}: {changed} of {n} rows rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
