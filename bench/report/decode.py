"""Decode tables and plots for `archbench report`, inside a scaling group: the time of one token
against context n beside its lower bound, and the memory a decode step needs — the state / KV cache
held at n beside the step's transient peak, labelled apart (a table of transient peaks alone shows
attention as the smallest mixer, because its preallocated KV cache is not allocated by the step).

Glossary
  n          context length before the timed step (seq_len)
  bound      bound_s: the bytes one step must read and write (every parameter, the whole state, the
             state it changes) over the copy bandwidth measured for a working set of that size
  × bound    time_median_s / bound_s: how far the step is from moving its bytes at copy speed
  held       state_bytes: the state / KV cache at (batch, n), measured from the state tensors
  transient  peak_mem_bytes: the peak the step allocates above what was held before it
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from archbench.bench.report.format import (
    MISSING,
    NA,
    cell_raw,
    fmt_bytes,
    fmt_seconds,
    is_missing,
    short_status,
    sort_rows,
)
from archbench.bench.report.frame import require
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.plot import Axis, Panel, plot

READS = require("scaling", ("mode", "model", "backend", "seq_len", "status", "time_median_s", "bound_s",
                            "bound_bytes", "bound_bandwidth", "state_bytes", "peak_mem_bytes",
                            "peak_mem_method", "warmup_s"), "bench/report/decode.py")
BOUND_CAPTION = ("decode: median time per token at context n and, in brackets, measured / bound (bound: "
                 "bytes one step must read and write — parameters, state / KV cache, the state it changes — "
                 "over the copy bandwidth measured for a working set of that size; n/a: no bound recorded)")


def _ratio_text(status: str, t: Any, bound: Any) -> str:
    if status != "ok":
        return short_status(status)
    if is_missing(t):
        return NA
    ratio = NA if is_missing(bound) or bound <= 0 else f"{t / bound:.1f}×"
    return f"{fmt_seconds(t)} ({ratio})"


def _memory_text(status: str, held: Any, transient: Any) -> str:
    if status != "ok":
        return short_status(status)
    held_s = NA if is_missing(held) else fmt_bytes(held)
    peak_s = NA if is_missing(transient) else fmt_bytes(transient)
    return f"{held_s} + {peak_s}"


def _path(backend: str) -> str:
    return "cudagraph" if "cudagraph" in backend else "compiled" if "compiled" in backend else "eager"


def path_dash(backend: str) -> str:
    """Line style of a decode path: solid compiled or graphed, dashed eager (dotted is for bounds)."""
    return "--" if _path(backend) == "eager" else "-"


def path_labels(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(model, backend) -> legend label: the model alone where it ran one backend in `df`, else the model
    with its decode path (compiled, cudagraph, eager), or with the backend where paths do not tell its
    rows apart."""
    out = {}
    for model, g in df.groupby("model", sort=False):
        backends = list(dict.fromkeys(g["backend"]))
        paths = [_path(b) for b in backends]
        distinct = len(set(paths)) == len(paths)
        for b, p in zip(backends, paths, strict=True):
            out[model, b] = model if len(backends) == 1 else f"{model} ({p if distinct else b})"
    return out


def _grid(g: pd.DataFrame, text: list[str]) -> pd.DataFrame:
    """Rows model, backend; one column per n; cells `text`."""
    w = g.assign(_v=text).pivot(index=["model", "backend"], columns="seq_len", values="_v")
    w = w.reindex(columns=sorted(w.columns)).reset_index()
    w.columns = ["model", "backend", *(str(int(c)) for c in w.columns[2:])]
    return sort_rows(w, ["model", "backend"]).fillna(MISSING)


