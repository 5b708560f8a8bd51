"""Rows as tables: one DataFrame per experiment kind whose columns are exactly the schema's.

The columns are the row's own (kind, cell, status, wall_s, device_name, place, provenance), the Spec's fields
and properties and the Result's fields (bench/runs/schema.py) — nothing else. A report module names
the columns it reads in `require(kind, ...)` when it is imported, so a column no dataclass declares is
an error then, and reading an undeclared column from the frame is a KeyError, never a None.

Glossary
  _order  load order (sorted files, then line order): later rows are newer
"""

from __future__ import annotations

import dataclasses
import types
import typing

import numpy as np
import pandas as pd

from archbench.archs.names import override_label
from archbench.bench.runs.schema import Row, columns, experiment, require_columns, spec_properties


def require(kind: str, names: typing.Iterable[str], reader: str) -> tuple[str, ...]:
    """The columns `reader` reads, checked against what `kind`'s rows declare."""
    return require_columns(kind, names, reader)


def _numeric(hint: typing.Any) -> bool:
    """int / float / their optional forms: columns the report compares and fits as numbers."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(arms) == 1 and _numeric(arms[0])
    return hint in (int, float)


def numeric_columns(kind: str) -> list[str]:
    exp = experiment(kind)
    hints = {**typing.get_type_hints(exp.Spec), **typing.get_type_hints(exp.Result)}
    props = {n: typing.get_type_hints(getattr(exp.Spec, n).fget).get("return")
             for n in spec_properties(exp.Spec)}
    names = [f.name for cls in (exp.Spec, exp.Result) for f in dataclasses.fields(cls)]
    return [n for n in names if _numeric(hints[n])] + [n for n, h in props.items() if _numeric(h)] + \
        ["wall_s"]


def frame(rows: list[Row], kind: str) -> pd.DataFrame:
    """The rows of `kind`, newest per (cell, place) only (bench/runs/schema.py `place`: the machine, or
    the device kind for retrieval) — a rerun (e.g. `--retry-failed`) replaces the row before it — in
    load order, with numeric columns as numbers (None -> NaN)."""
    cols = list(columns(kind))
    recs = [r.flat() for r in rows if r.kind == kind]
    df = pd.DataFrame.from_records(recs, columns=cols) if recs else pd.DataFrame(columns=cols)
    df["_order"] = np.arange(len(df))
    # the newest row of a cell per place: written last (a place may pool machines, whose files are read
    # one after another: `Row.written_at`), then last in load order
    written = [r.written_at for r in rows if r.kind == kind]
    newest = df.assign(_written=written).sort_values(["_written", "_order"], kind="stable")
    df = df.loc[sorted(newest.drop_duplicates(["cell", "place"], keep="last").index)]
    for col in numeric_columns(kind):
        df[col] = pd.to_numeric(df[col])
    return df.reset_index(drop=True)


def config_labels(df: pd.DataFrame) -> pd.Series:
    """model, plus the config fields the row sets ('mamba2 d_state=32'; archs/names.override_label).
    A field every row that uses its mixer sets to one value, across two or more models, is the table's
    setting rather than a model's (the frontier grid's short conv on every attention layer) and is left
    out of the labels; the rest are shown, so two configs of one model never share a label."""
    def flat(row: pd.Series) -> dict:
        return {f"{row['mixers'][c]}.{k}": v
                for c, cfg in sorted(row["configs"].items()) for k, v in cfg.items()}

    if not len(df):
        return pd.Series([], dtype=object)
    cfg = df.apply(flat, axis=1)
    uses = {m: df[df["mixers"].map(lambda ms, m=m: m in ms.values())] for m in
            {m for ms in df["mixers"] for m in ms.values()}}
    shown = set()
    for key in {k for c in cfg for k in c}:
        users = uses[key.split(".", 1)[0]]
        values = {repr(cfg[i].get(key)) for i in users.index}
        if len(values) > 1 or users["model"].nunique() < 2:
            shown.add(key)
    return pd.Series([override_label(r["model"], r["mixers"], r["configs"], sorted(shown))
                      for _, r in df.iterrows()], index=df.index, dtype=object)
