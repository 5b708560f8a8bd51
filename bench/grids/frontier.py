"""The frontier grid: recall against cost for every family, at several state sizes, and for hybrid
ratios and placements. `archbench run frontier`.

The grid has seven parts, run in this order (a resumed run picks up where it stopped; a grid cut short
already has every family's full lr sweep, then every hybrid's):

    mqar      MQAR at a vocabulary that tests capacity (V = 1024 on CPU, Zoology's 8192 on GPU): every
              family at its default state at every lr of the grid (the headline cells: on CPU the top
              three of Zoology's four), then each family's own state knob swept (`STATE_KNOBS`), so each
              draws a curve of accuracy against measured state bytes; rows keep every lr (the report
              shows best-of-sweep and sensitivity, and a front takes a cell only from a full sweep)
    hybrids   depth-4 models with 0, 1, 2 or 4 attention-like layers at different positions, for each
              recurrent partner and attention-like partner (`HYBRID_PLACEMENTS`), plus the production
              presets that fit depth 4, at every lr
    ablations configs that test the cause of a disagreement with the published ordering (`ABLATIONS`)
    seeds     the headline cells again at seed 1 (the spread), at the central lr on CPU
    tasks     passkey, copy, selective copy and induction heads, trained at L and scored at L .. 8L
    v8192     (CPU) Zoology's vocabulary for attention and two recurrent families, a longer budget
    cost      the scaling harness's cells for every model above: prefill at 4k and 16k, decode per
              token at 4k and 16k on the fair decode path (state / KV bytes come with each row)

Every recall cell trains under one recipe (`Grid.train`; on CPU the zoology recipe the plateau suite
chose, results/METHODS.md); rows name it.
Recall models follow Zoology's MQAR models (two mixer layers, no MLPs, attention with a short
convolution); hybrids are four layers. Splitting the grid across processes: `--executor ray
--workers 2 --threads 1` runs two cells at once with one writer (one worker per core here), and a
Ray cluster (`--address`) spreads it over machines; the run resumes, so a grid may also run across
sessions. Cost cells time the model: run them on a quiet machine (`--task none` leaves out every
recall part; `--modes decode` keeps only the decode cells among the cost cells).

`archbench report` writes `frontier_<device>_grid.md`: each part's cells (`cells` tags each with its
part), how many are stored, the time they took and the load then, so the grid's size is a
measured figure.

Glossary: n = seq_len, K = num_kv_pairs, V = vocab_size, lr learning rate, w SWA window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from archbench.archs import resolve_model
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.scaling import ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import Params
from archbench.bench.grids.common import zoology_budget
from archbench.bench.runs.cell import Cell
from archbench.tasks import TaskSpec

# The flags this grid takes; `--task none` keeps only its cost cells.
TAKES = ("models", "task", "modes", "lrs", "max_examples", "d_models", "dtype", "decode_backend")
TASK_CHOICES = ("none",)  # beside the registered tasks

RECALL_DEPTH = 2
HYBRID_DEPTH = 4
D_MODEL = 64
ATTENTION_CFG = {"attention": {"d_conv": 4}, "swa": {"d_conv": 4}}  # Zoology's short conv before q/k/v

# Each family's own state knob, smallest state first; the first entry of every family is its default
# state (the headline cell). Chosen so the states at d_model 64 span a factor of several within a family,
# and so the smallest variant's key width is below the grid's K: there the state cannot hold every pair
# in its own key directions and capacity binds.
STATE_KNOBS: dict[str, tuple[dict[str, Any], ...]] = {
    "attention": ({},),  # a KV cache that grows with n: one point, the reference
    "swa": ({"window": 16}, {"window": 8}, {"window": 32}),
    "mamba": ({}, {"d_state": 4}, {"d_state": 64}),
    "mamba2": ({}, {"d_state": 4}, {"d_state": 64}),
    "mamba3": ({}, {"d_state": 4}, {"d_state": 64}),
    "rwkv": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "rwkv7": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "linear_attention": ({}, {"n_head": 16}, {"n_head": 2}),
    "retnet": ({}, {"n_head": 16}, {"n_head": 2}),
    "gla": ({}, {"n_head": 8}, {"n_head": 1}),
    "deltanet": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "gated_deltanet": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "kda": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "short_conv": ({}, {"d_conv": 2}, {"d_conv": 8}),  # the conv keeps its last d_conv - 1 inputs
    "rglru": ({}, {"expand": 0.5}, {"expand": 2.0}),  # one number per channel of the RG-LRU's width
    "hgrn2": ({}, {"expand_ratio": 4}, {"expand_ratio": 32}),  # d_model x K per layer
    "gated_deltaproduct": ({}, {"head_dim": 4}, {"head_dim": 32}),
    "mlstm": ({}, {"head_dim": 4}, {"head_dim": 32}),  # K x V per head, the value width fixed
    "based": ({}, {"feature_dim": 8}, {"feature_dim": 24}),  # Zoology's sweep of the Taylor map's width
}


# Ablations run beside the headline cells: configs that test a cause when a family disagrees with the
# published ordering. The output gate's activation is the plateau's cause under archbench's recipe
# (results/METHODS.md): Gated DeltaNet with a sigmoid gate and with none, Mamba-2 with a sigmoid gate.
ABLATIONS: dict[str, tuple[dict[str, Any], ...]] = {
    "gated_deltanet": ({"output_gate": "sigmoid"}, {"output_gate": "none"}),
    "mamba2": ({"gate": "sigmoid"},),
}


@dataclass(frozen=True)
class Grid:
    """One device's frontier grid."""

    mqar: dict[str, Any]  # the MQAR point: seq_len, num_kv_pairs, vocab_size
    lrs: tuple[float, ...]  # the headline cells (every family at its default state); the first runs first
    sweep_lrs: tuple[float, ...]  # the other state sizes
    seed_lrs: tuple[float, ...]  # the headline cells at the seeds after the first
    hybrid_lrs: tuple[float, ...]
    train: TrainConfig
    seeds: tuple[int, ...]
    tasks: dict[str, dict[str, Any]]  # task -> its Config overrides (seq_len among them)
    task_lrs: tuple[float, ...]
    task_train: TrainConfig
    test_factors: tuple[int, ...]  # tasks are scored at L times each of these
    cost_lens: tuple[int, ...]
    d_models: tuple[int, ...] = (D_MODEL,)
    v8192: dict[str, Any] | None = None  # a slice at Zoology's vocabulary: models, examples, lrs (CPU)


