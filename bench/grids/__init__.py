"""Grids: what `archbench run GRID` runs. Each grid is one small Python file in this folder, written as
data — its models, lengths, learning rates and budgets as module constants — with a function that lists
its cells. Copy one, edit a value, and run the copy: `archbench run ./my_grid.py`.

A grid file defines:

    TAKES    the command-line flags it takes, as `Params` field names ("models", "lens", ...); a flag
             it does not take is refused in one line naming the ones it does
    cells(p) its cells in run order, as (part, Cell) pairs: `p` holds the flags the user gave (None
             where not given) and the device; the part names the piece of the grid a cell belongs to
             (the frontier grid's "headline", "hybrids", ...; "" where a grid has one piece)

and its docstring says what it measures. The cell
builders every grid shares (a model at a shape, a scaling sweep, a task's training cells) are in
`common.py`; a grid that needs something new writes it in its own file.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from archbench.archs.registry import unknown_name
from archbench.bench.runs.cell import Cell, unique_cells

GRIDS = ("quick", "scaling", "retrieval", "full", "generation", "frontier", "plateau")


class GridError(ValueError):
    """Flags that build no cell or an impossible one, or a grid that cannot be loaded; the message names
    what exists."""


@dataclass
class Params:
    """The flags of `archbench run` (None: not given, the grid's own value) and where cells run."""

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
    max_examples: int | None = None
    seed: int = 0
    decode_backend: str | None = None
    memory_budget: int | None = None
    prompt_lens: list[int] | None = None
    gen_len: int | None = None
    max_batch: int | None = None
    notes: list[str] = field(default_factory=list)  # what a filter emptied, said but not fatal

    def given(self) -> list[str]:
        """The flags set, by field name (the device and seed always are: they have values)."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in ("device", "seed", "notes") and getattr(self, f.name) is not None]


_SINGULAR = {"d_models": "--d-model", "prompt_lens": "--prompt-len"}  # flags that take a list, named singly
FLAG = {f.name: _SINGULAR.get(f.name, "--" + f.name.replace("_", "-"))
        for f in dataclasses.fields(Params) if f.name != "notes"}  # Params field -> its flag


@dataclass
class Plan:
    cells: list[Cell]
    parts: list[str]  # the part of each cell
    notes: list[str]
    grid: str


def load(name_or_path: str) -> ModuleType:
    """A grid module: one of `GRIDS`, or a grid file given by path (anything ending in .py)."""
    if name_or_path.endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise GridError(f"no grid file {name_or_path!r}; give a path to a .py grid file or one of: "
                            f"{', '.join(GRIDS)}")
        name = f"archbench_user_grid_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses defined in the file resolve their module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - a user's file: say which and why, in one line
            raise GridError(f"grid file {name_or_path} failed to load: {type(exc).__name__}: {exc}") from None
    elif name_or_path in GRIDS:
        module = importlib.import_module(f"archbench.bench.grids.{name_or_path}")
    else:
        raise GridError(unknown_name("grid", name_or_path, GRIDS, " (or a path to a grid file ending in "
                                                                   ".py)"))
    missing = [a for a in ("TAKES", "cells") if not hasattr(module, a)]
    if missing:
        raise GridError(f"grid {name_or_path} defines no {' or '.join(missing)} (bench/grids/__init__.py "
                        "says what a grid file holds)")
    return module


def grid_name(name_or_path: str) -> str:
    """What rows and messages call a grid: its name, or a grid file's stem."""
    return Path(name_or_path).stem if name_or_path.endswith(".py") else name_or_path


def plan(name_or_path: str, params: Params, module: ModuleType | None = None) -> Plan:
    """The cells of a grid (`module`, loaded from `name_or_path` unless given) under the flags in
    `params`; GridError for a flag it does not take or for flags that leave no cell."""
    module = module or load(name_or_path)
    name = grid_name(name_or_path)
    refused = [FLAG[f] for f in params.given() if f not in module.TAKES]
    if refused:
        takes = ", ".join(FLAG[f] for f in module.TAKES if f in FLAG) or "no flags"
        raise GridError(f"the {name} grid fixes {', '.join(refused)}; it takes {takes}")
    pairs = list(module.cells(params))
    if not pairs:
        raise GridError("; ".join(params.notes) or _no_cells(name, module, params))
    cells = unique_cells(Cell(c.kind, c.spec, name, part) for part, c in pairs)  # `--lens 64,64`
    return Plan(cells, [c.part for c in cells], list(params.notes), name)


# What a cell holds for each flag that filters cells: the values `_no_cells` names.
_CELL_VALUES = {
    "models": lambda s: s.model.name,
    "modes": lambda s: getattr(s, "mode", None),
    "task": lambda s: s.task.name if hasattr(s, "task") else None,
    "lens": lambda s: getattr(s, "seq_len", None),
    "d_models": lambda s: s.model.d_model,
    "depth": lambda s: s.model.depth,
    "dtype": lambda s: getattr(s, "dtype", None),
    "lrs": lambda s: s.train.lr if hasattr(s, "train") else None,
    "prompt_lens": lambda s: getattr(s, "prompt_len", None),
}


def _no_cells(name: str, module: ModuleType, params: Params) -> str:
    """Flags that together leave no cell: for each filtering flag given, the values the grid's cells
    have with the other flags as given (so `--task none --modes train` names the modes of the cells
    `--task none` keeps)."""
    given = [f for f in params.given() if f in _CELL_VALUES]
    shown = " ".join(f"{FLAG[f]} {_shown(getattr(params, f))}" for f in params.given())
    has = []
    for flag in given:
        try:
            others = list(module.cells(dataclasses.replace(params, **{flag: None}, notes=[])))
        except GridError:
            continue
        values = list(dict.fromkeys(v for _, c in others if (v := _CELL_VALUES[flag](c.spec)) is not None))
        if all(isinstance(v, int | float) for v in values):
            values.sort()  # numbers in order; names in the grid's own order
        has.append(f"its {_NOUNS.get(flag, flag)}: {', '.join(map(str, values)) or 'none'}"
                   + (f" (with {FLAG[flag]} left out)" if len(given) > 1 else ""))
    return f"grid {name} has no cells with {shown or 'these flags'}" + (f"; {'; '.join(has)}" if has else "")


_NOUNS = {"task": "tasks", "lens": "lengths", "d_models": "widths", "lrs": "learning rates",
          "prompt_lens": "prompt lengths"}


def _shown(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


__all__ = ["GRIDS", "FLAG", "GridError", "Params", "Plan", "load", "plan", "grid_name"]
