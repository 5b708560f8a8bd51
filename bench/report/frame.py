"""Rows as tables: one DataFrame per experiment kind whose columns are exactly the schema's.

The columns are the row's own (kind, cell, status, wall_s, device_name, provenance), the Spec's fields
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

from archbench.bench.runs.schema import Row, columns, experiment, require_columns, spec_properties

NO_OVERRIDE = "default"  # a config field a row does not override, in a model's label


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
    """The rows of `kind`, newest per (cell, device) only — a rerun (e.g. `--retry-failed`) replaces
    the row before it — in load order, with numeric columns as numbers (None -> NaN)."""
    cols = list(columns(kind))
    recs = [r.flat() for r in rows if r.kind == kind]
    df = pd.DataFrame.from_records(recs, columns=cols) if recs else pd.DataFrame(columns=cols)
    df["_order"] = np.arange(len(df))
    df = df.drop_duplicates(["cell", "device_name"], keep="last")
    for col in numeric_columns(kind):
        df[col] = pd.to_numeric(df[col])
    return df.reset_index(drop=True)


def config_labels(df: pd.DataFrame, coords: list[str]) -> pd.Series:
    """model, plus "(mixer.field=value, …)" for config fields that differ between rows at the same
    coordinates: two configs of one model in one grid (attention with and without its short conv)
    would otherwise collide. Fields that only follow the coordinates do not split the label."""
    def flat(row: pd.Series) -> dict:
        return {f"{row['mixers'][c]}.{k}": v
                for c, cfg in sorted(row["configs"].items()) for k, v in cfg.items()}

    cfg = df.apply(flat, axis=1) if len(df) else pd.Series([], dtype=object)
    labels = df["model"].astype(str).copy()
    for _, sub in df.groupby("model", sort=True):
        sub_cfg = cfg[sub.index]
        varying = []
        for k in sorted({k for c in sub_cfg for k in c}):
            vals = sub_cfg.map(lambda c, k=k: repr(c.get(k)))
            if (vals.groupby([sub[c].astype(str) for c in coords]).nunique() > 1).any():
                varying.append(k)
        if varying:
            labels[sub.index] = [f"{m} ({', '.join(f'{k}={c.get(k, NO_OVERRIDE)}' for k in varying)})"
                                 for m, c in zip(sub["model"], sub_cfg, strict=True)]
    return labels
