"""Suites: named lists of cells, written as data (Zoology style), that `archbench run SUITE` executes.

    quick      a CPU run of a few minutes: a small scaling sweep (two recurrent families, each beside
               its hybrid preset, and attention) + one retrieval cell
    scaling    model × mode × n: every registered mixer as a pure stack and every preset hybrid that
               fits the depth, all of one depth, width and MLP ratio (CPU: depth 4, d_model 256, no MLP)
    retrieval  a task's grid of small LMs (MQAR by default; `--task` picks another task's own grid)
    full       scaling + retrieval
    generation LMs serving a batch (prefill P, generate G) at doubling batch sizes, up to the first
               batch whose parameters and state at P+G exceed the memory budget (or `--max-batch`)
    frontier   recall against cost: MQAR at V = 1024 for every family at several state sizes and
               learning rates, hybrid ratios and placements, the other tasks scored at L .. 8L, and the
               cost cells of the same models (bench/runs/frontier.py)
    plateau    the answer-prior plateau's candidate causes, one change a cell, on cheap MQAR cells
               (bench/runs/plateau.py); `--models` keeps some of its models

Every option the CLI takes overrides a suite default (`Options`). `--lens` *replaces* the scaling
lengths but *filters* a retrieval grid (each point pairs a length with its K); a filter that leaves
no cell is an error naming the grid's values. Cells come out ordered by increasing n within a
series, which the run loop relies on to skip longer lengths after a failure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archbench.archs import list_archs, list_models, resolve_model
from archbench.bench.experiments import decode, model_fields
from archbench.bench.experiments.generation import GenerationSpec, held_bytes
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.scaling import MODES, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.runs.cell import Cell

SUITES = ("quick", "scaling", "retrieval", "full", "generation", "frontier", "plateau")


class SuiteError(ValueError):
    """Options that build no cell or an impossible one; the message names what exists."""


@dataclass
class Options:
    """What the user asked for; None means "the suite's default"."""

    device: str = "cpu"
    models: list[str] | None = None
    depth: int | None = None
    mlp_ratio: int | None = None
    lens: list[int] | None = None
    modes: list[str] | None = None
    d_models: list[int] | None = None
    batch: int | None = None
    dtype: str | None = None
    task: str | None = None
    num_kv_pairs: int | None = None
    vocab_size: int | None = None
    lrs: list[float] | None = None
    max_examples: int | None = None  # the training budget of every retrieval cell (default: the grid's)
    seed: int = 0
    decode_backend: str | None = None  # decode cells: auto | eager | compiled | cudagraph
    memory_budget: int | None = None  # generation: bytes (default: a fraction of the device's memory)
    prompt_lens: list[int] | None = None  # generation: P
    gen_len: int | None = None  # generation: G
    max_batch: int | None = None  # generation: the largest batch of the doubling sweep


@dataclass
class Plan:
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)  # parts of the suite a filter emptied (said, not fatal)


def default_dtype(device: str) -> str:
    return "bfloat16" if device == "cuda" else "float32"


def _model(name: str, depth: int, d_model: int, mlp_ratio: int, mixer_configs: dict | None) -> Any:
    try:
        return resolve_model(name, depth, d_model, mlp_ratio, mixer_configs)
    except ValueError as exc:  # a preset whose unit does not tile the depth, a malformed pattern
        raise SuiteError(str(exc)) from None


# -- scaling -------------------------------------------------------------------------------------
SCALING_DEPTH = 4
SCALING_D_MODEL = 256
SCALING_MLP_RATIO = 0  # mixer-only blocks: the figure is the mixers', not four MLPs'
CPU_LENS = [256, 512, 1024, 2048, 4096, 8192, 16384]
GPU_LENS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
# The shape of ../shared/anchors (16 heads of 64 at d_model 1024, bf16), so GPU rows compare with them;
# mixer configs reach that mixer wherever it appears, inside hybrids too.
GPU_D_MODEL = 1024
GPU_MIXER_CFGS = {"attention": {"head_dim": 64}, "rwkv": {"head_dim": 64},
                  "mamba2": {"head_dim": 64, "expand": 1, "d_state": 64}}  # SSD heads of 64 x 64, as fla's


def scaling_models(depth: int) -> list[str]:
    """Every registered mixer as a pure stack, and every preset whose unit tiles `depth`."""
    fits = []
    for name in list_models():
        try:
            resolve_model(name, depth, 8)
        except ValueError:
            continue
        fits.append(name)
    return fits


# The quick suite's scaling slice: two recurrent families, each beside its production hybrid of the
# same shape, and attention (every registered model would be ~100 cells: minutes, not a quick look).
QUICK_SCALING_MODELS = ["attention", "mamba2", "mamba2-attn", "gated_deltanet", "qwen3-next"]


def decode_flags(o: Options) -> dict[str, bool]:
    """A decode cell's (compile_step, cuda_graph) for `--decode-backend`: by default the step as served,
    compiled on CPU and a captured graph on CUDA (bench/experiments/decode.py)."""
    try:
        backend = decode.resolve(o.decode_backend or "auto", o.device)
    except ValueError as exc:
        raise SuiteError(str(exc)) from None
    return {"compile_step": backend == "compiled", "cuda_graph": backend == "cudagraph"}


def scaling_cells(o: Options, *, lens: list[int], modes: list[str], batches: tuple[int, ...] = (1,),
                  d_model: int = SCALING_D_MODEL, mixer_configs: dict | None = None,
                  backend: str = "auto", models: list[str] | None = None) -> list[Cell]:
    """Cells over models × modes × batches × widths × n; `models` defaults to `scaling_models`."""
    depth = o.depth or SCALING_DEPTH
    mlp_ratio = SCALING_MLP_RATIO if o.mlp_ratio is None else o.mlp_ratio
    flags = decode_flags(o)
    cells = []
    for name in o.models or models or scaling_models(depth):
        for mode in o.modes or modes:
            for batch in [o.batch] if o.batch else batches:
                for d in o.d_models or [d_model]:
                    model = model_fields(_model(name, depth, d, mlp_ratio, mixer_configs))
                    for n in sorted(o.lens or lens):
                        cells.append(Cell("scaling", ScalingSpec(
                            **model, mode=mode, seq_len=n, batch=batch, device=o.device,
                            dtype=o.dtype or default_dtype(o.device), seed=o.seed,
                            requested_backend=backend, **(flags if mode == "decode" else {}))))
    return cells


# -- retrieval ----------------------------------------------------------------------------------------
RETRIEVAL_DEPTH = 2  # every retrieval model has two mixer layers (Zoology's MQAR models)
# Recall models are mixer-only blocks (no MLP), as Zoology's MQAR models: recall is the mixer's job,
# and the MLPs would be most of the FLOPs of a CPU training step.
RETRIEVAL_MLP_RATIO = 0
# Attention gets Zoology's short convolution before q/k/v in the recall suites (see the README),
# wherever it appears: in the pure stack and inside hybrids.
RETRIEVAL_MIXER_CFGS = {"attention": {"d_conv": 4}}
RETRIEVAL_MODELS = ["attention", "mamba", "mamba2", "rwkv", "mamba-attn"]


@dataclass(frozen=True)
class TaskGrid:
    """One task's grid: points of (task Config overrides, seq_len among them; widths), a vocabulary."""

    points: tuple[tuple[dict[str, Any], tuple[int, ...]], ...]
    vocab_size: int | None = None  # None: the task's default

    def lengths(self) -> list[int]:
        return sorted({cfg["seq_len"] for cfg, _ in self.points})


