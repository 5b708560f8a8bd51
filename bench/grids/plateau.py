"""The plateau suite: why gated recurrent families and attention-late hybrids stall on MQAR's
answer-prior plateau (loss ln(#values), accuracy at chance), tested one candidate cause at a time.

Written as data: `archbench run plateau`. Every cell trains on one cheap MQAR point (V = 256, n = 64,
K = 8, 40k examples: small enough to run a candidate in minutes) and keeps its learning curve and
per-layer diagnostics (bench/experiments/diagnostics.py), so the report can say for each candidate
whether the cell learned, is still rising, or sat on the plateau (bench/report/learning.py). The
methods note (results/METHODS.md) reads its tables.

Parts, in run order:
    lrs         the failing cells at three learning rates: the baseline every candidate is read against
    candidates  one change each, at the baseline's middle lr: optimiser (warm-up, betas, clipping,
                weight decay, the lr's decay), head and initialisation (tied head, Zoology's init),
                blocks (MLPs), and the output gate (the SiLU gate of Gated DeltaNet and Mamba-2 against
                a sigmoid one, and Gated DeltaNet's against none)
    seeds       the baseline and the first candidate at seed 1: the spread a candidate must beat
    recipes     Zoology's recipe on the same cells at its own four lrs
    peer        archbench's attention without its short conv under the zoology recipe: the cell laid
                beside Zoology's own trainer run on the same rows (the methods note has both curves)
    v1024       the frontier's point (V = 1024) with twice its budget, at two lrs: does the plateau end?
    remedy      the chosen remedy (`remedy`) on the failing cells at V = 256 and V = 1024: before/after
    pilot       every family under the remedy at the candidate grid points: where can recall be compared?
    attention-last  the remedy with one of archbench's own choices put back, on the hybrid it leaves
                below its own recurrent part (RRRX, Mamba-2 + attention): each at V = 256, the two
                that lift it again at V = 1024 and two seeds: which choice matters?
    gate-open   the SiLU gate kept, with a learned bias on its input starting it open (SiLU(1) ≈ 0.73,
                one sign for every token) at the three lrs of the gate ablations: is the sigmoid gate's
                advantage that it starts open?

Glossary: n = seq_len, K = num_kv_pairs, V = vocab_size, lr learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from archbench.archs import resolve_model
from archbench.bench.experiments.recipes import RECIPE_LRS
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import GridError, Params
from archbench.bench.grids.common import zoology_budget
from archbench.bench.runs.cell import Cell
from archbench.bench.runs.schema import cell_key
from archbench.tasks import TaskSpec

TAKES = ("models",)  # a fixed set of controlled cells: `--models` may only select among them

MQAR = dict(seq_len=64, num_kv_pairs=8, vocab_size=256)
TRAIN = TrainConfig(batch_size=64, max_examples=40_000, n_train=40_000, eval_every=5_000,
                    target_accuracy=0.99)
LRS = (3e-3, 1e-2, 1e-3)  # the first is the candidates' lr
# Zoology's short conv before q/k/v, as the frontier grid gives both attention kinds
ATTENTION_CFG = {"attention": {"d_conv": 4}, "swa": {"d_conv": 4}}
# (model, depth): cells the plateau was seen on at the frontier's point, and two that escape it.
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
# The output gate's activation, swish (SiLU) in both published layers, against a sigmoid (and none)
GATE_ABLATIONS = (("gated_deltanet", {"output_gate": "sigmoid"}), ("gated_deltanet", {"output_gate": "none"}),
                  ("mamba2", {"gate": "sigmoid"}))
# The peer check: Zoology's own trainer ran its Figure-2 attention (no short conv, learned positions) on
# this MQAR data, 4 epochs of 10k; archbench's attention without its short conv under the zoology recipe
# (`remedy`: the same epochs), on the same rows, is the cell to lay beside it.
PEER = ("attention", 2, {"attention": {"d_conv": 0}})
V1024 = dict(MQAR, vocab_size=1024)
V1024_EXAMPLES = 80_000
V1024_LRS = (3e-3, 1e-3)
# The remedy the candidates chose (results/METHODS.md has the evidence): Zoology's recipe, 4 epochs of
# a quarter of the budget, at its own lrs; on the failing cells at both vocabularies, beside the
# baseline cells above.
REMEDY_EPOCHS = 4
REMEDY_LRS = RECIPE_LRS["zoology"][2:]  # 2.15e-3 and 1e-2: the two the gated cells learn at in `recipes`


def remedy(train: TrainConfig, lr: float) -> TrainConfig:
    """`train`'s budget under the zoology recipe at `lr`."""
    return zoology_budget(train.max_examples, REMEDY_EPOCHS, batch_size=train.batch_size, lr=lr,
                          n_test=train.n_test)


