"""The frontier suite's grid (bench/grids/frontier.py): what runs, in which order, and what it refuses."""

from __future__ import annotations

import collections

import pytest

from archbench.archs import list_archs, resolve_model
from archbench.bench.grids import GridError, Params, frontier, plan


def _cells(**options):
    return plan("frontier", Params(**options)).cells


def _layers(model) -> tuple[str, ...]:
    return tuple(model.mixers[c] for c in model.pattern)


def test_every_family_has_headline_cells_at_every_lr_before_any_state_sweep() -> None:
    cells = [c for c in _cells() if c.kind == "retrieval" and c.spec.task.name == "mqar"]
    heads = collections.defaultdict(set)
    first_sweep = None
    for i, c in enumerate(cells):
        v = c.spec.task.config["vocab_size"]
        if c.spec.model.depth == frontier.RECALL_DEPTH and c.spec.seed == 0 and v == 1024:
            knobs = frontier.STATE_KNOBS.get(c.spec.model.name, ({},))
            letter = next(iter(c.spec.model.mixers))
            own = {k: v for k, v in c.spec.model.configs.get(letter, {}).items() if k != "d_conv"}
            if own == knobs[0]:
                heads[c.spec.model.name].add(c.spec.lr)
            elif first_sweep is None:
                first_sweep = i
    assert set(heads) == set(list_archs())
    assert all(lrs == set(frontier.CPU_GRID.lrs) for lrs in heads.values()), heads
    assert len(frontier.CPU_GRID.lrs) >= 3
    head_positions = [i for i, c in enumerate(cells)
                      if c.spec.seed == 0 and c.spec.model.depth == 2][:len(heads)]
    assert max(head_positions) < first_sweep  # a run cut short has the headline first


def test_state_sweeps_change_the_measured_state_bytes_within_a_family() -> None:
    from archbench.archs import LM

    for family, knobs in frontier.STATE_KNOBS.items():
        sizes = {LM(resolve_model(family, 2, 64, 0, frontier._config_for(family, k)), 64).state_bytes(1, 64)
                 for k in knobs}
        assert len(sizes) == len(knobs), (family, sizes)


def test_headline_cells_run_at_a_second_seed() -> None:
    cells = [c for c in _cells() if c.kind == "retrieval" and c.spec.task.name == "mqar"]
    seeds = collections.defaultdict(set)
    for c in cells:
        if c.spec.model.depth == 2:
            seeds[c.spec.model.name].add(c.spec.seed)
            assert c.spec.seed == c.spec.train.seed
    assert all(s == {0, 1} for s in seeds.values()), seeds


def test_every_cpu_recall_cell_a_front_can_take_is_swept_over_enough_lrs() -> None:
    """The frontier report puts a cell on a front only from a sweep of >= MIN_LRS lrs: every MQAR model
    of the CPU grid at seed 0 (headline, state sweep, hybrids, ablations) must have one."""
    from archbench.bench.report.frontier import MIN_LRS

    lrs = collections.defaultdict(set)
    for c in _cells():
        if c.kind == "retrieval" and c.spec.task.name == "mqar" and c.spec.seed == 0:
            m = c.spec.model
            lrs[m.name, m.depth, str(m.configs), c.spec.task.config["vocab_size"]].add(c.spec.lr)
    assert lrs and all(len(v) >= MIN_LRS for v in lrs.values()), {k: v for k, v in lrs.items() if len(v) < 3}
    assert all(v == {0.02} for _, v in _lrs_of(_cells(lrs=[0.02])))  # --lrs names the lrs of every part


def _lrs_of(cells):
    out = collections.defaultdict(set)
    for c in cells:
        if c.kind == "retrieval":
            out[c.spec.model.name, str(c.spec.model.configs), c.spec.task.name].add(c.spec.lr)
    return out.items()