# CPU grids. MQAR (seq_len, K, d_models): K grows with L until the small recurrent states run out — K
# relative to the measured state bytes is what matters. Sized for two CPU cores: the widths that show
# the trend at each length, one pass over fresh examples.
#
# MQAR vocabulary 64, not Zoology's 8192: with 8192 tokens each key is seen a few dozen times in a CPU
# budget of examples. On this CPU Mamba-2 and RWKV-6 stayed at 0.00 after 60k examples on
# (L=64, K=4, V=8192) while attention (with its short conv) reached 0.99, and at V=128 the recurrent
# mixers learned in some cells and not others within 40k examples (rows kept in results/raw). With 31
# keys every key is seen thousands of times, so what separates the mixers is the state rather than the
# optimiser's patience. The GPU grid keeps 8192. The other tasks keep their own default vocabularies.
CPU_GRIDS = {
    "mqar": TaskGrid(((dict(seq_len=64, num_kv_pairs=8), (32, 64)),
                      (dict(seq_len=128, num_kv_pairs=16), (32, 64, 128)),
                      (dict(seq_len=256, num_kv_pairs=24), (64,))), vocab_size=64),
    "copy": TaskGrid(((dict(seq_len=34), (32, 64)), (dict(seq_len=66, max_len=32), (64,)))),
    "passkey": TaskGrid(((dict(seq_len=64), (32, 64)), (dict(seq_len=256), (64,)))),
    "selective_copy": TaskGrid(((dict(seq_len=64, num_tokens=8), (32, 64)),
                                (dict(seq_len=256, num_tokens=16), (64,)))),
    "induction": TaskGrid(((dict(seq_len=64), (32, 64)), (dict(seq_len=256), (64,)))),
}
PLUGIN_TASK_GRID = TaskGrid(((dict(seq_len=64), (32, 64)),))  # a task without a grid here (a plugin)
# Zoology sweeps learning rates and keeps the best per cell; a CPU budget affords two for the
# recurrent mixers: a probe on (L=64, K=8) found 1e-2 fastest for them, and 3e-3 guards the wider
# models, for which one fixed lr of 1e-2 may be too high. Attention and the hybrid learn every cell
# at 3e-3.
CPU_LRS = {"attention": [3e-3], "mamba-attn": [3e-3], "*": [1e-2, 3e-3]}
CPU_TRAIN = TrainConfig(batch_size=64, max_examples=40_000, n_train=40_000, eval_every=5_000,
                        target_accuracy=0.99)