# The pilot for a CPU grid where recall can be compared: every registered family at its default state
# under the remedy at its larger lr, at the candidate grid points (K = 16 exceeds the head size 8 of
# the small-state variants, so their capacity binds).
PILOT_POINTS = ((dict(seq_len=64, num_kv_pairs=16, vocab_size=256), TRAIN.max_examples),
                (MQAR, TRAIN.max_examples), (V1024, V1024_EXAMPLES))  # (task point, examples)


# Under the remedy RRRX (Mamba-2 x3, attention last) recalls less than Mamba-2 x4 at V = 1024, where
# archbench's recipe took it high (results/METHODS.md). Each of these puts one of archbench's choices
# back into the remedy: the one that lifts RRRX is the zoology recipe's cost to it.
ATTENTION_LAST = ("RRRX:R=mamba2,X=attention", 4)
PUT_BACK: tuple[dict[str, Any], ...] = (
    {"warmup_frac": 0.1}, {"grad_clip": 1.0}, {"tie_head": False}, {"embed_dropout": 0.0},
    {"init": "archbench"}, {"decay": "matrices"},
)
# The two that lifted it at V = 256, at the frontier's point and at two seeds: does the explanation hold
# where the hybrid was below its recurrent part?
PUT_BACK_CONFIRM: tuple[dict[str, Any], ...] = ({"init": "archbench"}, {"decay": "matrices"})


# The mechanism the gate ablation suggests, tested on its own: SiLU kept, its input biased so the gate
# starts open (the sigmoid gate starts near 1/2 for every token, SiLU of a centred input near 0).
GATE_OPEN = (("mamba2", {"gate_bias": 1.0}), ("gated_deltanet", {"gate_bias": 1.0}))


def _cell(name: str, depth: int, task_cfg: dict, train: TrainConfig, configs: dict | None = None,
          mlp_ratio: int = 0) -> Cell:
    mixer_cfgs = {k: dict(v) for k, v in ATTENTION_CFG.items()}
    for mixer, fields in (configs or {}).items():
        mixer_cfgs[mixer] = {**mixer_cfgs.get(mixer, {}), **fields}
    return Cell("retrieval", RetrievalSpec(resolve_model(name, depth, 64, mlp_ratio, mixer_cfgs),
                                           TaskSpec("mqar", dict(task_cfg)), train,
                                           test_lens=(task_cfg["seq_len"] * 2,), device="cpu",
                                           dtype="float32", seed=train.seed))