def decode_tables(out: Outputs, section: str, prefix: str, title: str, g: pd.DataFrame,
                  style: dict[str, dict]) -> None:
    """The decode tables and plots of one scaling group (`g`: its rows, one per cell, every status)."""
    g = g[g["mode"] == "decode"]
    if g.empty:
        return
    ok = g[g["status"] == "ok"]
    status, t, bound = g["status"].tolist(), g["time_median_s"].tolist(), g["bound_s"].tolist()

    md = _grid(g, [_ratio_text(*x) for x in zip(status, t, bound, strict=True)])
    over = [x / b if s == "ok" and not is_missing(b) and b > 0 else None
            for s, x, b in zip(status, t, bound, strict=True)]
    raw = [cell_raw(s, x) for s, x in zip(status, t, strict=True)]
    csv = g.assign(time_median_s=raw, time_over_bound=over)
    csv = sort_rows(csv, ["model", "backend", "seq_len"])[
        ["model", "backend", "seq_len", "time_median_s", "bound_s", "time_over_bound", "bound_bytes",
         "bound_bandwidth", "warmup_s", "status"]]
    body = out.table(section, f"{prefix}_decode_bound", BOUND_CAPTION, md, csv)
    out.headlines.append((f"Decode time per token (measured / bound) — {title}", body))

    lines = []
    names = path_labels(ok)
    for (model, backend), s in ok.groupby(["model", "backend"], sort=True):
        lines.append((names[model, backend], s["seq_len"].tolist(), s["time_median_s"].tolist(),
                      {**style[model], "linestyle": path_dash(backend)}))
    bounds = ok[ok["bound_s"].notna()].groupby(["model", "seq_len"], as_index=False)["bound_s"].min()
    for model, s in bounds.groupby("model", sort=True):
        lines.append((f"_{model} bound", s["seq_len"].tolist(), s["bound_s"].tolist(),
                      {"color": style[model]["color"], "linestyle": ":", "marker": None}))
    if len(bounds):
        lines.append(("dotted: the model's bytes-moved bound", [], [], {"color": "0.3", "linestyle": ":"}))
    if lines:
        out.png(section, f"{prefix}_decode_latency", "decode latency per token vs context n (log-log), each "
                "model and decode path (solid: compiled or graphed; dashed: eager); dotted: the model's "
                "bytes-moved bound",
                plot([Panel("decode: time per token (solid compiled or graphed, dashed eager)", lines)],
                     Axis("context n (tokens)", unit="n"), Axis("median time per token", unit="s"),
                     title=title))

    methods = ", ".join(sorted(str(m) for m in ok["peak_mem_method"].dropna().unique())) or NA
    held, peak = g["state_bytes"].tolist(), g["peak_mem_bytes"].tolist()
    md = _grid(g, [_memory_text(*x) for x in zip(status, held, peak, strict=True)])
    csv = sort_rows(g.assign(held_bytes=held, transient_peak_bytes=peak), ["model", "backend", "seq_len"])[
        ["model", "backend", "seq_len", "held_bytes", "transient_peak_bytes", "status"]]
    out.table(section, f"{prefix}_decode_memory", "decode memory at context n: state / KV cache held "
              f"(measured from the state tensors) + the step's transient peak (method: {methods})", md, csv)
    mem = []
    for model, s in ok.groupby("model", sort=True):
        h = s.groupby("seq_len", as_index=False)["state_bytes"].max()
        mem.append((model, h["seq_len"].tolist(), h["state_bytes"].tolist(),
                    {**style[model], "linestyle": "-"}))
        p = s[s["peak_mem_bytes"].notna()].groupby("seq_len", as_index=False)["peak_mem_bytes"].max()
        if len(p):
            mem.append((f"_{model} transient peak", p["seq_len"].tolist(), p["peak_mem_bytes"].tolist(),
                        {**style[model], "linestyle": "--", "marker": None}))
    if any(label.startswith("_") for label, *_ in mem):
        mem.append(("dashed: the step's transient peak", [], [], {"color": "0.3", "linestyle": "--"}))
    if mem:
        out.png(section, f"{prefix}_decode_memory", "decode memory vs context n (log-log): solid, the "
                "state / KV cache held; dashed, the step's transient peak",
                plot([Panel("decode memory: state / KV cache held (solid) and the step's transient peak "
                            "(dashed)", mem)], Axis("context n (tokens)", unit="n"), Axis("memory", unit="B"),
                     title=title))
