"""The row schema (version 2): one typed row per measured cell, and the only code that turns a row into
JSON and back.

    Row(kind, spec, result, status, provenance, wall_s)

  kind        a registered experiment kind (bench/experiments/); its `Spec` and `Result` dataclasses
              are the row's fields, declared once in that experiment's file
  spec        the kind's frozen Spec: what identifies and reproduces the cell
  result      the kind's Result when status is "ok", else None
  status      "ok" | "oom" | "timeout" | "error: <type>: <message>" | "skipped: <reason>"
  provenance  where the row came from (bench/runs/provenance.py): commit, versions, device_name, ...
  wall_s      seconds the cell took

One JSON line per row:

    {"schema": 2, "kind": ..., "cell": <canonical JSON of spec>, "spec": {...}, "result": {...} | null,
     "status": ..., "wall_s": ..., "provenance": {...}}

Reading checks every field against the dataclasses, names and types: an unknown kind or schema, a
missing, extra or mistyped field is a `RowSchemaError` that names the file and line — never a
silently filled None. Rows without a "schema" key are version 1 (everything written before models
were layer patterns); `migrate_v1` is the one explicit migration: v1 retrieval rows become v2, v1
scaling rows are refused (they timed single mixers beside a hybrid carrying MLPs: re-measure them).

The report reads rows as flat records (`Row.flat`): the row's own columns, the Spec's fields and
properties, and the Result's fields. `columns(kind)` is that set, and `require_columns` turns a column
a reader asks for that no dataclass declares into an error when the reader is imported.

Glossary
  cell key   canonical JSON of the spec: the same cell always gives the same key (resume, retry)
  failure    status oom, timeout or error; "skipped: n=… was …" rows follow from one
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.bench.runs.store import RowStore, canonical_json, dumps

SCHEMA_VERSION = 2
LINE_KEYS = ("schema", "kind", "cell", "spec", "result", "status", "wall_s", "provenance")
ROW_COLUMNS = ("kind", "cell", "status", "wall_s", "device_name", "provenance")  # besides Spec / Result
OK = "ok"


class RowSchemaError(ValueError):
    """A row that does not fit the schema; the message names the file and line."""


# -- statuses ------------------------------------------------------------------------------------
_AFTER_FAILURE = re.compile(r"^skipped: n=\d+ was ")


def short_status(status: str) -> str:
    return status.split(":", 1)[0].strip()  # "error: CUDA failure ..." -> "error"


def is_failure(status: str) -> bool:
    """The cell ran and failed: out of memory, out of time, or an exception."""
    return status in ("oom", "timeout") or status.startswith("error")


def skipped_after_failure(n: int, status: str) -> str:
    """The status of a longer cell of a series whose length n failed."""
    return f"skipped: n={n} was {short_status(status)}"


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


def cell_key(spec: Any) -> str:
    return canonical_json(dataclasses.asdict(spec))


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
    spec = [f.name for f in dataclasses.fields(exp.Spec)] + spec_properties(exp.Spec)
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
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "kind": self.kind, "cell": self.cell,
                "spec": dataclasses.asdict(self.spec),
                "result": None if self.result is None else dataclasses.asdict(self.result),
                "status": self.status, "wall_s": self.wall_s, "provenance": self.provenance}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "") -> Row:
        """A row from its JSON object (migrating version 1); `where` ("file:line") prefixes errors."""
        at = f"{where}: " if where else ""
        if "schema" not in obj:
            obj = migrate_v1(obj, where)
        if obj["schema"] != SCHEMA_VERSION:
            raise RowSchemaError(f"{at}row schema {obj['schema']!r}; this archbench reads schema "
                                 f"{SCHEMA_VERSION} (and migrates 1): a newer archbench wrote it?")
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
                       _coerce(obj["wall_s"], float | None, f"{at}wall_s"))
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
        out: dict[str, Any] = {"kind": self.kind, "cell": self.cell, "status": self.status,
                               "wall_s": self.wall_s, "device_name": self.device_name,
                               "provenance": self.provenance}
        out.update({f.name: getattr(self.spec, f.name) for f in dataclasses.fields(exp.Spec)})
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
    file then line order. A path that does not exist yet holds no rows."""
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        files = sorted(root.rglob("*.jsonl")) if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    return [Row.from_json(obj, f"{f}:{lineno}") for f in files for lineno, obj in RowStore(f).numbered_rows()]


# -- version 1 -------------------------------------------------------------------------------------------
V1_RETRIEVAL_RESULT = ("backend", "params", "state_bytes", "steps", "examples_seen", "train_seconds",
                       "accuracy", "accuracy_by_len", "test_len", "accuracy_by_slice", "final_loss",
                       "stopped_early", "curve")