# The quick slice shows the trade in one cell: on (n=128, K=16) at d_model 32 the recurrent Mamba-2
# stays near chance while attention and the one-attention-layer hybrid recall (results/ grid). For
# another task it is the first point of that task's grid, at its smallest width.
QUICK_GRIDS = {"mqar": TaskGrid(((dict(seq_len=128, num_kv_pairs=16), (32,)),), vocab_size=64)}
QUICK_MODELS = ["attention", "mamba2", "mamba-attn"]
QUICK_TRAIN = TrainConfig(batch_size=64, max_examples=30_000, n_train=30_000, eval_every=5_000,
                          target_accuracy=0.99)

# GPU grid: Zoology Fig. 2 (Arora et al. 2023), four learning rates, best kept by the report; the other
# tasks run their CPU points at the GPU widths.
GPU_WIDTHS = (64, 128, 256, 512)
GPU_GRIDS = {"mqar": TaskGrid(((dict(seq_len=64, num_kv_pairs=4), GPU_WIDTHS),
                               (dict(seq_len=128, num_kv_pairs=8), GPU_WIDTHS),
                               (dict(seq_len=256, num_kv_pairs=16), GPU_WIDTHS),
                               (dict(seq_len=512, num_kv_pairs=64), GPU_WIDTHS)), vocab_size=8192)}
GPU_LRS = {"*": [3e-4, 1e-3, 3e-3, 1e-2]}
GPU_TRAIN = TrainConfig(batch_size=64, max_examples=64 * 20_000, n_train=100_000, target_accuracy=0.99)


def task_grid(task: str, device: str, quick: bool = False) -> TaskGrid:
    cpu = CPU_GRIDS.get(task, PLUGIN_TASK_GRID)
    if quick:
        cfg, widths = cpu.points[0]
        return QUICK_GRIDS.get(task, TaskGrid(((cfg, widths[:1]),), cpu.vocab_size))
    if device == "cuda":
        wide = TaskGrid(tuple((cfg, GPU_WIDTHS) for cfg, _ in cpu.points), cpu.vocab_size)
        return GPU_GRIDS.get(task, wide)
    return cpu


def retrieval_cells(o: Options, grid: TaskGrid, lrs: dict[str, list[float]], train: TrainConfig,
                    models: list[str], test_factor: int = 2) -> list[Cell]:
    """Cells over the grid's points × widths × models × learning rates (`lrs` maps a model name, or
    "*", to its learning rates; `o.lrs` replaces them all)."""
    from archbench.tasks import create

    task = o.task or "mqar"
    depth = o.depth or RETRIEVAL_DEPTH
    mlp_ratio = RETRIEVAL_MLP_RATIO if o.mlp_ratio is None else o.mlp_ratio
    vocab = o.vocab_size or grid.vocab_size
    if o.max_examples:  # a budget below the grid's fixed training set draws only what it trains on
        train = dataclasses.replace(train, max_examples=o.max_examples,
                                    n_train=min(train.n_train, o.max_examples))
    cells = []
    for point, widths in grid.points:
        if o.lens and point["seq_len"] not in o.lens:
            continue
        cfg = {**point, **({"vocab_size": vocab} if vocab else {}),
               **({"num_kv_pairs": o.num_kv_pairs} if o.num_kv_pairs is not None else {})}
        try:
            create(task, **cfg).make(1, np.random.default_rng(0))  # a bad combination fails now, not later
        except (TypeError, ValueError) as exc:
            raise SuiteError(f"task {task} cannot be built with {cfg}: {exc}") from None
        for d_model in o.d_models or widths:
            for name in o.models or models:
                model = model_fields(_model(name, depth, d_model, mlp_ratio, RETRIEVAL_MIXER_CFGS))
                for lr in o.lrs or lrs.get(name, lrs.get("*", [])):
                    cells.append(Cell("retrieval", RetrievalSpec(
                        **model, task=task, task_cfg=cfg, test_lens=(point["seq_len"] * test_factor,),
                        train_cfg=dataclasses.asdict(dataclasses.replace(train, lr=lr, seed=o.seed)),
                        device=o.device, dtype=o.dtype or "float32", seed=o.seed)))
    return cells


