"""Learning curves read as evidence (bench/report/learning.py): each class from a curve that has it, the
answer prior measured from the task, sample efficiency; and the per-layer diagnostics a curve carries."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from archbench.bench.experiments.diagnostics import watch
from archbench.bench.report.cells import best_lr_text, lr_edge
from archbench.bench.report.learning import answer_prior, classify, combine, examples_to

CHANCE, PRIOR = 1 / 128, math.log(128)
EX = [5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000]


def curve(acc: list[float], loss: list[float]) -> dict:
    return {"examples": EX[:len(acc)], "accuracy": acc, "loss": loss}


@pytest.mark.parametrize("acc, loss, stopped, want", [
    ([0.1, 0.5, 0.92], [3, 1, 0.3], False, "learned"),
    ([0.1, 0.5, 0.8], [3, 1, 0.5], True, "learned"),  # stopped early at its target
    ([0.008] * 8, [4.85, 4.84, 4.85, 4.83, 4.84, 4.85, 4.84, 4.83], False, "plateau"),
    ([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.1, 0.15], [4.8, 4.7, 4.6, 4.5, 4.4, 4.3, 4.1, 3.9], False,
     "rising"),
    # accuracy flat but the loss still falling in the last quarter: still rising, not capacity
    ([0.3, 0.4, 0.45, 0.46, 0.46, 0.46, 0.46, 0.46], [3, 2.5, 2.3, 2.2, 2.1, 2.0, 1.9, 1.8], False, "rising"),
    ([0.3, 0.4, 0.45, 0.46, 0.46, 0.46, 0.46, 0.46], [3, 2.5, 2.3, 2.2, 2.2, 2.2, 2.2, 2.2], False, "flat"),
    ([0.3], [2.0], False, "no curve"),
])
def test_each_class_from_a_curve_that_has_it(acc, loss, stopped, want) -> None:
    assert classify(curve(acc, loss), acc[-1], stopped, CHANCE, PRIOR) == want


def test_a_diverged_loss_near_chance_is_the_plateau_not_a_result() -> None:
    assert classify(curve([0.008, 0.007], [None, None]), 0.007, False, CHANCE, PRIOR) == "plateau"


def test_answer_prior_of_mqar_is_uniform_over_the_values() -> None:
    chance, prior = answer_prior("mqar", {"seq_len": 64, "num_kv_pairs": 8, "vocab_size": 256})
    assert prior == pytest.approx(math.log(128), abs=0.01)  # values: V/2 tokens, uniform
    assert 1 / 128 <= chance < 1.5 / 128


def test_examples_to_a_threshold_and_seeds_combined() -> None:
    c = curve([0.1, 0.55, 0.8, 0.95], [3, 2, 1, 0.2])
    assert (examples_to(c, 0.5), examples_to(c, 0.9), examples_to(c, 0.99)) == (10_000, 20_000, None)
    assert combine(["learned", "learned"]) == "learned" and combine(["learned", "plateau"]) == "mixed"


def test_layer_stats_see_a_constant_output_and_a_varied_one() -> None:
    torch.manual_seed(0)
    const, varied = torch.nn.Linear(4, 8), torch.nn.Linear(4, 8)
    with torch.no_grad():
        const.weight.zero_()
        const.bias.fill_(2.0)
    with watch([const, varied]) as stats:
        x = torch.randn(16, 32, 4)
        const(x), varied(x)
    share, rms = stats.const_share(), stats.rms()
    assert share[0] == pytest.approx(1.0) and rms[0] == pytest.approx(2.0)
    assert share[1] < 0.5
    assert not const._forward_hooks  # hooks gone afterwards


def test_curve_labels_keep_only_what_tells_runs_apart_within_a_family() -> None:
    from archbench.bench.report.curves import _within_family

    assert _within_family("gated_deltanet · zoology recipe", "gated_deltanet") == "zoology recipe"
    assert _within_family("gated_deltanet output_gate=sigmoid", "gated_deltanet") == "output_gate=sigmoid"
    assert _within_family("mamba2 · warmup_frac=0", "mamba2") == "warmup_frac=0"


@pytest.mark.parametrize(("lr", "cls", "tried", "edge"), [
    (4.64e-4, "rising", 3, "lowest"), (1e-2, "plateau", 3, "highest"), (2.15e-3, "rising", 3, ""),
    (4.64e-4, "learned", 3, ""), (1e-2, "rising", 1, "")])
def test_a_best_lr_at_the_end_of_its_sweep_is_named_where_a_cell_did_not_learn(lr, cls, tried,
                                                                               edge) -> None:
    low, high = (4.64e-4, 1e-2) if tried > 1 else (lr, lr)
    r = pd.Series({"_lr": lr, "learn_class": cls, "lrs_tried": tried, "lr_lowest": low, "lr_highest": high})
    assert lr_edge(r) == edge
    assert best_lr_text(r) == f"{lr:g}" + (f", {edge}" if edge else "")
