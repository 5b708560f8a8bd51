"""The retrieval training loop (bench/experiments/train.py): loss falls, runs repeat, held-out rows
are unseen."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from helpers.runs import TINY_TRAIN

from archbench.archs import LM, list_archs, resolve_model
from archbench.bench.experiments.recipes import zoology_init
from archbench.bench.experiments.retrieval import RetrievalResult
from archbench.bench.experiments.train import (
    TrainConfig,
    lr_at,
    make_datasets,
    make_test_set,
    param_groups,
    train_and_evaluate,
)
from archbench.tasks import create
from archbench.tasks.base import IGNORE, Task


def attention(depth: int = 1, d_model: int = 32, mlp_ratio: int = 4):
    return resolve_model("attention", depth, d_model, mlp_ratio=mlp_ratio)


@dataclass(frozen=True)
class TinyConfig:
    seq_len: int = 4
    vocab_size: int = 3


class Tiny(Task):
    """Stand-in task with only V^L = 81 distinct rows, so a train and a test set drawn at random
    would overlap: the last position must recall the first token."""

    name = "tiny"
    Config = TinyConfig

    def make(self, n_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, self.cfg.vocab_size, size=(n_examples, self.cfg.seq_len))  # (N, L)
        y = np.full_like(x, IGNORE)
        y[:, -1] = x[:, 0]
        return x, y


def small_mqar(**kw):
    return create("mqar", **{"seq_len": 32, "num_kv_pairs": 2, "vocab_size": 32, **kw})


QUICK = TrainConfig(lr=3e-3, batch_size=32, max_examples=3200, n_train=1600, eval_every=640,
                    n_eval=128, n_test=256, target_accuracy=2.0)


def test_loss_falls():
    task = small_mqar()
    row = train_and_evaluate(attention(), task, QUICK)
    losses = row["curve"]["loss"]
    assert len(losses) >= 3
    assert losses[-1] < 0.8 * losses[0], losses
    assert row["final_loss"] < math.log(task.vocab_size)  # below the loss of a uniform guess
    assert row["accuracy"] > 2 / task.vocab_size  # well above chance (values are V/2 tokens)


def test_same_seed_same_row_and_global_rng_untouched():
    cfg = dataclasses.replace(QUICK, max_examples=640, eval_every=320, n_test=64)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    rows = [train_and_evaluate(attention(), small_mqar(), cfg, test_lens=(48,)) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert json.dumps(np.random.get_state()[1].tolist()) == json.dumps(np_state[1].tolist())
    for row in rows:
        row.pop("train_seconds")
    assert rows[0] == rows[1]
    other = train_and_evaluate(attention(), small_mqar(), dataclasses.replace(cfg, seed=1))
    assert other["curve"]["loss"] != rows[0]["curve"]["loss"]


def test_dropout_does_not_make_a_row_depend_on_what_ran_before_it():
    """Embedding dropout draws from torch's global RNG: whatever an earlier cell of the same process left
    in it must not change this cell's row (the zoology recipe trains with dropout 0.1)."""
    cfg = dataclasses.replace(QUICK, max_examples=640, eval_every=320, n_test=64, embed_dropout=0.1)
    rows = []
    for earlier in (123, 456):
        torch.manual_seed(earlier)
        torch.rand(7)  # an earlier cell's draws
        rows.append(train_and_evaluate(attention(), small_mqar(), cfg))
        rows[-1].pop("train_seconds")
    assert rows[0] == rows[1]


def test_held_out_set_never_repeats_a_training_row():
    task = Tiny()
    cfg = TrainConfig(n_train=40, n_test=20)
    train_x, _, test_x, test_y = make_datasets(task, cfg)
    seen = {r.tobytes() for r in train_x}
    assert len(test_x) == len(test_y) == 20
    assert not any(r.tobytes() in seen for r in test_x)
    # the check is not vacuous: drawn without exclusion, the same test stream does overlap
    plain_x, _ = make_test_set(task, 20, cfg.seed)
    assert any(r.tobytes() in seen for r in plain_x)
    # a task with too few distinct rows says so instead of looping forever
    every_row = {np.array(r, dtype=np.int64).tobytes() for r in itertools.product(range(3), repeat=4)}
    with pytest.raises(ValueError, match="distinct rows"):
        make_test_set(task, 5, 0, exclude=every_row)


def test_test_set_at_a_length_does_not_depend_on_other_lengths():
    task = small_mqar()
    a, _ = make_test_set(task.with_length(48), 16, seed=3)
    b, _ = make_test_set(task.with_length(48), 16, seed=3)
    c, _ = make_test_set(task.with_length(64), 16, seed=3)
    assert np.array_equal(a, b) and a.shape != c.shape