def _retrieval_part(o: Options, plan: Plan, *, quick: bool) -> None:
    task = o.task or "mqar"
    grid = task_grid(task, o.device, quick)
    if quick:
        cells = retrieval_cells(o, grid, CPU_LRS, QUICK_TRAIN, QUICK_MODELS)
    elif o.device == "cuda":
        cells = retrieval_cells(o, grid, GPU_LRS, GPU_TRAIN, RETRIEVAL_MODELS)
    else:
        cells = retrieval_cells(o, grid, CPU_LRS, CPU_TRAIN, RETRIEVAL_MODELS)
    if not cells:  # only the length filter can empty a grid
        lens = ", ".join(map(str, o.lens or []))
        which = f"{'quick ' if quick else ''}retrieval grid of {task} on {o.device}"
        plan.notes.append(f"no cell of the {which} has length {lens}; its lengths: "
                          f"{', '.join(map(str, grid.lengths()))}")
    plan.cells += cells


# -- generation -------------------------------------------------------------------------------------
# Models of one shape, as the scaling suite's: attention, two recurrent families and each one's
# production hybrid. At P+G = 4k+32, d_model 256, depth 4, float32 attention holds 34 MB of KV cache per
# sequence, Mamba-2 0.17 MB of state, Qwen3-Next (one attention layer in four) 8.6 MB.
GENERATION_MODELS = ["attention", "mamba2", "gated_deltanet", "mamba2-attn", "qwen3-next"]
GENERATION_DEPTH = 4
GENERATION_D_MODEL = 256
GENERATION_PROMPT_LENS = [4096]
GENERATION_GEN_LEN = 32
GENERATION_VOCAB = 4096
GENERATION_MAX_BATCH = {"cpu": 256, "cuda": 4096}  # bounds a CPU sweep's time where states are small
BUDGET_FRACTION = 0.25  # the default memory budget: this fraction of the device's memory


def default_budget(device: str) -> int:
    from archbench.bench.measure.device import memory_bytes

    total = memory_bytes(device)
    if total is None:
        raise SuiteError(f"cannot read the memory of device {device!r}; give --memory-budget (e.g. 1G)")
    return int(total * BUDGET_FRACTION)


def generation_cells(o: Options) -> list[Cell]:
    """Per model × width × P: batches 1, 2, 4, … up to the first whose parameters and state at P+G
    exceed the budget (that one is kept: its row says so), or `max_batch`; `--batch` picks one batch."""
    budget = o.memory_budget or default_budget(o.device)
    depth = o.depth or GENERATION_DEPTH
    mlp_ratio = SCALING_MLP_RATIO if o.mlp_ratio is None else o.mlp_ratio
    max_batch = o.max_batch or GENERATION_MAX_BATCH.get(o.device, GENERATION_MAX_BATCH["cpu"])
    backend = o.decode_backend or "auto"
    try:
        decode.resolve(backend, o.device)
    except ValueError as exc:
        raise SuiteError(str(exc)) from None
    cells = []
    for name in o.models or GENERATION_MODELS:
        for d in o.d_models or [GENERATION_D_MODEL]:
            model = model_fields(_model(name, depth, d, mlp_ratio, None))
            for P in o.prompt_lens or GENERATION_PROMPT_LENS:
                batch = o.batch or 1
                while batch <= (o.batch or max_batch):
                    try:
                        spec = GenerationSpec(
                            **model, prompt_len=P, gen_len=o.gen_len or GENERATION_GEN_LEN, batch=batch,
                            vocab_size=o.vocab_size or GENERATION_VOCAB, memory_budget_bytes=budget,
                            device=o.device, dtype=o.dtype or default_dtype(o.device), decode_backend=backend,
                            seed=o.seed)
                    except ValueError as exc:
                        raise SuiteError(str(exc)) from None
                    cells.append(Cell("generation", spec))
                    if held_bytes(spec) > budget:
                        break
                    batch *= 2
    return cells


