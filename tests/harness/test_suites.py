"""Grids (bench/grids/): the models of a grid share one shape; every task has its own grid;
retrieval options reach every cell; a filter that selects nothing says what the grid has."""

from __future__ import annotations

import pytest

from archbench.archs import PRESETS, list_archs, list_models
from archbench.bench import grids
from archbench.bench.grids import GridError, Params, plan, scaling
from archbench.tasks import create, list_tasks


def test_scaling_models_are_every_mixer_and_the_presets_that_fit_one_shape() -> None:
    cells = plan("scaling", Params()).cells
    specs = [c.spec for c in cells]
    assert {(s.model.depth, s.model.d_model, s.model.mlp_ratio) for s in specs} == {(4, 256, 0)}
    presets = {n for n in list_models() if n in PRESETS and PRESETS[n].fits(4)}  # lfm2 sampled, jamba not
    assert {s.model.name for s in specs} == set(list_archs()) | presets
    assert {"mamba-attn", "lfm2"} <= presets and "jamba" not in presets
    assert all(len(s.model.pattern) == 4 for s in specs)
    # Ordered by increasing n within a series: the run loop skips longer lengths after a failure.
    series = {}
    for s in specs:
        series.setdefault((s.model.name, s.mode), []).append(s.seq_len)
    assert all(ns == sorted(ns) for ns in series.values())


def test_quick_scaling_puts_each_hybrid_beside_its_pure_stacks() -> None:
    specs = [c.spec for c in plan("quick", Params()).cells if c.kind == "scaling"]
    models = {s.model.name: s for s in specs}
    for hybrid in ("mamba2-attn", "qwen3-next"):
        assert set(models[hybrid].model.mixers.values()) <= set(models)  # its mixers as pure stacks too
    assert {(s.model.depth, s.model.d_model, s.model.mlp_ratio) for s in specs} == {(4, 256, 0)}


def test_gpu_mixer_configs_reach_every_layer_of_that_mixer_inside_hybrids() -> None:
    specs = [c.spec for c in plan("scaling", Params(device="cuda", models=["mamba2-attn"])).cells]
    assert {s.model.d_model for s in specs} == {scaling.GPU_D_MODEL}
    assert {s.requested_backend for s in specs} == {"fastest"}
    assert specs[0].model.configs == {"M": scaling.GPU_MIXER_CFGS["mamba2"], "A": {"head_dim": 64}}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("task", list_tasks())
def test_every_task_has_its_own_grid_of_buildable_cells(task: str, device: str) -> None:
    cells = plan("retrieval", Params(task=task, device=device)).cells
    assert cells and {c.spec.task.name for c in cells} == {task}
    for cfg in {tuple(sorted(c.spec.task.config.items())) for c in cells}:
        create(task, **dict(cfg))  # every field is the task's own (no num_kv_pairs where it has none)
    assert {c.spec.model.depth for c in cells} == {2} and {c.spec.model.mlp_ratio for c in cells} == {0}
    quick = plan("quick", Params(task=task)).cells
    assert [c for c in quick if c.kind == "retrieval"]


def test_retrieval_options_reach_every_cell() -> None:
    o = Params(lens=[128], num_kv_pairs=4, vocab_size=256, lrs=[1e-4, 5e-4], d_models=[48], models=["rwkv"],
                max_examples=2048)
    specs = [c.spec for c in plan("retrieval", o).cells]
    assert len(specs) == 2 and [s.lr for s in specs] == [1e-4, 5e-4]
    assert all(s.train.max_examples == s.train.n_train == 2048 for s in specs)
    assert all((s.seq_len, s.num_kv_pairs, s.vocab_size, s.model.d_model) == (128, 4, 256, 48) for s in specs)
    assert specs[0].test_lens == (256,)


def test_attention_gets_its_short_conv_in_retrieval_wherever_it_appears() -> None:
    specs = {c.spec.model.name: c.spec for c in plan("retrieval", Params(lens=[64], d_models=[32])).cells}
    assert specs["attention"].model.configs == {"M": {"d_conv": 4}}
    assert specs["mamba-attn"].model.configs == {"A": {"d_conv": 4}}
    assert specs["mamba"].model.configs == {}


def test_a_length_filter_that_selects_no_cell_names_the_grid_s_lengths() -> None:
    with pytest.raises(GridError, match="no cell of the retrieval grid of mqar on cpu has length 96, 1024; "
                                         "its lengths: 64, 128, 256"):
        plan("retrieval", Params(lens=[96, 1024]))
    quick = plan("quick", Params(lens=[96]))  # the scaling part takes any length: a note, not an error
    assert quick.cells and "its lengths: 128" in quick.notes[0]


def test_a_copied_grid_file_runs_by_path_with_its_edited_value(tmp_path) -> None:
    """The README's recipe: copy a grid, edit a value, run the copy."""
    from archbench.bench.grids import quick

    source = open(quick.__file__).read()
    assert "SCALING_LENS = [256, 1024, 4096]" in source
    mine = tmp_path / "my_grid.py"
    mine.write_text(source.replace("SCALING_LENS = [256, 1024, 4096]", "SCALING_LENS = [512]"))
    copied = plan(str(mine), Params())
    assert copied.grid == "my_grid"
    assert {c.spec.seq_len for c in copied.cells if c.kind == "scaling"} == {512}
    assert len(copied.cells) < len(plan("quick", Params()).cells)


@pytest.mark.parametrize("grid, flag", [("plateau", {"lens": [64]}), ("generation", {"lrs": [1e-3]}),
                                        ("scaling", {"task": "copy"})])
def test_a_flag_a_grid_does_not_take_is_refused_naming_the_ones_it_does(grid, flag) -> None:
    with pytest.raises(GridError, match=rf"the {grid} grid fixes --[a-z-]+; it takes --"):
        plan(grid, Params(**flag))


def test_unknown_grids_and_broken_grid_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(GridError, match="unknown grid 'nope'; valid: quick, scaling"):
        grids.load("nope")
    with pytest.raises(GridError, match="no grid file"):
        grids.load(str(tmp_path / "absent.py"))
    (tmp_path / "bad.py").write_text("TAKES = ()\n")
    with pytest.raises(GridError, match="defines no cells"):
        grids.load(str(tmp_path / "bad.py"))
    (tmp_path / "boom.py").write_text("raise RuntimeError('x')\n")
    with pytest.raises(GridError, match="failed to load: RuntimeError: x"):
        grids.load(str(tmp_path / "boom.py"))
