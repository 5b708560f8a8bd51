"""The row schema (version 3): one typed row per measured cell, and the only code that turns a row into
JSON and back.

    Row(kind, spec, result, status, provenance, wall_s, grid, part)

  kind        a registered experiment kind (bench/experiments/); its `Spec` and `Result` dataclasses
              are the row's fields, declared once in that experiment's file
  spec        the kind's frozen Spec: what identifies and reproduces the cell; it holds the objects it
              is made of (the model's `ModelSpec`, a task's `TaskSpec`, a `TrainConfig`), nested
  result      the kind's Result when status is "ok", else None
  status      "ok" | "oom" | "timeout" | "error: <type>: <message>" | "skipped: <reason>"
  provenance  where the row came from (bench/runs/provenance.py): commit, versions, device_name, ...
  wall_s      seconds the cell took
  grid, part  the grid that ran the cell and its part there (bench/grids/); None where not known. A
              cell two grids share is run and stored once, under the grid that ran it first.

One JSON line per row:

    {"schema": 3, "kind": ..., "grid": ..., "part": ..., "spec": {"model": {...}, ...},
     "result": {...} | null, "status": ..., "wall_s": ..., "provenance": {...}}

Reading checks every field against the dataclasses, names and types, nested ones included: an unknown
kind or schema, a missing, extra or mistyped field is a `RowSchemaError` that names the file and line —
never a silently filled None. Rows of an older schema are refused naming the one-off script that
rewrites them (tools/rewrite_rows_v3.py).

The report reads rows as flat records (`Row.flat`): the row's own columns, the Spec's fields and
properties — a nested object as the columns tables want (`FLAT`: the model's name, pattern, mixers,
configs, depth, width and MLP ratio; the task's name and config; the training config as one dict) —
and the Result's fields. `columns(kind)` is that set, and `require_columns` turns a column a reader
asks for that no dataclass declares into an error when the reader is imported.

Glossary
  cell key   canonical JSON of the spec: the same cell always gives the same key (resume, retry)
  identity   canonical JSON of a model (`model_identity`): joins a recall cell with the cost rows of
             the very same model
  failure    status oom, timeout or error; "skipped: n=… was …" rows follow from one ("batch=…" for
             a series of batches)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.bench.runs.store import RowStore, canonical_json, dumps, regular_files

SCHEMA_VERSION = 3
LINE_KEYS = ("schema", "kind", "grid", "part", "spec", "result", "status", "wall_s", "provenance")
# A flat row's own columns; the Spec's and Result's follow them.
ROW_COLUMNS = ("kind", "cell", "grid", "part", "status", "wall_s", "device_name", "place", "provenance")
REWRITE = "tools/rewrite_rows_v3.py"  # the one-off script that rewrites older rows as this schema
OK = "ok"


class RowSchemaError(ValueError):
    """A row that does not fit the schema; the message names the file and line."""


# -- statuses ------------------------------------------------------------------------------------
_AFTER_FAILURE = re.compile(r"^skipped: [a-z_]+=\d+ was ")


def short_status(status: str) -> str:
    return status.split(":", 1)[0].strip()  # "error: CUDA failure ..." -> "error"


def is_failure(status: str) -> bool:
    """The cell ran and failed: out of memory, out of time, or an exception."""
    return status in ("oom", "timeout") or status.startswith("error")


def skipped_after_failure(n: int, status: str, name: str = "n") -> str:
    """The status of a longer cell of a series whose length n failed; `name` is what the series counts
    (the experiment's `series_name`: a length n, a batch)."""
    return f"skipped: {name}={n} was {short_status(status)}"


def is_retryable(status: str) -> bool:
    """What `--retry-failed` reruns: failures, and the longer cells skipped because of one. A skip by
    design (a decode cell of a model without a recurrent step) is not: it would be skipped again."""
    return is_failure(status) or bool(_AFTER_FAILURE.match(status))


# -- kinds, keys, columns --------------------------------------------------------------------------
def experiment(kind: str, where: str = "") -> Any:
    """The registered experiment class of `kind`; an unknown kind names the known ones."""
    from archbench.bench.experiments import EXPERIMENTS, UnknownNameError

    try:
        return EXPERIMENTS.get(kind)
    except UnknownNameError:
        raise RowSchemaError(f"{where}unknown row kind {kind!r}; known kinds: "
                             f"{', '.join(EXPERIMENTS.names())} (a plugin not installed here?)") from None


def place(kind: str, provenance: dict[str, Any]) -> str:
    """Where a row of `kind` with this provenance holds: the machine (`device_name`) for a kind whose
    figures are the machine's (timings); the device kind ("cpu", "cuda") for one whose figures are not
    (`Experiment.machine_bound` False: a trained model's accuracy). A run skips a cell stored for its
    place, and the report keeps the newest row of a cell per place."""
    if experiment(kind).machine_bound:
        return str(provenance.get("device_name") or "unknown device")
    return device_kind(str(provenance.get("device", "cpu")))


def device_kind(device: str) -> str:
    """"cuda" for any CUDA device ("cuda:1"), else "cpu": a place of the kinds that are not machine-bound."""
    return "cuda" if device.startswith("cuda") else "cpu"


def cell_key(spec: Any) -> str:
    return canonical_json(dataclasses.asdict(spec))


def model_identity(model: Any) -> str:
    """A model's identity: the canonical JSON of its `ModelSpec`."""
    return canonical_json(dataclasses.asdict(model))


def _flat_model(m: Any) -> dict[str, Any]:
    return {"model": m.name, "pattern": m.pattern, "mixers": m.mixers, "configs": m.configs, "depth": m.depth,
            "d_model": m.d_model, "mlp_ratio": m.mlp_ratio, "identity": model_identity(m)}


@functools.cache  # read for every row the report flattens
def _flat_kinds() -> dict[type, tuple[tuple[str, ...], Any]]:
    """Nested Spec objects as flat columns: type -> (column names, object -> {column: value})."""
    from archbench.archs import ModelSpec
    from archbench.bench.experiments.train import TrainConfig
    from archbench.tasks import TaskSpec

    model_columns = ("model", "pattern", "mixers", "configs", "depth", "d_model", "mlp_ratio", "identity")
    return {ModelSpec: (model_columns, _flat_model),
            TaskSpec: (("task", "task_cfg"), lambda t: {"task": t.name, "task_cfg": t.config}),
            TrainConfig: (("train_cfg",), lambda c: {"train_cfg": dataclasses.asdict(c)})}


def _spec_columns(spec_cls: type) -> list[str]:
    hints, flat = typing.get_type_hints(spec_cls), _flat_kinds()
    names: list[str] = []
    for f in dataclasses.fields(spec_cls):
        names += list(flat[hints[f.name]][0]) if hints[f.name] in flat else [f.name]
    return names


def spec_properties(spec_cls: type) -> list[str]:
    """Derived columns a Spec declares as properties (e.g. a retrieval cell's `seq_len`)."""
    names = []
    for klass in reversed(spec_cls.__mro__):
        names += [n for n, v in vars(klass).items() if isinstance(v, property) and n not in names]
    return names


def columns(kind: str) -> tuple[str, ...]:
    """Every column a flat row of `kind` has: the row's own, the Spec's fields and properties, the
    Result's fields. A name declared twice is an error: the flat row could not hold both."""
    exp = experiment(kind)
    spec = _spec_columns(exp.Spec) + spec_properties(exp.Spec)
    result = [f.name for f in dataclasses.fields(exp.Result)]
    names = [*ROW_COLUMNS, *spec, *result]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RowSchemaError(f"{kind}: column(s) {', '.join(twice)} declared twice (row, Spec and Result "
                             "names must differ)")
    return tuple(names)


def require_columns(kind: str, names: Iterable[str], reader: str) -> tuple[str, ...]:
    """`names`, checked: each must be a declared column of `kind` (raise, naming `reader`, if not)."""
    names = tuple(names)
    declared = columns(kind)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise RowSchemaError(f"{reader} reads {kind} column(s) {', '.join(map(repr, unknown))} that no "
                             f"{kind} Spec or Result declares; declared: {', '.join(declared)}")
    return names


# -- the row ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    kind: str
    spec: Any  # the kind's Spec
    result: Any | None  # the kind's Result when status is "ok"
    status: str
    provenance: dict[str, Any]
    wall_s: float | None = None
    grid: str | None = None  # the grid that ran the cell (bench/grids/)
    part: str | None = None  # its part there

    def __post_init__(self) -> None:
        exp = experiment(self.kind)
        if not isinstance(self.spec, exp.Spec):
            raise TypeError(f"a {self.kind} row needs a {exp.Spec.__name__}, got {type(self.spec).__name__}")
        if self.status == OK and not isinstance(self.result, exp.Result):
            raise TypeError(f"an ok {self.kind} row needs a {exp.Result.__name__}, "
                            f"got {type(self.result).__name__}")
        if self.status != OK and self.result is not None:
            raise TypeError(f"a {self.kind} row with status {self.status!r} has no result")

    @property
    def cell(self) -> str:
        return cell_key(self.spec)

    @property
    def device_name(self) -> str:
        return str(self.provenance.get("device_name") or "unknown device")

    @property
    def place(self) -> str:
        """Where this row's figures hold (`place`): its machine, or its device kind for a kind whose
        figures do not depend on the machine."""
        return place(self.kind, self.provenance)

    @property
    def written_at(self) -> str:
        """When the row was written (its provenance's UTC timestamp, ISO 8601; "" if it has none): of two
        rows of one cell and place the one written later counts, then the later in file order. It
        matters where a place pools machines: a retry on one CPU of a cell that failed on another must
        win, whichever machine's file is read last."""
        return str(self.provenance.get("timestamp") or "")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "kind": self.kind, "grid": self.grid, "part": self.part,
                "spec": dataclasses.asdict(self.spec),
                "result": None if self.result is None else dataclasses.asdict(self.result),
                "status": self.status, "wall_s": self.wall_s, "provenance": self.provenance}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "") -> Row:
        """A row from its JSON object; `where` ("file:line") prefixes errors."""
        at = f"{where}: " if where else ""
        version = obj.get("schema", 1)
        if version != SCHEMA_VERSION:
            raise RowSchemaError(f"{at}row schema {version!r}; this archbench reads schema "
                                 f"{SCHEMA_VERSION}: rewrite older rows with `python {REWRITE} DIR` (a newer "
                                 "archbench wrote it if it is higher)")
        keys = set(obj)
        if keys != set(LINE_KEYS):
            raise RowSchemaError(f"{at}row keys {sorted(keys)} are not the schema's {list(LINE_KEYS)}")
        kind = _coerce(obj["kind"], str, f"{at}kind")
        exp = experiment(kind, at)
        spec = build(exp.Spec, obj["spec"], f"{at}{kind} spec")
        result = None if obj["result"] is None else build(exp.Result, obj["result"], f"{at}{kind} result")
        try:
            return cls(kind, spec, result, _coerce(obj["status"], str, f"{at}status"),
                       _coerce(obj["provenance"], dict[str, Any], f"{at}provenance"),
                       _coerce(obj["wall_s"], float | None, f"{at}wall_s"),
                       _coerce(obj["grid"], str | None, f"{at}grid"),
                       _coerce(obj["part"], str | None, f"{at}part"))
        except TypeError as exc:
            raise RowSchemaError(f"{at}{exc}") from None

    def checked(self) -> Row:
        """This row as it will read back from its JSON line: field types checked (a writer's bug is
        caught before it is stored, not by every later reader)."""
        return Row.from_json(json.loads(dumps(self.to_json())), f"a {self.kind} row to store")

    def flat(self) -> dict[str, Any]:
        """One record: the row's own columns, the Spec's fields and properties, the Result's fields
        (None where there is no result)."""
        exp = experiment(self.kind)
        out: dict[str, Any] = {"kind": self.kind, "cell": self.cell, "grid": self.grid, "part": self.part,
                               "status": self.status, "wall_s": self.wall_s, "device_name": self.device_name,
                               "place": self.place, "provenance": self.provenance}
        flat = _flat_kinds()
        for f in dataclasses.fields(exp.Spec):
            value = getattr(self.spec, f.name)
            out.update(flat[type(value)][1](value) if type(value) in flat else {f.name: value})
        out.update({name: getattr(self.spec, name) for name in spec_properties(exp.Spec)})
        out.update({f.name: None if self.result is None else getattr(self.result, f.name)
                    for f in dataclasses.fields(exp.Result)})
        return out