# The CPU grid, chosen from the plateau grid's pilot (results/METHODS.md has its figures): MQAR at n = 64,
# K = 8, V = 1024 (512 keys: the state must hold which 8 of them this row bound), under the remedy the
# plateau grid chose — Zoology's recipe, 4 epochs of a quarter of the budget — at the top three of
# Zoology's learning rates for every recall cell (the frontier puts a cell on a front only from a sweep of
# at least three). Evaluated twice per epoch (Zoology: once) so each curve has points enough for its
# learning class.
# What each part's cells took is measured, not assumed: `archbench report` writes it from the rows'
# `wall_s` (results/frontier_<device>_grid.md); the run resumes, so the grid may span sessions.
CPU_LRS = (1e-2, 2.15e-3, 4.64e-4)  # np.logspace(-4, -2, 4)[1:], as the zoology recipe writes them
CPU_GRID = Grid(
    mqar=dict(seq_len=64, num_kv_pairs=8, vocab_size=1024),
    lrs=CPU_LRS,  # the first is the central one
    sweep_lrs=CPU_LRS,
    seed_lrs=CPU_LRS[:1],  # the spread over seeds at the central lr; over lrs from the sweep itself
    hybrid_lrs=CPU_LRS,
    train=zoology_budget(80_000, eval_every=10_000, compile=True),
    seeds=(0, 1),
    tasks={"passkey": dict(seq_len=64), "copy": dict(seq_len=34),
           "selective_copy": dict(seq_len=64, num_tokens=8), "induction": dict(seq_len=64)},
    # The other tasks at one lr (their tables say "one lr"): they are scored at L .. 8L beside MQAR, not
    # placed on a front. Eager: every task cell trains a graph no other cell shares (its vocabulary and
    # lengths), so it pays a cold compile, and at this budget that costs more than compiling saves
    # (results/METHODS.md, "Measurements behind code defaults").
    task_lrs=CPU_LRS[:1],
    task_train=zoology_budget(20_000),
    test_factors=(2, 4, 8),
    cost_lens=(4096, 16384),
    # Zoology's vocabulary for attention and the two recurrent families that recall best at V = 1024,
    # twice the budget: run last.
    v8192=dict(models=("attention", "deltanet", "rwkv7"), vocab_size=8192, max_examples=160_000),
)
# GPU: Zoology's scale (V = 8192, its four learning rates, 64 x 20k steps), widths 64-256.
GPU_GRID = Grid(
    mqar=dict(seq_len=256, num_kv_pairs=16, vocab_size=8192),
    lrs=(1e-3, 3e-4, 3e-3, 1e-2),
    sweep_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
    seed_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
    hybrid_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
    train=TrainConfig(batch_size=64, max_examples=64 * 20_000, n_train=100_000, target_accuracy=0.99,
                      compile=True),
    seeds=(0, 1),
    tasks={"passkey": dict(seq_len=256), "copy": dict(seq_len=130, max_len=64),
           "selective_copy": dict(seq_len=256, num_tokens=16), "induction": dict(seq_len=256)},
    task_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
    task_train=TrainConfig(batch_size=64, max_examples=64 * 5_000, n_train=100_000, target_accuracy=0.99,
                           compile=True),
    test_factors=(2, 4, 8),
    cost_lens=(4096, 16384, 65536),
    d_models=(64, 128, 256),
)
# Hybrid partners: letter R is the recurrent family, X the attention-like one. Depth-4 placements: 0, 1
# (first, middle, last), 2 (evenly spread) and 4 attention-like layers; sliding-window attention, the
# cheap partner, at the placements the presets use (last, spread). GLA, the gated family that stays on
# the plateau at the CPU point under the remedy in the pilot, is the weak partner: does one attention
# layer in four lift a recurrent stack that recalls little (Zoology's hybrids; Wang et al. 2507.06457)?
HYBRID_PLACEMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("mamba2", "attention"): ("RRRR", "XRRR", "RRXR", "RRRX", "RXRX", "XXXX"),
    ("mamba2", "swa"): ("RRRX", "RXRX", "XXXX"),
    ("gated_deltanet", "attention"): ("RRRR", "XRRR", "RRXR", "RRRX", "RXRX", "XXXX"),
    ("gated_deltanet", "swa"): ("RRRX", "RXRX", "XXXX"),
    ("gla", "attention"): ("RRRR", "XRRR", "RRRX"),
}
RECURRENT_PARTNERS = tuple(dict.fromkeys(r for r, _ in HYBRID_PLACEMENTS))
ATTENTION_PARTNERS = tuple(dict.fromkeys(x for _, x in HYBRID_PLACEMENTS))
# Presets at depth 4 (a placement equal to a preset runs under the preset's name; archs/presets.py says
# how each unit reaches depth 4: LFM2 is CACA, Griffin RRRA, RecurrentGemma RRAR, Hawk four RG-LRUs), and
# Zoology's short convolution before a mixer: `conv+based` at depth 4 is Zoology's two-layer Based, and
# `conv+mamba2` tests its BaseConv-first layer on a gated family (results/METHODS.md, "Not tested yet").
HYBRID_PRESETS = ("qwen3-next", "mamba2-attn", "kimi-linear", "samba", "lfm2", "griffin", "recurrentgemma",
                  "hawk", "conv+based", "conv+mamba2")


