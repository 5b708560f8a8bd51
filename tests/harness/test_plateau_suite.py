"""The plateau suite (bench/grids/plateau.py): its cells are the controlled comparisons it promises — the
failing cells at three lrs, one change per candidate at the baseline lr, Zoology's recipe at its four
lrs — and it refuses the options it fixes in one line."""

from __future__ import annotations

import dataclasses

import pytest

from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import Params, plan, plateau
from archbench.bench.runs.schema import cell_key


def test_cells_are_controlled_comparisons() -> None:
    parts = plateau.cells(Params())
    keys = [cell_key(c.spec) for _, c in parts]
    assert len(keys) == len(set(keys))  # no cell twice
    lrs = [c.spec for p, c in parts if p == "lrs"]
    for name, _ in plateau.FAILING:
        assert sorted(s.lr for s in lrs if s.model.name == name) == sorted(plateau.LRS)
    base = {k: v for k, v in TrainConfig(**{**dataclasses.asdict(plateau.TRAIN), "lr": plateau.LRS[0]})
            .to_dict().items()}
    for _, cell in [pc for pc in parts if pc[0] == "candidates"]:
        spec = cell.spec
        changed = {k for k, v in spec.train.to_dict().items() if base[k] != v}
        # one change each: a train field, or the model (MLPs, the gate) — never two at once
        assert len(changed - {"lr"}) + (spec.model.mlp_ratio > 0) + (spec.model.name == "gated_deltanet" and
                                                             "output_gate" in str(spec.model.configs)) <= 1
    zoo = [c.spec for p, c in parts if p == "recipes"]
    assert {s.recipe for s in zoo} == {"zoology"} and len({s.lr for s in zoo}) == 4
    assert [c.spec.model.name for c in plan("plateau", Params(models=["mamba2"])).cells] and \
        all(c.spec.model.name == "mamba2" for c in plan("plateau", Params(models=["mamba2"])).cells)


@pytest.mark.parametrize("flag", [["--lens", "64"], ["--lrs", "1e-3"], ["--vocab-size", "64"]])
def test_options_it_fixes_are_refused_in_one_line(flag, cli, tmp_path) -> None:
    code, _, err = cli("run", "plateau", *flag, "--out", str(tmp_path))
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and "takes --models" in err[0] and flag[0] in err[0]


def test_attention_last_cells_put_back_one_archbench_choice_each_into_the_remedy() -> None:
    import dataclasses

    cells = [c.spec for p, c in plateau.cells(Params()) if p == "attention-last"]
    small = [s for s in cells if s.vocab_size == 256]
    confirm = [s for s in cells if s.vocab_size == 1024]
    assert len(small) == len(plateau.PUT_BACK)
    assert len(confirm) == 2 * len(plateau.PUT_BACK_CONFIRM) and {s.seed for s in confirm} == {0, 1}
    archbench = TrainConfig().to_dict()
    examples = plateau.V1024_EXAMPLES
    long = dataclasses.replace(plateau.TRAIN, max_examples=examples, n_train=examples)
    for spec in cells:
        assert spec.model.name == plateau.ATTENTION_LAST[0]
        base = plateau.TRAIN if spec.vocab_size == 256 else long
        remedy = dataclasses.replace(plateau.remedy(base, plateau.REMEDY_LRS[-1]), seed=spec.seed).to_dict()
        train = spec.train.to_dict()
        changed = {k for k, v in train.items() if remedy[k] != v}
        assert len(changed) == 1 and all(train[k] == archbench[k] for k in changed), changed