# -- typed construction ------------------------------------------------------------------------------
def build(cls: type, data: Any, what: str) -> Any:
    """`cls(**data)` for a Spec or Result dataclass, every field present (or defaulted) and typed."""
    if not isinstance(data, dict):
        raise RowSchemaError(f"{what}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(data) - set(fields))
    missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if extra or missing:
        parts = ([f"unknown field(s) {', '.join(extra)}"] if extra else []) + \
                ([f"missing field(s) {', '.join(missing)}"] if missing else [])
        raise RowSchemaError(f"{what}: {'; '.join(parts)}; {cls.__name__} has: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{what}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RowSchemaError(f"{what}: {exc}") from None


def _coerce(value: Any, hint: Any, what: str) -> Any:
    """`value` checked against a type hint (JSON's types: no tuples, ints for whole floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):  # a nested object: the model, a task, a training config
        return build(hint, value, what)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm, what)
            except RowSchemaError:
                continue
        raise RowSchemaError(f"{what} = {value!r} is not {_hint_name(hint)}")
    ok = {type(None): value is None, bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, int | float) and not isinstance(value, bool),
          str: isinstance(value, str)}
    if hint in ok:
        if not ok[hint]:
            raise RowSchemaError(f"{what} = {value!r} is not {_hint_name(hint)}")
        return float(value) if hint is float else value
    container = origin or hint
    if container is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise RowSchemaError(f"{what} = {value!r} is not an object")
        return {k: _coerce(v, args[1], f"{what}.{k}") for k, v in value.items()} if args else value
    if container in (list, tuple):
        if not isinstance(value, list | tuple):
            raise RowSchemaError(f"{what} = {value!r} is not a list")
        item = args[0] if args else Any
        return container(_coerce(v, item, f"{what}[{i}]") for i, v in enumerate(value))
    return value


def _hint_name(hint: Any) -> str:
    if typing.get_args(hint):
        return str(hint).replace("NoneType", "None")
    return getattr(hint, "__name__", str(hint))


# -- reading files -------------------------------------------------------------------------------------
def read_rows(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Row]:
    """Typed rows of a .jsonl file, of a directory's *.jsonl files (recursive, sorted), or of a list, in
    file then line order. A path that does not exist yet holds no rows; a directory's entry that is not
    a regular file (a FIFO, a folder named *.jsonl) is skipped with a warning naming it."""
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        files = regular_files(sorted(root.rglob("*.jsonl"))) if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    return [Row.from_json(obj, f"{f}:{lineno}") for f in files for lineno, obj in RowStore(f).numbered_rows()]