def test_figures_are_a_retrieval_result():
    task = small_mqar()
    cfg = dataclasses.replace(QUICK, max_examples=320, eval_every=160, n_test=64)
    seen = []
    out = train_and_evaluate(attention(), task, cfg, test_lens=(32, 64),
                             progress=lambda f, info: seen.append(f))
    result = RetrievalResult(**out)  # exactly the Result's fields: a missing or extra one raises here
    json.dumps(out, allow_nan=False)  # rows are strict JSON
    resolved_defaults = {"head_dim": 16, "rope_base": 10000.0, "d_conv": 0}
    assert result.resolved_configs == {"M": resolved_defaults}  # what ran, defaults filled in
    assert result.test_len == 64
    assert set(result.accuracy_by_len) == {"32", "64"} and result.accuracy_by_len["32"] == result.accuracy
    assert set(result.accuracy_by_slice) == {"query_1", "query_2"}
    assert result.steps == 10 and result.examples_seen == 320 and not result.stopped_early
    model = LM(attention(), task.vocab_size)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.state_bytes == model.state_bytes(1, 32)
    assert result.backend == "sdpa"
    assert 0 < seen[0] < seen[-1] == 1.0


def test_early_stop_at_target_accuracy():
    cfg = dataclasses.replace(QUICK, target_accuracy=0.0, eval_every=64)
    row = train_and_evaluate(attention(), small_mqar(), cfg)
    assert row["stopped_early"] and row["steps"] == 2 and row["examples_seen"] == 64


def test_train_config_round_trips_through_json():
    cfg = TrainConfig(lr=3e-4, betas=(0.9, 0.95), seed=7)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1.0, batch_size=1, max_examples=100, warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.total_steps)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_weight_decay_skips_norms_biases_and_dynamics_parameters():
    model = LM(attention(), 16)
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    assert id(model.embed.weight) in decayed and id(model.head.weight) in decayed
    assert id(model.norm.weight) not in decayed and id(model.backbone.blocks[0].mlp.up.bias) not in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_zoology_recipe_is_zoologys_trainer():
    cfg = TrainConfig.for_recipe("zoology", lr=1.0, batch_size=10, max_examples=400, n_train=100, n_test=50)
    assert (cfg.recipe, cfg.eval_every, cfg.n_eval) == ("zoology", 100, 50)  # evaluated on all, once an epoch
    assert (cfg.grad_clip, cfg.tie_head, cfg.decay, cfg.shuffle) == (0.0, True, "all", False)
    lrs = [lr_at(s, cfg) for s in range(cfg.total_steps)]  # 4 epochs of 10 steps, cosine per epoch to 0
    assert lrs[:10] == [1.0] * 10 and lrs[10] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert len(set(lrs)) == 4 and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))
    with pytest.raises(ValueError, match="choose from: archbench, zoology"):
        TrainConfig.for_recipe("nanogpt")
    with pytest.raises(ValueError, match="choose from: warmup_cosine, cosine_epochs"):
        TrainConfig(schedule="linear")


def test_zoology_init_ties_the_head_and_scales_output_projections():
    torch.manual_seed(0)
    model = LM(resolve_model("mamba2", 2, 64), 256, tie_head=True)
    zoology_init(model, 2)
    assert model.head.weight is model.embed.weight
    out = model.backbone.blocks[0].mixer.out_proj.weight
    inp = model.backbone.blocks[0].mixer.in_proj.weight
    assert inp.std().item() == pytest.approx(0.02, rel=0.05)
    assert out.std().item() == pytest.approx(0.01, rel=0.05)  # 0.02 / sqrt(2 * 2 layers)
    (every,) = param_groups(model, 0.1, "all")
    a_log = model.backbone.blocks[0].mixer.A_log
    assert any(p is a_log for p in every["params"]) and len(every["params"]) == len(list(model.parameters()))


def test_unshuffled_epochs_and_layer_diagnostics_in_the_curve():
    cfg = TrainConfig.for_recipe("zoology", batch_size=8, max_examples=32, n_train=16, n_test=8)
    task = create("mqar", seq_len=16, num_kv_pairs=2, vocab_size=16)
    row = train_and_evaluate(resolve_model("gated_deltanet", 2, 16), task, cfg)
    curve = row["curve"]
    assert curve["examples"] == [16, 32]  # evaluated once per epoch
    assert [len(v) for v in curve["layer_rms"]] == [2, 2]
    assert all(0 <= s <= 1 for s in curve["const_share"][0])


@pytest.mark.parametrize("model", [*list_archs(), "mamba-attn"])
def test_every_mixer_and_a_hybrid_trains_a_step(model: str):
    cfg = TINY_TRAIN
    task = create("mqar", seq_len=16, num_kv_pairs=2, vocab_size=16)
    row = train_and_evaluate(resolve_model(model, 2, 16), task, cfg, test_lens=(24,))
    assert row["steps"] == 2 and math.isfinite(row["final_loss"]) and row["backend"]
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["accuracy_by_len"]["24"] <= 1
    json.dumps(row, allow_nan=False)