V1_HYBRID_LETTERS = "M=mamba,A=attention,S=mamba2,R=rwkv"  # the v1 hybrid's default letter table


def migrate_v1(obj: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A version-1 row (no "schema" key) as a version-2 JSON object.

    v1 retrieval rows named a mixer (`arch`, `arch_cfg`) and a depth (`n_layer`); v2 names a model.
    Every v1 arch but one was a pure stack of n_layer layers of that mixer with `arch_cfg` applied.
    The exception is `hybrid`: one block holding its own sub-blocks, one per letter of its pattern,
    whose mixers ran at their defaults (it dropped its sub-configs) and whose MLPs followed its own
    `mlp_ratio`. At n_layer 1 with no MLPs that is exactly the layer pattern itself — v1's "MA" is
    "mamba-attn" (M=mamba, A=attention, no attention config) — and that is what the row records.
    v1 scaling rows are refused: they are re-measured, not migrated.
    """
    at = f"{where}: " if where else ""
    kind = obj.get("kind")
    if kind == "scaling":
        file = where.rsplit(":", 1)[0] if where else "the file"
        raise RowSchemaError(f"{at}a version-1 scaling row: v1 timed single mixers beside a hybrid with "
                             f"MLPs, not models of one shape, so these rows are not migrated; re-measure "
                             f"with `archbench run scaling` and delete {file}")
    if kind != "retrieval":
        raise RowSchemaError(f"{at}a version-1 row of kind {kind!r}: only v1 retrieval rows migrate")
    try:
        cell = json.loads(obj["cell"])
        model = _v1_model(cell)
        spec = {**_model_fields(model), "task": cell["task"], "task_cfg": cell["task_cfg"],
                "test_lens": cell.get("test_lens", []), "train_cfg": cell["train_cfg"],
                "device": cell["device"], "dtype": cell["dtype"], "seed": cell.get("seed", 0)}
        result = None
        if obj["status"] == OK:
            result = {k: obj[k] for k in V1_RETRIEVAL_RESULT if k in obj}
            if cell["arch"] != "hybrid":  # a pure stack: every layer ran the row's resolved config
                result["resolved_configs"] = {letter: obj["arch_cfg"] for letter in model.mixers}
    except (KeyError, TypeError, ValueError) as exc:
        raise RowSchemaError(f"{at}cannot migrate this version-1 retrieval row: {type(exc).__name__}: "
                             f"{exc}") from None
    provenance = obj.get("provenance") or {}
    if "device_name" not in provenance and obj.get("device_name"):
        provenance = {**provenance, "device_name": obj["device_name"]}
    return {"schema": SCHEMA_VERSION, "kind": "retrieval", "cell": None, "spec": spec, "result": result,
            "status": obj["status"], "wall_s": obj.get("wall_s"), "provenance": provenance}


def _v1_model(cell: dict[str, Any]) -> Any:
    from archbench.archs import ModelSpec, resolve_model
    from archbench.archs.model import parse_pattern

    arch, n_layer, d_model = cell["arch"], cell["n_layer"], cell["d_model"]
    mlp_ratio, cfg = cell.get("mlp_ratio", 4), cell.get("arch_cfg") or {}
    if arch != "hybrid":
        return resolve_model(arch, n_layer, d_model, mlp_ratio, {arch: cfg} if cfg else None)
    pattern = cfg.get("pattern", "MA")
    if n_layer != 1 or mlp_ratio != 0 or cfg.get("mlp_ratio", 4) != 0:
        raise ValueError("only the v1 hybrid of one block without MLPs (n_layer 1, mlp_ratio 0) is a layer "
                         f"pattern; this one has n_layer {n_layer}, mlp_ratio {mlp_ratio} (blocks) / "
                         f"{cfg.get('mlp_ratio', 4)} (sub-blocks)")
    letters = dict(item.split("=", 1) for item in cfg.get("mixers", V1_HYBRID_LETTERS).split(","))
    used = ",".join(f"{c}={letters[c]}" for c in dict.fromkeys(pattern))
    unit, mixers = parse_pattern(f"{pattern}:{used}")
    name = "mamba-attn" if (unit, mixers) == ("MA", {"M": "mamba", "A": "attention"}) else \
        f"{unit}:" + ",".join(f"{k}={v}" for k, v in mixers.items())
    return ModelSpec(name=name, pattern=unit, mixers=mixers, configs={}, d_model=d_model, mlp_ratio=0)


def _model_fields(model: Any) -> dict[str, Any]:
    from archbench.bench.experiments import model_fields

    return model_fields(model)
