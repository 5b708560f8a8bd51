"""The row schema (bench/runs/schema.py): typed rows round-trip; a row that does not fit is an error
naming its file and line; version-1 retrieval rows migrate to what actually ran, v1 scaling rows are
refused; the report's columns are the dataclasses' fields."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from archbench.archs import LM, resolve_model
from archbench.bench.experiments import model_fields
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs import suites
from archbench.bench.runs.schema import (
    SCHEMA_VERSION,
    Row,
    RowSchemaError,
    cell_key,
    columns,
    is_retryable,
    read_rows,
    require_columns,
)

V1_ROWS = Path(__file__).parent / "data" / "retrieval_v1.jsonl"  # two committed v1 rows: hybrid, attention
PROV = {"device_name": "Test CPU (2 CPUs)", "git_commit": "0" * 40}


def scaling_row(status: str = "ok") -> Row:
    spec = ScalingSpec(**model_fields(resolve_model("MA:M=mamba2,A=attention", 2, 32)), mode="prefill",
                       seq_len=64, batch=1, device="cpu", dtype="float32")
    result = ScalingResult(**{f.name: 2 for f in dataclasses.fields(ScalingResult)} |
                           {"backend": "x", "peak_mem_method": None, "energy_source": None,
                            "backend_trials_s": {"sdpa": 0.5}, "resolved_configs": None, "energy_j": 0.25})
    return Row("scaling", spec, result if status == "ok" else None, status, PROV, 1.5)


def write(path: Path, *objs: dict) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_a_row_round_trips_through_its_json_line(tmp_path: Path) -> None:
    row = scaling_row()
    line = row.to_json()
    assert list(line) == ["schema", "kind", "cell", "spec", "result", "status", "wall_s", "provenance"]
    assert line["schema"] == SCHEMA_VERSION == 2 and line["cell"] == cell_key(row.spec)
    assert read_rows(write(tmp_path / "r.jsonl", line)) == [row]
    failed = scaling_row("oom")
    assert read_rows(write(tmp_path / "f.jsonl", failed.to_json())) == [failed]


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(kind="decode"),
     "unknown row kind 'decode'; known kinds: generation, retrieval, scaling"),
    (lambda o: o.update(schema=3), "row schema 3; this archbench reads schema 2"),
    (lambda o: o["result"].pop("time_median_s"), "scaling result: missing field(s) time_median_s"),
    (lambda o: o["result"].update(util_flops_measured=0.5), "unknown field(s) util_flops_measured"),
    (lambda o: o["spec"].update(seq_len="64"), "scaling spec.seq_len = '64' is not int"),
    (lambda o: o["result"].update(energy_j="n/a"), "scaling result.energy_j = 'n/a' is not float | None"),
    (lambda o: o["spec"].update(depth=3), "depth 3 does not match pattern 'MA'"),
    (lambda o: o.pop("wall_s"), "row keys"),
    (lambda o: o.update(status="oom"), "with status 'oom' has no result"),
])
def test_a_row_that_does_not_fit_names_its_file_and_line(tmp_path: Path, edit, message) -> None:
    bad = scaling_row().to_json()
    edit(bad)
    path = write(tmp_path / "rows.jsonl", scaling_row().to_json(), bad)
    with pytest.raises(RowSchemaError, match="rows.jsonl:2: ") as err:
        read_rows(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_v1_scaling_rows_are_refused_with_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path / "scaling_old.jsonl", {"kind": "scaling", "arch": "hybrid", "status": "ok"})
    expected = (r"scaling_old.jsonl:1: a version-1 scaling row.*not migrated; re-measure with "
                r"`archbench run scaling` and delete .*scaling_old")
    with pytest.raises(RowSchemaError, match=expected):
        read_rows(path)


def test_v1_retrieval_rows_migrate_to_the_model_that_ran() -> None:
    hybrid, attention = read_rows(V1_ROWS)
    # The v1 hybrid at n_layer 1: its pattern "MA" as two layers, and no attention config (it dropped
    # its sub-mixers' configs, so that is what ran).
    assert (hybrid.spec.model, hybrid.spec.pattern, hybrid.spec.mixers) == \
        ("mamba-attn", "MA", {"M": "mamba", "A": "attention"})
    assert hybrid.spec.configs == {} and (hybrid.spec.depth, hybrid.spec.mlp_ratio) == (2, 0)
    model = LM(hybrid.spec.model_spec(), hybrid.spec.vocab_size)
    v1 = json.loads(V1_ROWS.read_text().splitlines()[0])
    assert sum(p.numel() for p in model.parameters()) == v1["params"] == hybrid.result.params
    assert model.state_bytes(1, 64) == v1["state_bytes"]
    # Every other v1 arch: a pure stack of n_layer layers with arch_cfg applied.
    assert (attention.spec.model, attention.spec.pattern, attention.spec.configs) == \
        ("attention", "MM", {"M": {"d_conv": 4}})
    assert attention.result.resolved_configs["M"]["d_conv"] == 4
    assert (attention.spec.seq_len, attention.spec.num_kv_pairs, attention.spec.vocab_size,
            attention.spec.lr) == (64, 8, 64, 3e-3)
    v1_attention = json.loads(V1_ROWS.read_text().splitlines()[1])
    assert attention.device_name == "AMD EPYC (2 CPUs)"
    assert attention.result.accuracy == v1_attention["accuracy"]


def test_migrated_cells_are_the_new_grid_s_cells_so_a_resume_skips_them() -> None:
    _, attention = read_rows(V1_ROWS)
    grid = {cell_key(c.spec) for c in suites.build("retrieval", suites.Options()).cells}
    assert attention.cell in grid
    # The grid's hybrid now gives its attention the short conv (mixer configs reach inside hybrids):
    # a different cell from the v1 hybrid, measured anew.
    hybrid_cells = [c.spec for c in suites.build("retrieval", suites.Options(models=["mamba-attn"])).cells]
    assert all(s.configs == {"A": {"d_conv": 4}} for s in hybrid_cells)


def test_columns_are_the_dataclasses_fields_and_undeclared_reads_fail() -> None:
    for kind in ("scaling", "retrieval"):
        cols = columns(kind)
        assert len(cols) == len(set(cols))
    model = {"model", "pattern", "mixers", "configs", "depth", "d_model", "mlp_ratio"}
    assert model | {"flops_frac_measured"} <= set(columns("scaling"))
    assert {"seq_len", "num_kv_pairs", "vocab_size", "lr", "accuracy"} <= set(columns("retrieval"))
    # The utilisation bug: the cell wrote flops_frac_measured, the report read util_flops_measured.
    with pytest.raises(RowSchemaError, match="my report reads scaling column.*'util_flops_measured'"):
        require_columns("scaling", ["seq_len", "util_flops_measured"], "my report")


def test_flat_rows_hold_every_declared_column() -> None:
    flat = scaling_row().flat()
    assert tuple(flat) == columns("scaling")
    assert flat["flops_frac_measured"] == 2 and flat["device_name"] == PROV["device_name"]
    assert scaling_row("timeout").flat()["time_median_s"] is None


def test_retryable_statuses() -> None:
    assert all(is_retryable(s) for s in ("oom", "timeout", "error: ValueError: x", "skipped: n=32 was oom"))
    assert not any(is_retryable(s) for s in ("ok", "skipped: attention has no recurrent step"))


def test_retrieval_spec_checks_its_train_config() -> None:
    spec = suites.build("retrieval", suites.Options(lens=[64], d_models=[32], models=["mamba"])).cells[0].spec
    with pytest.raises(TypeError, match="nonsense"):
        dataclasses.replace(spec, train_cfg={**spec.train_cfg, "nonsense": 1})
    assert isinstance(spec, RetrievalSpec) and spec.test_lens == (128,)


def test_every_kind_s_summary_columns_are_declared() -> None:
    from archbench.bench.experiments import get, list_experiments

    for kind in list_experiments():
        require_columns(kind, get(kind).summary_columns, f"the {kind} summary")


def test_a_train_field_added_later_keeps_stored_cells_keys_at_its_default() -> None:
    import dataclasses

    _, attention = read_rows(V1_ROWS)
    stored = attention.spec
    assert "compile" not in stored.train_cfg
    eager = dataclasses.replace(stored, train_cfg={**stored.train_cfg, "compile": False})
    compiled = dataclasses.replace(stored, train_cfg={**stored.train_cfg, "compile": True})
    assert cell_key(eager) == cell_key(stored) == attention.cell
    assert cell_key(compiled) != attention.cell and compiled.train_cfg["compile"] is True
    # every recipe field added later, at archbench's default, leaves the key alone too
    defaults = TrainConfig().to_dict()
    late = dataclasses.replace(stored, train_cfg={**stored.train_cfg, **{k: defaults[k] for k in
                                                                         TrainConfig.LATE_DEFAULTS}})
    assert cell_key(late) == attention.cell
    zoology = dataclasses.replace(stored, train_cfg={**stored.train_cfg, "recipe": "zoology"})
    assert cell_key(zoology) != attention.cell and zoology.recipe == "zoology" and late.recipe == "archbench"