def test_cpu_recall_cells_train_under_the_zoology_recipe_in_four_epochs() -> None:
    train = [c.spec.train.to_dict() for c in _cells() if c.kind == "retrieval"]
    assert {t["recipe"] for t in train} == {"zoology"}
    assert {t["max_examples"] // t["n_train"] for t in train} == {4}
    short = [c.spec.train.to_dict() for c in _cells(max_examples=8000, models=["mamba2"])
             if c.kind == "retrieval"]
    # --max-examples keeps the four epochs
    assert {(t["max_examples"], t["n_train"]) for t in short} == {(8000, 2000)}


def test_the_small_state_variants_have_keys_narrower_than_the_grid_k() -> None:
    """Capacity binds only where K exceeds the key width: the smallest head of every head-sized family."""
    k = frontier.CPU_GRID.mqar["num_kv_pairs"]
    for family, knobs in frontier.STATE_KNOBS.items():
        if len(knobs) > 1 and "head_dim" in knobs[1]:
            assert knobs[1]["head_dim"] < k, family


def test_hybrid_placements_are_distinct_models_and_presets_keep_their_names() -> None:
    names = frontier.hybrid_models()
    layers = [_layers(resolve_model(n, 4, 8)) for n in names]
    assert len(set(layers)) == len(layers)  # no model twice under two names
    for preset in frontier.HYBRID_PRESETS:
        assert preset in names
    assert "RRRX:R=gated_deltanet,X=attention" not in names  # that is qwen3-next
    counts = {sum(m in ("attention", "swa") for m in ls) for ls in layers}
    assert counts == {0, 1, 2, 4}


def test_every_recall_model_has_its_cost_cells() -> None:
    cells = _cells()
    recall = {(c.spec.model.name, c.spec.model.depth, str(c.spec.model.configs)) for c in cells
              if c.kind == "retrieval" and c.spec.task.name == "mqar"
              and c.spec.task.config["vocab_size"] == 1024}
    cost = collections.Counter((c.spec.model.name, c.spec.model.depth, str(c.spec.model.configs))
                               for c in cells
                               if c.kind == "scaling")
    assert recall == set(cost)
    assert set(cost.values()) == {2 * len(frontier.CPU_GRID.cost_lens)}  # prefill and decode at each n


def test_task_none_keeps_only_cost_cells_and_modes_pick_them() -> None:
    cells = _cells(task="none", modes=["prefill"])
    assert cells and {c.kind for c in cells} == {"scaling"} and {c.spec.mode for c in cells} == {"prefill"}
    only = _cells(task="passkey", models=["attention"])
    kinds = {(c.kind, c.spec.task.name if c.kind == "retrieval" else None) for c in only}
    assert kinds == {("retrieval", "passkey"), ("scaling", None)}
    assert all(c.spec.test_lens == (128, 256, 512) for c in only if c.kind == "retrieval")


@pytest.mark.parametrize("option", [{"lens": [64]}, {"depth": 2}, {"vocab_size": 64}, {"batch": 2}])
def test_options_the_grid_fixes_are_refused_by_name(option) -> None:
    with pytest.raises(GridError, match="frontier grid fixes --"):
        _cells(**option)


def test_gpu_grid_is_zoology_scale_with_four_lrs_everywhere() -> None:
    cells = _cells(device="cuda")
    mqar = [c for c in cells if c.kind == "retrieval" and c.spec.task.name == "mqar"]
    assert {c.spec.task.config["vocab_size"] for c in mqar} == {8192}
    by_model = collections.defaultdict(set)
    for c in mqar:
        key = (c.spec.model.name, c.spec.model.depth, str(c.spec.model.configs), c.spec.model.d_model,
               c.spec.seed)
        by_model[key].add(c.spec.lr)
    assert all(len(lrs) == 4 for lrs in by_model.values())
    assert {c.spec.model.d_model for c in mqar} == set(frontier.GPU_GRID.d_models)


def test_every_family_at_every_lr_comes_before_the_hybrids_and_they_before_the_state_sweep() -> None:
    cells = [c for c in _cells() if c.kind == "retrieval"]
    n = len(list_archs())
    assert {c.spec.model.name for c in cells[:n]} == set(list_archs())
    assert {c.spec.lr for c in cells[:n]} == {frontier.CPU_GRID.lrs[0]}
    heads_done = n * len(frontier.CPU_GRID.lrs)
    assert all(c.spec.model.depth == frontier.RECALL_DEPTH and c.spec.seed == 0 for c in cells[:heads_done])
    hybrid_at = [i for i, c in enumerate(cells)
                 if c.spec.model.depth == frontier.HYBRID_DEPTH and c.spec.task.name == "mqar"]
    sweep_at = [i for i, c in enumerate(cells) if c.spec.task.name == "mqar" and c.spec.model.depth == 2
                and c.spec.seed == 0 and i >= heads_done
                and not c.spec.model.name.startswith(("gated_deltanet", "mamba2"))]
    assert min(hybrid_at) == heads_done and max(hybrid_at) < min(sweep_at)


def test_training_compiles_only_where_it_pays_on_cpu() -> None:
    cells = [c for c in _cells() if c.kind == "retrieval"]
    compiled = {c.spec.model.name: c.spec.train.compile for c in cells if c.spec.task.name == "mqar"}
    assert compiled["mamba2"] and compiled["gated_deltanet"] and compiled["qwen3-next"]
    assert not compiled["mamba"] and not compiled["attention"] and not compiled["swa"]
    assert not compiled["samba"]  # Mamba-1 inside: the slowest layer would get slower
    # the other tasks' cells each compile a graph no other cell shares: eager on CPU
    assert not any(c.spec.train.compile for c in cells if c.spec.task.name != "mqar")
    assert all(c.spec.train.compile for c in _cells(device="cuda") if c.kind == "retrieval")


def test_max_examples_and_d_model_reach_every_part() -> None:
    """`--max-examples` and `--d-model` replace the grid's budget and width in every part: the headline,
    hybrids, the other tasks and the V = 8192 slice alike, and the cost cells of those models."""
    cells = plan("frontier", Params(max_examples=512, d_models=[16])).cells
    parts = plan("frontier", Params(max_examples=512, d_models=[16])).parts
    assert {"v8192", "passkey", "copy", "hybrids", "cost"} <= set(parts)
    assert {c.spec.model.d_model for c in cells} == {16}
    assert {c.spec.train.max_examples for c in cells if c.kind == "retrieval"} == {512}
    default = plan("frontier", Params())
    widths = {(part, c.spec.model.d_model) for part, c in zip(default.parts, default.cells, strict=True)}
    assert {w for _, w in widths} == {frontier.D_MODEL}  # without the flag, the grid's own width


@pytest.mark.parametrize("flags, named", [
    ({"models": ["jamba"]}, ["its models: ", "mamba2", "qwen3-next", "RRRX:R=mamba2,X=attention"]),
    ({"task": "none", "modes": ["train"]}, ["its modes: prefill, decode"]),
    ({"models": ["attention"], "task": "none", "modes": ["train"]}, ["its modes: prefill, decode"]),
])
def test_flags_that_leave_no_cell_name_what_the_grid_has(flags, named) -> None:
    with pytest.raises(GridError, match="grid frontier has no cells with") as err:
        plan("frontier", Params(**flags))
    message = str(err.value)
    assert all(text in message for text in named), message
    assert "\n" not in message
