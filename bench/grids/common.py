"""Cell builders the grid files share: a model at a shape, a scaling sweep, a task's training cells, a
generation sweep. Each takes the grid's own values and the user's flags (`Params`: a flag given replaces
the grid's value) and returns Cells; none holds a grid's numbers.

Cells come out ordered by increasing n within a series, which the run loop relies on to skip longer
lengths after a failure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from archbench.archs import list_models, resolve_model
from archbench.bench.experiments import decode
from archbench.bench.experiments.generation import GenerationSpec, held_bytes
from archbench.bench.experiments.retrieval import RetrievalSpec
from archbench.bench.experiments.scaling import ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import GridError, Params
from archbench.bench.runs.cell import Cell
from archbench.tasks import TaskSpec


def default_dtype(device: str) -> str:
    return "bfloat16" if device == "cuda" else "float32"


def model(name: str, depth: int, d_model: int, mlp_ratio: int, mixer_configs: dict | None = None) -> Any:
    """`resolve_model`, its errors (a preset whose unit does not tile the depth, a malformed pattern) as
    GridError."""
    try:
        return resolve_model(name, depth, d_model, mlp_ratio, mixer_configs)
    except ValueError as exc:
        raise GridError(str(exc)) from None


def models_at(depth: int) -> list[str]:
    """Every registered mixer as a pure stack, and every preset whose unit tiles `depth`."""
    fits = []
    for name in list_models():
        try:
            resolve_model(name, depth, 8)
        except ValueError:
            continue
        fits.append(name)
    return fits


def decode_flags(p: Params) -> dict[str, bool]:
    """A decode cell's (compile_step, cuda_graph) for `--decode-backend`: by default the step as served,
    compiled on CPU and a captured graph on CUDA (bench/experiments/decode.py)."""
    try:
        backend = decode.resolve(p.decode_backend or "auto", p.device)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    return {"compile_step": backend == "compiled", "cuda_graph": backend == "cudagraph"}


def scaling_cells(p: Params, *, models: list[str] | None, depth: int, d_model: int, mlp_ratio: int,
                  lens: list[int], modes: list[str], batches: tuple[int, ...] = (1,),
                  mixer_configs: dict | None = None, backend: str = "auto") -> list[Cell]:
    """Cells over models × modes × batches × widths × n; `models` None: every model that fits `depth`."""
    depth = p.depth or depth
    mlp_ratio = mlp_ratio if p.mlp_ratio is None else p.mlp_ratio
    flags = decode_flags(p)
    cells = []
    for name in p.models or models or models_at(depth):
        for mode in p.modes or modes:
            for batch in [p.batch] if p.batch else batches:
                for d in p.d_models or [d_model]:
                    spec = model(name, depth, d, mlp_ratio, mixer_configs)
                    for n in sorted(p.lens or lens):
                        cells.append(Cell("scaling", ScalingSpec(
                            spec, mode=mode, seq_len=n, batch=batch, device=p.device,
                            dtype=p.dtype or default_dtype(p.device), seed=p.seed,
                            requested_backend=backend, **(flags if mode == "decode" else {}))))
    return cells


@dataclass(frozen=True)
class TaskGrid:
    """One task's grid: points of (task Config overrides, seq_len among them; widths), a vocabulary."""

    points: tuple[tuple[dict[str, Any], tuple[int, ...]], ...]
    vocab_size: int | None = None  # None: the task's default

    def lengths(self) -> list[int]:
        return sorted({cfg["seq_len"] for cfg, _ in self.points})