# Training steps that compiling does not pay for on CPU (`pytest bench/test_train_speed.py`, table
# results/train_speed_*-b-64.md): Mamba-1, whose selective scan compiles into a slower loop, and the two
# attentions, whose speed-up is less than their compile cost at a recall cell's budget.
EAGER_TRAIN_CPU = frozenset({"mamba", "swa", "attention"})


def compile_pays(device: str, mixers: set[str]) -> bool:
    """Whether a model of these mixers trains faster compiled: on CPU not with Mamba-1 in it (its
    slowest layer would dominate), nor when all its layers are attention; on CUDA always."""
    if device == "cuda":
        return True
    return "mamba" not in mixers and not mixers <= EAGER_TRAIN_CPU


def scaled(train: TrainConfig, examples: int) -> TrainConfig:
    """`train` with a budget of `examples`, its epochs and evaluations per budget kept (the zoology recipe's
    schedule counts epochs, so a shorter budget keeps its four epochs rather than cutting one short)."""
    def part(n: int) -> int:
        return max(train.batch_size, examples * n // train.max_examples)

    return dataclasses.replace(train, max_examples=examples, n_train=part(train.n_train),
                               eval_every=part(train.eval_every))


def grid_for(device: str) -> Grid:
    return GPU_GRID if device == "cuda" else CPU_GRID


def _config_for(mixer: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mixer configs for a model: the suite's attention conv, and `overrides` on `mixer`."""
    out = {k: dict(v) for k, v in ATTENTION_CFG.items()}
    if overrides:
        out[mixer] = {**out.get(mixer, {}), **overrides}
    return out


def recall_models(families: list[str]) -> list[tuple[str, int, dict, bool]]:
    """(model, depth, mixer configs, headline?) of the MQAR part: each family's default state first
    (the headline), then its other state sizes."""
    heads = [(f, RECALL_DEPTH, _config_for(f, STATE_KNOBS.get(f, ({},))[0]), True) for f in families]
    rest = [(f, RECALL_DEPTH, _config_for(f, knob), False)
            for f in families for knob in STATE_KNOBS.get(f, ({},))[1:]]
    return heads + rest


def hybrid_models() -> list[str]:
    """Depth-4 model names: every placement for every partner pair, then the presets not already
    among them (RRRR does not depend on X, XXXX not on R; a placement equal to a preset is the preset)."""
    presets = {_layers(p): p for p in HYBRID_PRESETS}
    names: list[str] = []
    for (r, x), placements in HYBRID_PLACEMENTS.items():
        for p in placements:
            name = r if p == "RRRR" else x if p == "XXXX" else f"{p}:R={r},X={x}"
            name = presets.get(_layers(name), name)
            if name not in names:
                names.append(name)
    return names + [p for p in HYBRID_PRESETS if p not in names]


def _layers(name: str) -> tuple[str, ...]:
    """The mixer of each layer of `name` at depth 4: what makes two names one model."""
    spec = resolve_model(name, HYBRID_DEPTH, 8)
    return tuple(spec.mixers[c] for c in spec.pattern)


def cells(p: Params) -> list[tuple[str, Cell]]:
    """(part, cell) for every cell of the grid under the flags in `p`, in run order (see the comment
    below), cost cells last; the part lets the report say how much of each part is stored and what it
    took. The families are the registered mixers, those with a state knob first, then plugin mixers (one
    point each, their default)."""
    from archbench.archs import list_archs
    from archbench.bench.grids.common import decode_flags, default_dtype

    families = sorted(list_archs(), key=lambda m: m not in STATE_KNOBS)  # stable: registry order kept
    dtype = p.dtype or default_dtype(p.device)
    # `--task`: only that task's recall parts ("mqar" is the mqar, seeds, v8192 and hybrid parts; "none"
    # keeps only the cost cells)
    tasks = None if p.task is None else ([] if p.task == "none" else [p.task])
    flags = decode_flags(p)
    grid = grid_for(p.device)

    def want(name: str) -> bool:
        return p.models is None or name in p.models

    def want_task(task: str) -> bool:
        return tasks is None or task in tasks

    def budget(train: TrainConfig) -> TrainConfig:
        return scaled(train, p.max_examples) if p.max_examples else train

    train, task_train = budget(grid.train), budget(grid.task_train)
    lrs = tuple(p.lrs or grid.lrs)
    d_models = tuple(p.d_models or grid.d_models)
    # The other tasks and the V = 8192 slice run at one width of their own, unless --d-model says which:
    # a flag given reaches every part, as --max-examples does (through `budget` and `scaled`).
    one_width = tuple(p.d_models or (D_MODEL,))
    mqar_test = (grid.mqar["seq_len"] * 2,)
    recall = [m for m in recall_models(families) if want(m[0])]
    hybrids = [(name, HYBRID_DEPTH, ATTENTION_CFG, False) for name in hybrid_models() if want(name)]
    planned: list[tuple[str, Cell]] = []

    def recall_cells(part, models, task, task_cfg, test_lens, train_cfg, lrs_, seeds, widths) -> None:
        for seed in seeds:
            for d in widths:
                for name, depth, configs, _ in models:
                    spec = resolve_model(name, depth, d, 0, configs)
                    compile_ = train_cfg.compile and compile_pays(p.device, set(spec.mixers.values()))
                    for lr in lrs_:
                        planned.append((part, Cell("retrieval", RetrievalSpec(
                            spec, TaskSpec(task, dict(task_cfg)),
                            dataclasses.replace(train_cfg, lr=lr, seed=seed, compile=compile_),
                            test_lens=test_lens, device=p.device, dtype=dtype, seed=seed))))

    first, more = grid.seeds[:1], grid.seeds[1:]
    heads = [m for m in recall if m[3]]
    task_models = [(f, RECALL_DEPTH, _config_for(f, {}), True) for f in families if want(f)]
    task_models += [(p, HYBRID_DEPTH, ATTENTION_CFG, False) for p in HYBRID_PRESETS if want(p)]

    def task_cells(task: str) -> None:
        if want_task(task):
            cfg = grid.tasks[task]
            test_lens = tuple(cfg["seq_len"] * f for f in grid.test_factors)
            recall_cells(task, task_models, task, cfg, test_lens, task_train,
                         tuple(p.lrs or grid.task_lrs), first, one_width)

    # Run order: the headline cells at every lr first (every family at the central lr, then the others),
    # so a grid cut short (or one session of it) already has a front from full sweeps; then the hybrids at
    # every lr, the ablations, the seed spread and the state sweep; the other tasks; the V = 8192 slice.
    ablations = [(f, RECALL_DEPTH, _config_for(f, knob), False)
                 for f in families if want(f) for knob in ABLATIONS.get(f, ())]
    if want_task("mqar"):
        recall_cells("headline", heads, "mqar", grid.mqar, mqar_test, train, lrs[:1], first, d_models)
        recall_cells("headline lrs", heads, "mqar", grid.mqar, mqar_test, train, lrs[1:], first, d_models)
        recall_cells("hybrids", hybrids, "mqar", grid.mqar, mqar_test, train,
                     tuple(p.lrs or grid.hybrid_lrs), first, d_models)
        recall_cells("ablations", ablations, "mqar", grid.mqar, mqar_test, train,
                     tuple(p.lrs or grid.sweep_lrs), first, d_models)
        recall_cells("seeds", heads, "mqar", grid.mqar, mqar_test, train,
                     tuple(p.lrs or grid.seed_lrs), more, d_models)
        recall_cells("state sweep", [m for m in recall if not m[3]], "mqar", grid.mqar, mqar_test, train,
                     tuple(p.lrs or grid.sweep_lrs), first, d_models)
    for task in grid.tasks:
        task_cells(task)
    if want_task("mqar") and grid.v8192:
        wide = [(f, RECALL_DEPTH, _config_for(f, STATE_KNOBS.get(f, ({},))[0]), True)
                for f in grid.v8192["models"] if f in families and want(f)]
        long_train = scaled(train, p.max_examples or grid.v8192["max_examples"])
        recall_cells("v8192", wide, "mqar", {**grid.mqar, "vocab_size": grid.v8192["vocab_size"]}, mqar_test,
                     long_train, lrs, first, one_width)

    # cost: every model of the mqar and hybrid parts, timed by the scaling harness; the headline models
    # and the hybrids first, the other state sizes after them (the same order as their recall cells)
    modes = ["prefill", "decode"] if p.modes is None else [m for m in p.modes if m in ("prefill", "decode")]
    for d in d_models:
        for name, depth, configs, _ in heads + hybrids + [m for m in recall if not m[3]] + ablations:
            spec = resolve_model(name, depth, d, 0, configs)
            for mode in modes:
                for n in grid.cost_lens:
                    planned.append(("cost", Cell("scaling", ScalingSpec(
                        spec, mode=mode, seq_len=n, batch=1, device=p.device, dtype=dtype, seed=0,
                        **(flags if mode == "decode" else {})))))
    return planned