# Options the frontier suite's grid fixes (bench/runs/frontier.py); given anyway, they are an error, not
# silently ignored.
FRONTIER_FIXED = {"depth": "--depth", "mlp_ratio": "--mlp-ratio", "lens": "--lens", "batch": "--batch",
                  "num_kv_pairs": "--num-kv-pairs", "vocab_size": "--vocab-size",
                  "memory_budget": "--memory-budget", "prompt_lens": "--prompt-len", "gen_len": "--gen-len",
                  "max_batch": "--max-batch"}  # Options field -> the flag that sets it


def frontier_parts(o: Options) -> list[tuple[str, Cell]]:
    """(part, cell) of the frontier suite under `o` (bench/runs/frontier.py `PARTS`); the report counts
    what each part has stored and took."""
    from archbench.bench.runs import frontier

    fixed = [flag for name, flag in FRONTIER_FIXED.items() if getattr(o, name) is not None]
    if fixed:
        raise SuiteError(f"the frontier suite fixes {', '.join(fixed)} (bench/runs/frontier.py); it takes "
                         "--models, --task (a task or 'none'), --modes, --lrs, --max-examples, --d-model, "
                         "--dtype, --decode-backend")
    families = [m for m in list_archs() if m in frontier.STATE_KNOBS] + \
        [m for m in list_archs() if m not in frontier.STATE_KNOBS]  # plugins: one point, their default
    return frontier.frontier_parts(frontier.FrontierOptions(
        device=o.device, dtype=o.dtype or default_dtype(o.device), families=families, model_filter=o.models,
        tasks=None if o.task is None else ([] if o.task == "none" else [o.task]), modes=o.modes,
        lrs=o.lrs, max_examples=o.max_examples, d_models=o.d_models, decode_flags=decode_flags(o)))


# Options the plateau suite fixes: it is a fixed set of controlled cells, `--models` may only select.
PLATEAU_TAKES = ("device", "models", "seed")


def plateau_parts(o: Options) -> list[tuple[str, Cell]]:
    """(part, cell) of the plateau suite (bench/runs/plateau.py); only `--models` filters it."""
    from archbench.bench.runs import plateau

    given = [f.name for f in dataclasses.fields(Options)
             if f.name not in PLATEAU_TAKES and getattr(o, f.name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SuiteError(f"the plateau suite fixes its cells (bench/runs/plateau.py); it takes --models, "
                         f"not {flags}")
    if o.device != "cpu" or o.seed:
        raise SuiteError("the plateau suite runs on --device cpu at --seed 0 (bench/runs/plateau.py)")
    return plateau.plateau_parts(o.models, list_archs())


def build(suite: str, o: Options) -> Plan:
    """The cells of `suite` under options `o`; SuiteError if they come to none."""
    if suite not in SUITES:
        raise SuiteError(f"unknown suite {suite!r}; choose from: {', '.join(SUITES)}")
    plan = Plan([])
    if suite == "quick":
        quick = [m for m in QUICK_SCALING_MODELS if m in scaling_models(o.depth or SCALING_DEPTH)]
        plan.cells += scaling_cells(o, lens=[256, 1024, 4096], modes=["prefill", "decode"], models=quick)
        _retrieval_part(o, plan, quick=True)
    if suite in ("scaling", "full") and o.device == "cuda":
        # The fastest usable kernel per cell (measured), batch 1 and 8, the anchors' shape.
        plan.cells += scaling_cells(o, lens=GPU_LENS, modes=list(MODES), batches=(1, 8), d_model=GPU_D_MODEL,
                                    mixer_configs=GPU_MIXER_CFGS, backend="fastest")
    elif suite in ("scaling", "full"):
        plan.cells += scaling_cells(o, lens=CPU_LENS, modes=list(MODES))
    if suite in ("retrieval", "full"):
        _retrieval_part(o, plan, quick=False)
    if suite == "generation":
        plan.cells += generation_cells(o)
    if suite == "frontier":
        plan.cells += [cell for _, cell in frontier_parts(o)]
    if suite == "plateau":
        plan.cells += [cell for _, cell in plateau_parts(o)]
    if not plan.cells:
        raise SuiteError("; ".join(plan.notes) or f"suite {suite} has no cells with these options")
    return plan
