"""The row schema (bench/runs/schema.py): typed rows with nested specs round-trip; a row that does not
fit is an error naming its file and line; an older schema is refused naming the script that rewrites it;
the report's columns are the dataclasses' fields, nested objects flattened."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from archbench.archs import resolve_model
from archbench.bench import grids
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs.schema import (
    SCHEMA_VERSION,
    Row,
    RowSchemaError,
    cell_key,
    columns,
    is_retryable,
    model_identity,
    read_rows,
    require_columns,
)

PROV = {"device_name": "Test CPU (2 CPUs)", "git_commit": "0" * 40}


def scaling_row(status: str = "ok") -> Row:
    spec = ScalingSpec(resolve_model("MA:M=mamba2,A=attention", 2, 32), mode="prefill", seq_len=64, batch=1,
                       device="cpu", dtype="float32")
    result = ScalingResult(**{f.name: 2 for f in dataclasses.fields(ScalingResult)} |
                           {"backend": "x", "peak_mem_method": None, "energy_source": None,
                            "backend_trials_s": {"sdpa": 0.5}, "resolved_configs": None, "energy_j": 0.25})
    return Row("scaling", spec, result if status == "ok" else None, status, PROV, 1.5, "scaling", "")


def write(path: Path, *objs: dict) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_a_row_round_trips_through_its_json_line(tmp_path: Path) -> None:
    row = scaling_row()
    line = row.to_json()
    assert list(line) == ["schema", "kind", "grid", "part", "spec", "result", "status", "wall_s",
                          "provenance"]
    assert line["schema"] == SCHEMA_VERSION == 3 and (line["grid"], line["part"]) == ("scaling", "")
    assert line["spec"]["model"]["pattern"] == "MA"  # nested: the model is an object, not copied fields
    assert read_rows(write(tmp_path / "r.jsonl", line)) == [row]
    failed = scaling_row("oom")
    assert read_rows(write(tmp_path / "f.jsonl", failed.to_json())) == [failed]


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(kind="decode"),
     "unknown row kind 'decode'; known kinds: generation, retrieval, scaling"),
    (lambda o: o.update(schema=2), "row schema 2; this archbench reads schema 3: rewrite older rows with "
                                   "`python tools/rewrite_rows_v3.py DIR`"),
    (lambda o: o.pop("schema"), "row schema 1; this archbench reads schema 3"),
    (lambda o: o["result"].pop("time_median_s"), "scaling result: missing field(s) time_median_s"),
    (lambda o: o["result"].update(util_flops_measured=0.5), "unknown field(s) util_flops_measured"),
    (lambda o: o["spec"].update(seq_len="64"), "scaling spec.seq_len = '64' is not int"),
    (lambda o: o["result"].update(energy_j="n/a"), "scaling result.energy_j = 'n/a' is not float | None"),
    (lambda o: o["spec"]["model"].update(d_model="32"), "scaling spec.model.d_model = '32' is not int"),
    (lambda o: o["spec"]["model"].update(depth=2), "scaling spec.model: unknown field(s) depth"),
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


def test_columns_are_the_dataclasses_fields_and_undeclared_reads_fail() -> None:
    for kind in ("scaling", "retrieval"):
        cols = columns(kind)
        assert len(cols) == len(set(cols))
    model = {"model", "pattern", "mixers", "configs", "depth", "d_model", "mlp_ratio", "identity"}
    assert model | {"flops_frac_measured"} <= set(columns("scaling"))
    assert {"seq_len", "num_kv_pairs", "vocab_size", "lr", "accuracy", "task", "task_cfg", "train_cfg"} <= \
        set(columns("retrieval"))
    # The utilisation bug: the cell wrote flops_frac_measured, the report read util_flops_measured.
    with pytest.raises(RowSchemaError, match="my report reads scaling column.*'util_flops_measured'"):
        require_columns("scaling", ["seq_len", "util_flops_measured"], "my report")


def test_flat_rows_hold_every_declared_column() -> None:
    flat = scaling_row().flat()
    assert tuple(flat) == columns("scaling")
    assert flat["flops_frac_measured"] == 2 and flat["device_name"] == PROV["device_name"]
    assert (flat["model"], flat["depth"], flat["grid"]) == ("MA:M=mamba2,A=attention", 2, "scaling")
    assert flat["identity"] == model_identity(scaling_row().spec.model)
    assert scaling_row("timeout").flat()["time_median_s"] is None


def test_retryable_statuses() -> None:
    assert all(is_retryable(s) for s in ("oom", "timeout", "error: ValueError: x", "skipped: n=32 was oom"))
    assert not any(is_retryable(s) for s in ("ok", "skipped: attention has no recurrent step"))


def test_retrieval_spec_holds_its_task_and_training_as_objects() -> None:
    spec = grids.plan("retrieval", grids.Params(lens=[64], d_models=[32], models=["mamba"])).cells[0].spec
    assert isinstance(spec, RetrievalSpec) and spec.test_lens == (128,)
    assert isinstance(spec.train, TrainConfig) and spec.lr == spec.train.lr
    assert spec.task.name == "mqar" and spec.seq_len == spec.task.config["seq_len"] == 64
    with pytest.raises(TypeError, match="nonsense"):
        dataclasses.replace(spec.train, nonsense=1)
    with pytest.raises(ValueError, match="must set seq_len"):
        dataclasses.replace(spec, task=dataclasses.replace(spec.task, config={"num_kv_pairs": 4}))


def test_every_kind_s_summary_columns_are_declared() -> None:
    from archbench.bench.experiments import get, list_experiments

    for kind in list_experiments():
        require_columns(kind, get(kind).summary_columns, f"the {kind} summary")
        if get(kind).key_result is not None:  # the figure a finished cell's line in a log shows
            require_columns(kind, (get(kind).key_result,), f"the {kind} key result")


def test_the_cell_key_and_the_model_identity_are_canonical_json_of_the_objects() -> None:
    spec = grids.plan("retrieval", grids.Params(lens=[64], d_models=[32], models=["mamba"])).cells[0].spec
    again = RetrievalSpec(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})
    assert cell_key(again) == cell_key(spec)
    compiled = dataclasses.replace(spec, train=dataclasses.replace(spec.train, compile=True))
    assert cell_key(compiled) != cell_key(spec)
    assert json.loads(model_identity(spec.model)) == dataclasses.asdict(spec.model)
