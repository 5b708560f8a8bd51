"""The plateau suite: why gated recurrent families and attention-late hybrids stall on MQAR's
answer-prior plateau (loss ln(#values), accuracy at chance), tested one candidate cause at a time.

Written as data: `archbench run plateau`. Every cell trains on one cheap MQAR point (V = 256, n = 64,
K = 8, 40k examples: a Mamba-2 cell takes a minute or two on one core) and keeps its learning curve and
per-layer diagnostics (bench/experiments/diagnostics.py), so the report can say for each candidate
whether the cell learned, is still rising, or sat on the plateau (bench/report/learning.py). The
methods note (results/METHODS.md) reads its tables.

Parts, in run order:
    lrs         the failing cells at three learning rates: the baseline every candidate is read against
    candidates  one change each, at the baseline's middle lr: optimiser (warm-up, betas, clipping,
                weight decay, the lr's decay), head and initialisation (tied head, Zoology's init),
                blocks (MLPs), and the output gate (Gated DeltaNet's swish gate against a sigmoid one
                and none)
    seeds       the baseline and the first candidate at seed 1: the spread a candidate must beat
    recipes     Zoology's recipe on the same cells at its own four lrs
    peer        archbench's attention without its short conv under the zoology recipe: the cell laid
                beside Zoology's own trainer run on the same rows (the methods note has both curves)
    v1024       the frontier's point (V = 1024) with twice its budget, at two lrs: does the plateau end?

Glossary: n = seq_len, K = num_kv_pairs, V = vocab_size, lr learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from archbench.archs import resolve_model
from archbench.bench.experiments import model_fields
from archbench.bench.experiments.recipes import RECIPE_LRS
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs.cell import Cell

MQAR = dict(seq_len=64, num_kv_pairs=8, vocab_size=256)
TRAIN = TrainConfig(batch_size=64, max_examples=40_000, n_train=40_000, eval_every=5_000,
                    target_accuracy=0.99)
LRS = (3e-3, 1e-2, 1e-3)  # the first is the candidates' lr
ATTENTION_CFG = {"attention": {"d_conv": 4}}  # Zoology's short conv before q/k/v, as the other suites
# (model, depth): the cells the plateau was seen on (issue 21) and two that escape it, for contrast.
FAILING = (("mamba2", 2), ("gated_deltanet", 2), ("RRRX:R=mamba2,X=attention", 4))
CONTRAST = (("deltanet", 2), ("XRRR:R=mamba2,X=attention", 4))
CANDIDATE_MODELS = (("mamba2", 2), ("gated_deltanet", 2))

# One change each: (label, TrainConfig fields, mixer configs by mixer name, MLP ratio).
CANDIDATES: tuple[tuple[str, dict[str, Any], dict[str, dict[str, Any]], int], ...] = (
    ("no warm-up", {"warmup_frac": 0.0}, {}, 0),
    ("warm-up 30%", {"warmup_frac": 0.3}, {}, 0),
    ("betas (0.9, 0.95)", {"betas": (0.9, 0.95)}, {}, 0),
    ("no clipping", {"grad_clip": 0.0}, {}, 0),
    ("decay every parameter", {"decay": "all"}, {}, 0),
    ("no weight decay", {"weight_decay": 0.0}, {}, 0),
    ("tied head", {"tie_head": True}, {}, 0),
    ("Zoology init", {"init": "zoology"}, {}, 0),
    ("MLP ratio 4", {}, {}, 4),
    ("constant lr after warm-up", {"min_lr_frac": 1.0}, {}, 0),
)
# The spread the candidates are read against: the baseline and the first candidate again at seed 1.
SEED_CHECKS = ({}, {"warmup_frac": 0.0})
GATE_ABLATIONS = ({"output_gate": "sigmoid"}, {"output_gate": "none"})  # Gated DeltaNet's output gate
# The peer check: Zoology's own trainer ran its Figure-2 attention (no short conv, learned positions) on
# this MQAR data with n_train 10k for 4 epochs; archbench's attention without its short conv under the
# zoology recipe, on the same rows, is the cell to lay beside it.
PEER = ("attention", 2, {"attention": {"d_conv": 0}})
PEER_N_TRAIN = 10_000
V1024 = dict(MQAR, vocab_size=1024)
V1024_EXAMPLES = 80_000
V1024_LRS = (3e-3, 1e-3)


def _cell(name: str, depth: int, task_cfg: dict, train: TrainConfig, configs: dict | None = None,
          mlp_ratio: int = 0) -> Cell:
    mixer_cfgs = {k: dict(v) for k, v in ATTENTION_CFG.items()}
    for mixer, fields in (configs or {}).items():
        mixer_cfgs[mixer] = {**mixer_cfgs.get(mixer, {}), **fields}
    fields = model_fields(resolve_model(name, depth, 64, mlp_ratio, mixer_cfgs))
    return Cell("retrieval", RetrievalSpec(**fields, task="mqar", task_cfg=dict(task_cfg),
                                           test_lens=(task_cfg["seq_len"] * 2,),
                                           train_cfg=dataclasses.asdict(train), device="cpu",
                                           dtype="float32", seed=train.seed))


def plateau_parts(models: list[str] | None = None) -> list[tuple[str, Cell]]:
    """(part, cell) of the plateau suite in run order; `models` keeps only those model names."""
    def want(name: str) -> bool:
        return models is None or name in models

    cells: list[tuple[str, Cell]] = []

    def lr_cells(lrs: tuple[float, ...]) -> None:
        for lr in lrs:
            for name, depth in FAILING + CONTRAST:
                if want(name):
                    cells.append(("lrs", _cell(name, depth, MQAR, dataclasses.replace(TRAIN, lr=lr))))

    lr_cells(LRS[:1])  # the candidates' baseline first, then the candidates, then the other lrs
    base = dataclasses.replace(TRAIN, lr=LRS[0])
    for _, train_fields, configs, mlp in CANDIDATES:
        for name, depth in CANDIDATE_MODELS:
            if want(name):
                train = dataclasses.replace(base, **train_fields)
                cells.append(("candidates", _cell(name, depth, MQAR, train, configs, mlp)))
    if want("gated_deltanet"):
        for gate in GATE_ABLATIONS:
            for lr in LRS:
                train = dataclasses.replace(TRAIN, lr=lr)
                gated = _cell("gated_deltanet", 2, MQAR, train, {"gated_deltanet": gate})
                cells.append(("candidates", gated))
    for train_fields in SEED_CHECKS:
        for name, depth in CANDIDATE_MODELS:
            if want(name):
                train = dataclasses.replace(base, seed=1, **train_fields)
                cells.append(("seeds", _cell(name, depth, MQAR, train)))
    lr_cells(LRS[1:])
    for lr in RECIPE_LRS["zoology"]:
        zoology = TrainConfig.for_recipe("zoology", lr=lr, batch_size=TRAIN.batch_size, n_test=TRAIN.n_test,
                                         max_examples=TRAIN.max_examples, n_train=PEER_N_TRAIN)
        for name, depth in CANDIDATE_MODELS:
            if want(name):
                cells.append(("recipes", _cell(name, depth, MQAR, zoology)))
        if want(PEER[0]):
            cells.append(("peer", _cell(PEER[0], PEER[1], MQAR, zoology, PEER[2])))
    long = dataclasses.replace(TRAIN, max_examples=V1024_EXAMPLES, n_train=V1024_EXAMPLES)
    for lr in V1024_LRS:
        for name, depth in FAILING:
            if want(name):
                cells.append(("v1024", _cell(name, depth, V1024, dataclasses.replace(long, lr=lr))))
    return cells