def plateau_parts(models: list[str] | None = None,
                  families: list[str] | None = None) -> list[tuple[str, Cell]]:
    """(part, cell) of the plateau suite in run order; `models` keeps only those model names; the pilot
    part trains each of `families` (the registered mixers)."""
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
    for mixer, gate in GATE_ABLATIONS:
        for lr in LRS:
            if want(mixer):
                train = dataclasses.replace(TRAIN, lr=lr)
                cells.append(("candidates", _cell(mixer, 2, MQAR, train, {mixer: gate})))
    for train_fields in SEED_CHECKS:
        for name, depth in CANDIDATE_MODELS:
            if want(name):
                train = dataclasses.replace(base, seed=1, **train_fields)
                cells.append(("seeds", _cell(name, depth, MQAR, train)))
    lr_cells(LRS[1:])
    for lr in RECIPE_LRS["zoology"]:
        zoology = remedy(TRAIN, lr)  # the recipe is also the remedy: these cells are its V = 256 evidence
        for name, depth in CANDIDATE_MODELS:
            if want(name):
                cells.append(("recipes", _cell(name, depth, MQAR, zoology)))
        if want(PEER[0]):
            cells.append(("peer", _cell(PEER[0], PEER[1], MQAR, zoology, PEER[2])))
    long = dataclasses.replace(TRAIN, max_examples=V1024_EXAMPLES, n_train=V1024_EXAMPLES)

    def remedy_cells(task_cfg: dict, train: TrainConfig, lrs: tuple[float, ...]) -> None:
        for lr in lrs:
            for name, depth in FAILING:
                if want(name):
                    cells.append(("remedy", _cell(name, depth, task_cfg, remedy(train, lr))))

    remedy_cells(MQAR, TRAIN, RECIPE_LRS["zoology"])
    for name, depth in FAILING:  # the remedy's spread: its best lr again at seed 1
        if want(name):
            cells.append(("remedy", _cell(name, depth, MQAR,
                                          dataclasses.replace(remedy(TRAIN, REMEDY_LRS[-1]), seed=1))))
    for task_cfg, examples in PILOT_POINTS:
        budget = dataclasses.replace(TRAIN, max_examples=examples, n_train=examples)
        for name in families or ():
            if want(name):
                cells.append(("pilot", _cell(name, 2, task_cfg, remedy(budget, REMEDY_LRS[-1]))))
    for lr in V1024_LRS:  # the expensive cells last: twice the budget at four times the vocabulary
        for name, depth in FAILING:
            if want(name):
                cells.append(("v1024", _cell(name, depth, V1024, dataclasses.replace(long, lr=lr))))
    remedy_cells(V1024, long, REMEDY_LRS)
    # The hybrid beside its own recurrent part and its attention-first twin, under the remedy at V = 1024:
    # is attention-last below the stack it is made of?
    for name, depth in (("mamba2", 4), ("XRRR:R=mamba2,X=attention", 4)):
        if want(name):
            cells.append(("remedy", _cell(name, depth, V1024, remedy(long, REMEDY_LRS[-1]))))
    for fields in PUT_BACK:
        if want(ATTENTION_LAST[0]):
            train = dataclasses.replace(remedy(TRAIN, REMEDY_LRS[-1]), **fields)
            cells.append(("attention-last", _cell(*ATTENTION_LAST, MQAR, train)))
    for seed in (0, 1):
        for fields in PUT_BACK_CONFIRM:
            if want(ATTENTION_LAST[0]):
                train = dataclasses.replace(remedy(long, REMEDY_LRS[-1]), seed=seed, **fields)
                cells.append(("attention-last", _cell(*ATTENTION_LAST, V1024, train)))
    for mixer, fields in GATE_OPEN:
        for lr in LRS:
            if want(mixer):
                cells.append(("gate-open", _cell(mixer, 2, MQAR, dataclasses.replace(TRAIN, lr=lr),
                                                 {mixer: fields})))
    # A cell two parts share (the remedy is also a candidate; the pilot holds the remedy's cells) runs
    # once, under the first part that names it.
    first: dict[str, tuple[str, Cell]] = {}
    for part, cell in cells:
        first.setdefault(cell_key(cell.spec), (part, cell))
    return list(first.values())


def cells(p: Params) -> list[tuple[str, Cell]]:
    from archbench.archs import list_archs

    if p.device != "cpu" or p.seed:
        raise GridError("the plateau grid runs on --device cpu at --seed 0 (bench/grids/plateau.py)")
    return plateau_parts(p.models, list_archs())