def retrieval_cells(p: Params, grid: TaskGrid, *, models: list[str], lrs: dict[str, list[float]],
                    train: TrainConfig, depth: int, mlp_ratio: int, mixer_configs: dict | None,
                    test_factor: int = 2, what: str = "retrieval grid") -> list[Cell]:
    """Cells over the grid's points × widths × models × learning rates (`lrs` maps a model name, or
    "*", to its learning rates; `--lrs` replaces them all). A length filter that keeps no point is a
    note naming the grid's lengths."""
    from archbench.tasks import create

    task = p.task or "mqar"
    depth = p.depth or depth
    mlp_ratio = mlp_ratio if p.mlp_ratio is None else p.mlp_ratio
    vocab = p.vocab_size or grid.vocab_size
    if p.max_examples:  # a budget below the grid's fixed training set draws only what it trains on
        train = dataclasses.replace(train, max_examples=p.max_examples,
                                    n_train=min(train.n_train, p.max_examples))
    cells = []
    for point, widths in grid.points:
        if p.lens and point["seq_len"] not in p.lens:
            continue
        cfg = {**point, **({"vocab_size": vocab} if vocab else {}),
               **({"num_kv_pairs": p.num_kv_pairs} if p.num_kv_pairs is not None else {})}
        try:
            create(task, **cfg).make(1, np.random.default_rng(0))  # a bad combination fails now, not later
        except (TypeError, ValueError) as exc:
            raise GridError(f"task {task} cannot be built with {cfg}: {exc}") from None
        for d_model in p.d_models or widths:
            for name in p.models or models:
                spec = model(name, depth, d_model, mlp_ratio, mixer_configs)
                for lr in p.lrs or lrs.get(name, lrs.get("*", [])):
                    cells.append(Cell("retrieval", RetrievalSpec(
                        spec, TaskSpec(task, cfg), dataclasses.replace(train, lr=lr, seed=p.seed),
                        test_lens=(point["seq_len"] * test_factor,), device=p.device,
                        dtype=p.dtype or "float32", seed=p.seed)))
    if not cells:
        asked, has = ", ".join(map(str, p.lens or [])), ", ".join(map(str, grid.lengths()))
        p.notes.append(f"no cell of the {what} of {task} on {p.device} has length {asked}; "
                       f"its lengths: {has}")
    return cells


def generation_cells(p: Params, *, models: list[str], depth: int, d_model: int, mlp_ratio: int,
                     prompt_lens: list[int], gen_len: int, vocab_size: int, max_batch: int,
                     budget: int) -> list[Cell]:
    """Per model × width × P: batches 1, 2, 4, … up to the first whose parameters and state at P+G
    exceed `budget` bytes (that one is kept: its row says so), or `max_batch`; `--batch` picks one."""
    depth = p.depth or depth
    mlp_ratio = mlp_ratio if p.mlp_ratio is None else p.mlp_ratio
    backend = p.decode_backend or "auto"
    try:
        decode.resolve(backend, p.device)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    cells = []
    for name in p.models or models:
        for d in p.d_models or [d_model]:
            resolved = model(name, depth, d, mlp_ratio)
            for P in p.prompt_lens or prompt_lens:
                batch = p.batch or 1
                while batch <= (p.batch or max_batch):
                    try:
                        spec = GenerationSpec(
                            resolved, prompt_len=P, gen_len=p.gen_len or gen_len, batch=batch,
                            vocab_size=p.vocab_size or vocab_size, memory_budget_bytes=budget,
                            device=p.device, dtype=p.dtype or default_dtype(p.device), decode_backend=backend,
                            seed=p.seed)
                    except ValueError as exc:
                        raise GridError(str(exc)) from None
                    cells.append(Cell("generation", spec))
                    if held_bytes(spec) > budget:
                        break
                    batch *= 2
    return cells


def zoology_budget(examples: int, epochs: int = 4, eval_every: int | None = None, batch_size: int = 64,
                   **fields: Any) -> TrainConfig:
    """`examples` under the zoology recipe as `epochs` passes over a training set of examples / epochs
    (the plateau grid's remedy, results/METHODS.md), evaluated once per epoch unless `eval_every` says
    otherwise."""
    n_train = examples // epochs
    return TrainConfig.for_recipe("zoology", batch_size=batch_size, max_examples=examples, n_train=n_train,
                                  eval_every=eval_every or n_train, **fields)


def one_part(cells: list[Cell], part: str = "") -> list[tuple[str, Cell]]:
    return [(part, c) for c in cells]
