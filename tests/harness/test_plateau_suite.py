"""The plateau suite (bench/runs/plateau.py): its cells are the controlled comparisons it promises — the
failing cells at three lrs, one change per candidate at the baseline lr, Zoology's recipe at its four
lrs — and it refuses the options it fixes in one line."""

from __future__ import annotations

import dataclasses

import pytest

from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs import plateau
from archbench.bench.runs.schema import cell_key
from archbench.bench.runs.suites import Options, build, plateau_parts


def test_cells_are_controlled_comparisons() -> None:
    parts = plateau_parts(Options())
    keys = [cell_key(c.spec) for _, c in parts]
    assert len(keys) == len(set(keys))  # no cell twice
    lrs = [c.spec for p, c in parts if p == "lrs"]
    for name, _ in plateau.FAILING:
        assert sorted(s.lr for s in lrs if s.model == name) == sorted(plateau.LRS)
    base = {k: v for k, v in TrainConfig(**{**dataclasses.asdict(plateau.TRAIN), "lr": plateau.LRS[0]})
            .to_dict().items()}
    for _, cell in [pc for pc in parts if pc[0] == "candidates"]:
        spec = cell.spec
        changed = {k for k, v in TrainConfig.from_dict(spec.train_cfg).to_dict().items() if base[k] != v}
        # one change each: a train field, or the model (MLPs, the gate) — never two at once
        assert len(changed - {"lr"}) + (spec.mlp_ratio > 0) + (spec.model == "gated_deltanet" and
                                                             "output_gate" in str(spec.configs)) <= 1
    zoo = [c.spec for p, c in parts if p == "recipes"]
    assert {s.recipe for s in zoo} == {"zoology"} and len({s.lr for s in zoo}) == 4
    assert [c.spec.model for c in build("plateau", Options(models=["mamba2"])).cells] and \
        all(c.spec.model == "mamba2" for c in build("plateau", Options(models=["mamba2"])).cells)


@pytest.mark.parametrize("flag", [["--lens", "64"], ["--lrs", "1e-3"], ["--vocab-size", "64"]])
def test_options_it_fixes_are_refused_in_one_line(flag, cli, tmp_path) -> None:
    code, _, err = cli("run", "plateau", *flag, "--out", str(tmp_path))
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and "takes --models" in err[0] and flag[0] in err[0]


def test_attention_last_cells_put_back_one_archbench_choice_each_into_the_remedy() -> None:
    remedy = plateau.remedy(plateau.TRAIN, plateau.REMEDY_LRS[-1]).to_dict()
    cells = [c.spec for p, c in plateau_parts(Options()) if p == "attention-last"]
    assert len(cells) == len(plateau.PUT_BACK)
    archbench = TrainConfig().to_dict()
    for spec in cells:
        assert spec.model == plateau.ATTENTION_LAST[0]
        train = TrainConfig.from_dict(spec.train_cfg).to_dict()
        changed = {k for k, v in train.items() if remedy[k] != v}
        assert len(changed) == 1 and all(train[k] == archbench[k] for k in changed), changed
