"""The one-off rewrite to row schema 3 (tools/rewrite_rows_v3.py): version-1 retrieval rows become the
model that ran, v1 scaling rows are refused, and the report written from rewritten rows is the report the
schema-2 code wrote from the same rows, table for table."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT

from archbench import archs
from archbench.archs import LM
from archbench.bench import grids
from archbench.bench.grids import frontier as frontier_grid
from archbench.bench.report import write_report
from archbench.bench.runs.plans import write_plan
from archbench.bench.runs.schema import cell_key, read_rows

DATA = Path(__file__).parent / "data"
V1_ROWS = DATA / "retrieval_v1.jsonl"  # two committed v1 rows: hybrid, attention
V2_ROWS = DATA / "rows_v2"  # committed schema-2 rows of every kind
V2_REPORT = DATA / "report_v2"  # the tables the schema-2 code wrote from V2_ROWS
# Tables the report has reshaped since that snapshot — the bytes/s utilisation against the decode
# bound's yardstick, decode memory with its KV cache, energy without a counter as one line, the
# frontier's costs without a measure no model has: checked by name, the rest byte for byte.
RESHAPED = re.compile(r"(_mlp\d+_(util|memory|energy)|_costs)\.(md|csv)$")
# Tables whose Markdown has gained a mark since (a best lr at the end of its sweep, 'lowest' / 'highest',
# which widens its column): their CSV rows are compared on the snapshot's columns, their Markdown by name.
MARKED = re.compile(r"_(learning|lr_sweep)\.md$")
# Tables the report has gained since: not in the snapshot, left out of the comparison.
ADDED = re.compile(r"_orderings\.(md|csv)$")
# The frontier grid's presets when the snapshot was written (its plan is rebuilt from code below).
SCHEMA_2_PRESETS = ("qwen3-next", "mamba2-attn", "kimi-linear", "samba")


def _script():
    path = ROOT / "tools" / "rewrite_rows_v3.py"
    spec = importlib.util.spec_from_file_location("rewrite_rows_v3", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rewritten(tmp_path: Path, source: Path) -> Path:
    raw = tmp_path / "raw"
    if source.is_dir():
        shutil.copytree(source, raw)
    else:
        raw.mkdir()
        shutil.copy(source, raw / source.name)
    assert _script().main([str(raw)]) == 0
    return raw


def test_v1_retrieval_rows_become_the_model_that_ran(tmp_path) -> None:
    hybrid, attention = read_rows(_rewritten(tmp_path, V1_ROWS))
    # The v1 hybrid at n_layer 1: its pattern "MA" as two layers, and no attention config (it dropped its
    # sub-mixers' configs, so that is what ran).
    model = hybrid.spec.model
    assert (model.name, model.pattern, model.mixers, model.configs) == \
        ("mamba-attn", "MA", {"M": "mamba", "A": "attention"}, {})
    lm = LM(model, hybrid.spec.vocab_size)
    v1 = json.loads(V1_ROWS.read_text().splitlines()[0])
    assert sum(p.numel() for p in lm.parameters()) == v1["params"] == hybrid.result.params
    assert lm.state_bytes(1, 64) == v1["state_bytes"]
    # Every other v1 arch: a pure stack of n_layer layers with arch_cfg applied.
    assert (attention.spec.model.name, attention.spec.model.pattern, attention.spec.model.configs) == \
        ("attention", "MM", {"M": {"d_conv": 4}})
    assert (attention.spec.seq_len, attention.spec.num_kv_pairs, attention.spec.vocab_size,
            attention.spec.lr) == (64, 8, 64, 3e-3)
    assert attention.device_name == "AMD EPYC (2 CPUs)"
    assert attention.result.accuracy == json.loads(V1_ROWS.read_text().splitlines()[1])["accuracy"]
    # its cell is today's retrieval grid's cell, so a resume skips it; the rewrite recorded that grid
    assert attention.cell in {cell_key(c.spec) for c in grids.plan("retrieval", grids.Params()).cells}
    assert (attention.grid, attention.part) == ("retrieval", "")


def test_v1_scaling_rows_are_refused_naming_the_row(tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    old = {"kind": "scaling", "arch": "hybrid", "status": "ok"}
    (raw / "scaling_old.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(SystemExit, match=r"scaling_old.jsonl:1: cannot rewrite: .*re-measure them"):
        _script().main([str(raw)])
    assert json.loads((raw / "scaling_old.jsonl").read_text())["arch"] == "hybrid"  # left as it was


# The mixers registered when the schema-2 report was written: the frontier grid's families come from the
# registry, so its plan (and the grid table below) is rebuilt over these, not over today's registry.
SCHEMA_2_MIXERS = ("attention", "swa", "mamba", "mamba2", "mamba3", "rwkv", "rwkv7", "linear_attention",
                   "retnet", "gla", "deltanet", "gated_deltanet", "kda")


def _v2_report(folder: Path, monkeypatch, without: str | None = None) -> list[str]:
    """The report of the rewritten schema-2 rows (less the raw file `without`), under `folder`; returns
    the table files it wrote (.md, then .csv), the index and SUMMARY.md aside."""
    raw = _rewritten(folder, V2_ROWS)
    if without:
        (raw / without).unlink()
    # the grid table comes from the frontier grid's plan, which the schema-2 report rebuilt from code
    monkeypatch.setattr(archs, "list_archs", lambda pattern="*": list(SCHEMA_2_MIXERS))
    monkeypatch.setattr(frontier_grid, "HYBRID_PRESETS", SCHEMA_2_PRESETS)
    frontier = grids.plan("frontier", grids.Params())
    write_plan(raw, "frontier", "cpu", [(p, cell_key(c.spec)) for p, c in zip(frontier.parts, frontier.cells,
                                                                             strict=True)])
    write_report(folder)
    # the index and SUMMARY.md (the headline tables, collected from the tables compared below) aside
    kept = [p.name for p in sorted(folder.iterdir()) if not ADDED.search(p.name)]
    return sorted(n for n in kept if n.endswith(".md") and n not in ("README.md", "SUMMARY.md")) + \
        sorted(n for n in kept if n.endswith(".csv"))


def _pooled(name: str) -> str:
    """A snapshot's per-machine retrieval table as today's report names it: recall pools every CPU."""
    return re.sub(r"^retrieval_(amd-epyc-2-cpus|intel-r-xeon-r-processor-2-cpus)_", "retrieval_cpu_", name)


def test_the_report_of_rewritten_rows_is_the_schema_2_report(tmp_path, monkeypatch) -> None:
    raw = _rewritten(tmp_path / "again", V2_ROWS)
    before = {f: f.read_bytes() for f in raw.iterdir()}
    assert _script().main([str(raw)]) == 0  # a second run keeps schema-3 rows as they are
    assert before == {f: f.read_bytes() for f in raw.iterdir()}
    written = _v2_report(tmp_path, monkeypatch)
    expected = sorted(p.name for p in V2_REPORT.iterdir() if "_energy." not in p.name)  # no counter there
    # Since the snapshot, recall pools every CPU that trained a cell (bench/runs/schema.py `place`): one
    # set of retrieval tables for both machines, with the table of who trained what, and the frontier
    # draws the other machine's recall cells too: every line of the snapshot's retrieval tables (a model's
    # figures at one task point; a CSV row) is in today's pooled table, and the frontier's files are there.
    names = sorted({_pooled(n) for n in expected} | {f"retrieval_cpu_machines.{x}" for x in ("md", "csv")})
    assert expected and written == sorted(n for n in names if n.endswith(".md")) + \
        sorted(n for n in names if n.endswith(".csv"))
    assert "energy: no counter on this CPU" in (tmp_path / "README.md").read_text()
    for name in expected:
        if name.endswith(".csv") and name.startswith("retrieval_"):
            snap = pd.read_csv(V2_REPORT / name, dtype=str)
            now = pd.read_csv(tmp_path / _pooled(name), dtype=str)[list(snap.columns)]
            pooled = set(now.fillna("").itertuples(index=False))
            assert [r for r in snap.fillna("").itertuples(index=False) if r not in pooled] == [], name
        elif name.startswith("retrieval_") and not MARKED.search(name):
            pooled = set((tmp_path / _pooled(name)).read_text().splitlines())
            lines = (V2_REPORT / name).read_text().splitlines()[3:]  # the caption and section line aside
            assert [ln for ln in lines if ln not in pooled] == [], name
        elif not RESHAPED.search(name) and not name.startswith(("frontier_", "retrieval_")):
            assert (tmp_path / name).read_text() == (V2_REPORT / name).read_text(), name
