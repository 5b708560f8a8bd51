"""Suites (bench/runs/suites.py): the models of a grid share one shape; every task has its own grid;
retrieval options reach every cell; a filter that selects nothing says what the grid has."""

from __future__ import annotations

import pytest

from archbench.archs import PRESETS, list_archs, list_models
from archbench.bench.runs import suites
from archbench.bench.runs.suites import Options, SuiteError, build
from archbench.tasks import create, list_tasks


def test_scaling_models_are_every_mixer_and_the_presets_that_fit_one_shape() -> None:
    cells = build("scaling", Options()).cells
    specs = [c.spec for c in cells]
    assert {(s.depth, s.d_model, s.mlp_ratio) for s in specs} == {(4, 256, 0)}
    presets = {n for n in list_models() if n in PRESETS and 4 % len(PRESETS[n].unit) == 0}
    assert {s.model for s in specs} == set(list_archs()) | presets
    assert "mamba-attn" in presets and all(len(s.pattern) == 4 for s in specs)
    # Ordered by increasing n within a series: the run loop skips longer lengths after a failure.
    series = {}
    for s in specs:
        series.setdefault((s.model, s.mode), []).append(s.seq_len)
    assert all(ns == sorted(ns) for ns in series.values())


def test_quick_scaling_puts_each_hybrid_beside_its_pure_stacks() -> None:
    specs = [c.spec for c in build("quick", Options()).cells if c.kind == "scaling"]
    models = {s.model: s for s in specs}
    for hybrid in ("mamba2-attn", "qwen3-next"):
        assert set(models[hybrid].mixers.values()) <= set(models)  # its mixers as pure stacks too
    assert {(s.depth, s.d_model, s.mlp_ratio) for s in specs} == {(4, 256, 0)}


def test_gpu_mixer_configs_reach_every_layer_of_that_mixer_inside_hybrids() -> None:
    specs = [c.spec for c in build("scaling", Options(device="cuda", models=["mamba2-attn"])).cells]
    assert {s.d_model for s in specs} == {suites.GPU_D_MODEL}
    assert {s.requested_backend for s in specs} == {"fastest"}
    assert specs[0].configs == {"M": suites.GPU_MIXER_CFGS["mamba2"], "A": {"head_dim": 64}}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("task", list_tasks())
def test_every_task_has_its_own_grid_of_buildable_cells(task: str, device: str) -> None:
    cells = build("retrieval", Options(task=task, device=device)).cells
    assert cells and {c.spec.task for c in cells} == {task}
    for cfg in {tuple(sorted(c.spec.task_cfg.items())) for c in cells}:
        create(task, **dict(cfg))  # every field is the task's own (no num_kv_pairs where it has none)
    assert {c.spec.depth for c in cells} == {2} and {c.spec.mlp_ratio for c in cells} == {0}
    quick = build("quick", Options(task=task)).cells
    assert [c for c in quick if c.kind == "retrieval"]


def test_retrieval_options_reach_every_cell() -> None:
    o = Options(lens=[128], num_kv_pairs=4, vocab_size=256, lrs=[1e-4, 5e-4], d_models=[48], models=["rwkv"],
                max_examples=2048)
    specs = [c.spec for c in build("retrieval", o).cells]
    assert len(specs) == 2 and [s.lr for s in specs] == [1e-4, 5e-4]
    assert all(s.train_cfg["max_examples"] == s.train_cfg["n_train"] == 2048 for s in specs)
    assert all((s.seq_len, s.num_kv_pairs, s.vocab_size, s.d_model) == (128, 4, 256, 48) for s in specs)
    assert specs[0].test_lens == (256,)


def test_attention_gets_its_short_conv_in_retrieval_wherever_it_appears() -> None:
    specs = {c.spec.model: c.spec for c in build("retrieval", Options(lens=[64], d_models=[32])).cells}
    assert specs["attention"].configs == {"M": {"d_conv": 4}}
    assert specs["mamba-attn"].configs == {"A": {"d_conv": 4}}
    assert specs["mamba"].configs == {}


def test_a_length_filter_that_selects_no_cell_names_the_grid_s_lengths() -> None:
    with pytest.raises(SuiteError, match="no cell of the retrieval grid of mqar on cpu has length 96, 1024; "
                                         "its lengths: 64, 128, 256"):
        build("retrieval", Options(lens=[96, 1024]))
    plan = build("quick", Options(lens=[96]))  # the scaling part takes any length: a note, not an error
    assert plan.cells and "its lengths: 128" in plan.notes[0]
