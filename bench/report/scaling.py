"""Scaling tables and plots for `archbench report`: time per mode, fitted exponents, crossovers, peak
memory, state bytes, energy and utilisation, one set per (device, dtype, batch, depth, d_model,
mlp_ratio) group: every model in a group has the same shape, and the tables' headers say which.

Figures that cannot mislead: a decode step's peak memory is shown with the state / KV cache it holds
(the step alone allocates little, and attention's cache would otherwise make it look the smallest);
the bytes/s utilisation is measured against the decode bound's own yardstick, the copy bandwidth of
the step's working set (against a large copy that streams from memory, a step whose working set sits
in cache reads above 100%), and any fraction above 100% carries a note saying why it can be; energy
on a device without a counter is one line, not a table of n/a.

Glossary
  n          sequence length (seq_len); for decode, the context length before the timed step
  t(n)       median seconds per call at n (time_median_s)
  exponent   slope p of log t = p log n + c, least squares over the largest half of the ok lengths
  crossover  n where two models' times swap order, interpolated linearly in (log n, log t)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from archbench.bench.report.counters import has_figure, note_no_counter
from archbench.bench.report.decode import decode_tables, path_dash, path_labels
from archbench.bench.report.format import (
    MISSING,
    NA,
    cell_raw,
    cell_text,
    cells,
    fmt_bytes,
    fmt_joules,
    fmt_pct,
    fmt_seconds,
    is_missing,
    markdown,
    mode_rank,
    slug,
    sort_rows,
)
from archbench.bench.report.frame import config_labels, require
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.palette import styles
from archbench.bench.report.plot import Axis, Panel, Series, plot

MODE_CAPTION = {
    "prefill": "median prefill (forward) time per call",
    "train": "median train step (forward + backward) time per call",
    "decode": "median decode latency per token (one step) vs context n",
}
UTIL_COLUMNS = {
    "flops_frac_measured": "achieved FLOP/s ÷ measured matmul peak",
    "flops_frac_spec": "achieved FLOP/s ÷ datasheet peak",
    "bytes_frac_bound": "achieved bytes/s ÷ copy bandwidth measured for the step's working set (the decode "
                        "bound's: bound ÷ measured time, 1 ÷ the decode table's × bound)",
    "bytes_frac_spec": "achieved bytes/s ÷ datasheet bandwidth",
}
# Why a fraction can pass 100%, said under a table where one does (marked † in its cells).
OVER_100 = {
    "flops_frac_measured": "the matmul peak is a measurement too (the best of a few repeats of one large "
                           "matmul, taken once per process under that moment's load), not a hard limit; the "
                           "FLOPs are analytic",
    "flops_frac_spec": "the FLOPs are an analytic count, which can exceed the work the kernels do",
    "bytes_frac_bound": "the copy bandwidth is a measurement too (the best of a few repeats, taken once per "
                        "process and working-set size under that moment's load), and the bytes are modelled "
                        "(every parameter and the whole state read): a step that touches less, or ran at a "
                        "quieter moment than the copy, beats it",
    "bytes_frac_spec": "the step's working set fits in a cache, which is faster than the datasheet's memory "
                       "bandwidth",
}
# Every column this module reads, checked against the scaling Spec and Result when it is imported.
GROUP_KEYS = ("device_name", "dtype", "batch", "depth", "d_model", "mlp_ratio")
READS = require("scaling", (*GROUP_KEYS, "cell", "status", "model", "mixers", "configs", "mode", "seq_len",
                            "requested_backend",
                            "backend", "time_median_s", "peak_mem_bytes", "peak_mem_method", "state_bytes",
                            "energy_j_per_token", "energy_source", "bound_s", "device",
                            *(c for c in UTIL_COLUMNS if c != "bytes_frac_bound")), "bench/report/scaling.py")


# -- analysis ------------------------------------------------------------------------------------
def fit_exponent(ns: Sequence[float], ts: Sequence[float]) -> tuple[float, int, int, int] | None:
    """Least-squares slope of log t vs log n over the largest half of the points (at least 3).

    The lower half is left out because fixed overheads (kernel launch, Python) flatten short lengths
    and would pull the exponent below the asymptotic one; but a slope needs 3 points, so with 3-5
    lengths the largest 3 are used (512..4096 fits over 1024..4096). Returns (slope, n_from, n_to,
    n_points), or None with fewer than 3 usable lengths.
    """
    pts = sorted((float(n), float(t)) for n, t in zip(ns, ts, strict=True)
                 if not is_missing(n) and not is_missing(t) and n > 0 and t > 0)
    top = pts[-max(3, math.ceil(len(pts) / 2)):]  # an odd count keeps the middle point
    if len(pts) < 3 or len({n for n, _ in top}) < 3:
        return None
    x = np.log([n for n, _ in top])
    y = np.log([t for _, t in top])
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return slope, int(top[0][0]), int(top[-1][0]), len(top)


def crossovers(df: pd.DataFrame) -> pd.DataFrame:
    """Lengths where two models' median times swap order, per mode and pair of models.

    `df` needs columns model, seq_len, time_median_s; mode, backend and status are used when present
    (only status "ok" counts). Each model is represented by its fastest backend at each n. Between
    consecutive common lengths where the order flips, n is interpolated linearly in log-log space.
    A pair without a flip gets one row with crossover_n NaN ("none in range" in the tables).
    Columns: mode, model_a, model_b, crossover_n, faster_below, faster_above, n_from, n_to.
    """
    cols = ["mode", "model_a", "model_b", "crossover_n", "faster_below", "faster_above", "n_from", "n_to"]
    d = df.copy()
    if "mode" not in d:
        d["mode"] = ""
    if "status" in d:
        d = d[d["status"] == "ok"]
    d["time_median_s"] = pd.to_numeric(d["time_median_s"], errors="coerce")
    d = d[d["time_median_s"] > 0]  # NaN compares False: missing times drop out
    best = d.groupby(["mode", "model", "seq_len"])["time_median_s"].min()
    out = []
    for mode in sorted(best.index.get_level_values(0).unique(), key=mode_rank):
        per = best.loc[mode].unstack("model")  # (n, model)
        models = sorted(per.columns)
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                both = per[[a, b]].dropna().sort_index()
                if len(both) < 2:
                    continue
                logn = np.log(both.index.to_numpy(dtype=float))
                diff = np.log(both[a].to_numpy()) - np.log(both[b].to_numpy())  # > 0: b is faster
                keep = diff != 0  # an exact tie is not a side; interpolate across it
                logn, diff = logn[keep], diff[keep]
                n_from, n_to = int(both.index[0]), int(both.index[-1])
                found = False
                for j in range(len(diff) - 1):
                    if diff[j] * diff[j + 1] < 0:
                        frac = diff[j] / (diff[j] - diff[j + 1])
                        n_x = float(np.exp(logn[j] + frac * (logn[j + 1] - logn[j])))
                        lo, hi = (b, a) if diff[j] > 0 else (a, b)
                        out.append([mode, a, b, n_x, lo, hi, n_from, n_to])
                        found = True
                if not found and len(diff):
                    faster = b if diff[0] > 0 else a
                    out.append([mode, a, b, float("nan"), faster, faster, n_from, n_to])
    return pd.DataFrame(out, columns=cols)


# -- wide grids: one column per n ----------------------------------------------------------------
def _latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: the last ok row if there is one, else the last row (a rerun wins)."""
    df = df.assign(_ok=df["status"] == "ok")
    return df.sort_values([*keys, "_ok", "_order"]).drop_duplicates(keys, keep="last")


def _wide(g: pd.DataFrame, index: list[str], value: str, fmt: Callable[[Any], str]) -> list[pd.DataFrame]:
    """[markdown, csv] frames: rows `index`, one column per n; cells formatted / raw values."""
    frames = []
    for conv in (lambda s, v: cell_text(s, v, fmt), cell_raw):
        long = g.assign(_v=cells(g, value, conv))
        w = long.pivot(index=index, columns="seq_len", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = [*index, *(str(int(c)) for c in w.columns[len(index):])]
        frames.append(sort_rows(w, index))
    md, csv = frames
    return md.fillna(MISSING), csv


# -- scaling -------------------------------------------------------------------------------------
@dataclass
class _Group:
    """One scaling group: rows of one device, dtype, batch and width, one row per cell."""

    section: str
    prefix: str
    title: str  # the group's shape, above each of its figures
    rows: pd.DataFrame  # every status, sorted by mode, model, backend, n
    ok: pd.DataFrame
    style: dict[str, dict]  # model -> colour / marker (bench/report/palette.py), the same in every plot

    def lines(self, df: pd.DataFrame, value: str, fits: dict | None = None) -> list[Series]:
        """One line per (model, backend): solid, or dashed for an eager decode path; the backend named
        only where a model has several in the plot."""
        out = []
        names = path_labels(df)
        for (model, backend), s in df.groupby(["model", "backend"], sort=False):
            label = names[model, backend]
            e = (fits or {}).get((model, backend))
            label += f"  ~n^{e:.2f}" if e is not None else ""
            dash = path_dash(backend) if (s["mode"] == "decode").all() else "-"
            out.append((label, s["seq_len"].tolist(), s[value].tolist(),
                        {**self.style[model], "linestyle": dash}))
        return out

    def per_mode(self, df: pd.DataFrame, value: str, what: str) -> list[Panel]:
        return [Panel(f"{mode}: {what}", self.lines(gm, value))
                for mode, gm in df.groupby("mode", sort=False)]


def _exponents(grp: _Group) -> pd.DataFrame:
    fits = []
    for (mode, model, backend), s in grp.ok.groupby(["mode", "model", "backend"], sort=False):
        fit = fit_exponent(s["seq_len"].tolist(), s["time_median_s"].tolist())
        fits.append([mode, model, backend, *(fit or (None, None, None, None)), len(s)])
    cols = ["mode", "model", "backend", "exponent", "fit_from", "fit_to", "fit_points", "ok_lengths"]
    return pd.DataFrame(fits, columns=cols)


def _scaling_group(out: Outputs, grp: _Group, batch: int) -> None:
    g, ok, sec, pre, title = grp.rows, grp.ok, grp.section, grp.prefix, grp.title
    fits = _exponents(grp)
    for mode in sorted(g["mode"].unique(), key=mode_rank):
        md, csv = _wide(g[g["mode"] == mode], ["model", "backend"], "time_median_s", fmt_seconds)
        caption, stem = MODE_CAPTION.get(mode, f"median {mode} time per call"), f"{pre}_time_{slug(mode)}"
        body = out.table(sec, stem, f"{caption} (rows model, backend; columns n)", md, csv)
        if mode == "prefill":
            out.headlines.append((f"Prefill time — {title}", body))
        fm = fits[fits["mode"] == mode]
        slopes = {(a, b): None if is_missing(e) else e
                  for a, b, e in zip(fm["model"], fm["backend"], fm["exponent"], strict=True)}
        lines = grp.lines(ok[ok["mode"] == mode], "time_median_s", slopes)
        if lines:
            xlabel = "context n (tokens)" if mode == "decode" else "sequence length n (tokens)"
            out.png(sec, stem, f"{caption}, log-log; the legend gives the fitted exponent",
                    plot([Panel(f"{mode}: {caption}", lines)], Axis(xlabel, unit="n"),
                         Axis("median time per call", unit="s"), title=title))

    decode_tables(out, sec, pre, title, g, grp.style)  # bench/report/decode.py

    md = fits.assign(
        exponent=[NA if is_missing(e) else f"{e:.2f}" for e in fits["exponent"]],
        fit_range=["no fit (needs 3 lengths)" if is_missing(a) else f"{int(a)}–{int(b)}"
                   for a, b in zip(fits["fit_from"], fits["fit_to"], strict=True)],
        fit_points=[MISSING if is_missing(p) else str(int(p)) for p in fits["fit_points"]],
        ok_lengths=fits["ok_lengths"].astype(str),
    )[["mode", "model", "backend", "exponent", "fit_range", "fit_points", "ok_lengths"]]
    body = out.table(sec, f"{pre}_exponents", "fitted log-log exponent of time vs n (least squares over the "
                     "largest half of the ok lengths)", md, fits)
    out.headlines.append((f"Fitted exponents — {title}", body))

    cx = crossovers(g)
    md = cx.assign(crossover_n=["none in range" if is_missing(x) else f"{x:,.0f}" for x in cx["crossover_n"]],
                   n_range=[f"{a}–{b}" for a, b in zip(cx["n_from"], cx["n_to"], strict=True)])
    md = md[["mode", "model_a", "model_b", "crossover_n", "faster_below", "faster_above", "n_range"]]
    out.table(sec, f"{pre}_crossovers", "crossover n where two models swap time order (each at its fastest "
              "backend; log-log interpolation)", md, cx)

    methods = ", ".join(sorted(str(m) for m in ok["peak_mem_method"].dropna().unique())) or NA
    held = _with_held_state(g)
    md, csv = _wide(held, ["mode", "model", "backend"], "peak_mem_bytes", fmt_bytes)
    out.table(sec, f"{pre}_memory", f"peak memory per call (method: {methods}); decode rows: the state / KV "
              "cache held at n + the step's transient peak (the decode memory table has the two apart)",
              md, csv)
    mem = held[(held["status"] == "ok") & held["peak_mem_bytes"].notna()]
    if len(mem):
        panels = grp.per_mode(mem, "peak_mem_bytes", f"peak memory per call ({methods})")
        for panel in panels:  # a decode step's figure holds its state / KV cache (_with_held_state)
            if panel.title.startswith("decode:"):
                panel.title = f"decode: KV cache / state + step peak ({methods})"
        out.png(sec, f"{pre}_memory", "peak memory vs n, one panel per mode (log-log); decode: the state / "
                "KV cache held + the step's transient peak",
                plot(panels, Axis("sequence length n (tokens)", unit="n"), Axis("peak memory", unit="B"),
                     title=title))

    # state_bytes depends on (model, batch, n) only, not on mode or backend.
    st = g[g["state_bytes"].notna()].groupby(["model", "seq_len"], as_index=False)["state_bytes"].max()
    md, csv = _wide(st.assign(status="ok"), ["model"], "state_bytes", fmt_bytes) if len(st) else (st, st)
    out.table(sec, f"{pre}_state", f"recurrent state / KV cache bytes at batch {batch}, measured from the "
              "state tensors", md, csv)

    if has_figure(g, "energy_j_per_token"):
        md, csv = _wide(g, ["mode", "model", "backend"], "energy_j_per_token", fmt_joules)
        sources = ", ".join(sorted(str(s) for s in ok["energy_source"].dropna().unique()))
        out.table(sec, f"{pre}_energy", f"energy per token (source: {sources}; n/a: no energy counter "
                  "readable)", md, csv)
        en = ok[ok["energy_j_per_token"].notna()]
        out.png(sec, f"{pre}_energy", "energy per token vs n, one panel per mode (measured cells only)",
                plot(grp.per_mode(en, "energy_j_per_token", f"energy per token ({sources})"),
                     Axis("sequence length n (tokens)", unit="n"), Axis("energy per token", unit="J"),
                     title=title))
    else:
        note_no_counter(out, g["device"].iloc[0], str(g["device_name"].iloc[0]))

    ok = ok.assign(bytes_frac_bound=[b / t if b > 0 and t > 0 else np.nan
                                     for b, t in zip(ok["bound_s"], ok["time_median_s"], strict=True)])
    parts, empty = [], []
    series = [ok["mode"], ok["model"], ok["backend"]]
    for col, name in UTIL_COLUMNS.items():
        # Only the series that carry the figure: bytes moved are modelled for decode alone, so a
        # prefill row of the bytes table would be n/a by design, not for want of a measurement.
        has = ok[col].notna().groupby(series).transform("any")
        if has.any():
            md, _ = _wide(ok[has], ["mode", "model", "backend"], col, _pct_marked)
            over = int((ok[col] > 1).sum())
            cells_over = f"{over} cell{'s' if over > 1 else ''}"
            note = f"\n† above 100% ({cells_over}): {OVER_100[col]}.\n" if over else ""
            parts.append(f"## {name}\n\n{markdown(md)}\n{note}")
        else:
            empty.append(name)
    if empty:
        parts.append(f"Not shown, no cell has a value (no such peak is known for this device): "
                     f"{', '.join(empty)}.\n")
    util = ok[["mode", "model", "backend", "seq_len", *UTIL_COLUMNS]]
    out.table(sec, f"{pre}_util", "utilisation: achieved FLOP/s and bytes/s as a fraction of the device "
              "peaks (ok cells; columns n)", "\n".join(parts).rstrip("\n"), util)


def _pct_marked(v: float) -> str:
    """A utilisation fraction as a percentage, marked † above 100% (the table's note says why)."""
    return fmt_pct(v) + (" †" if v > 1 else "")


def _with_held_state(g: pd.DataFrame) -> pd.DataFrame:
    """Decode rows' peak memory as the state / KV cache held at n plus the step's transient peak: the
    step alone allocates little, and a preallocated KV cache is held before it, not allocated by it."""
    decode = g["mode"] == "decode"
    total = g["peak_mem_bytes"].where(~decode, g["peak_mem_bytes"] + g["state_bytes"])
    return g.assign(peak_mem_bytes=total)


def _fill_backend(g: pd.DataFrame) -> pd.Series:
    """A failed cell ran no backend: show it in the row of the backend its series ran elsewhere (the
    most common one of its ok cells), else under the backend it asked for."""
    ran = g[g["backend"].notna()].groupby(["model", "mode"])["backend"].agg(
        lambda b: b.value_counts().index[0])
    return pd.Series([b if not is_missing(b) else ran.get((m, mo), req) for b, m, mo, req in
                      zip(g["backend"], g["model"], g["mode"], g["requested_backend"], strict=True)],
                     index=g.index, dtype=object)


def scaling_tables(out: Outputs, sc: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every scaling table and plot, one set per group of one device, dtype, batch, depth, width and
    MLP ratio: a hybrid is only ever compared with pure stacks of its own shape."""
    for (dev, dtype, batch, depth, d_model, mlp), g in sc.groupby(list(GROUP_KEYS), sort=True):
        g = g.assign(model=config_labels(g), family=g["model"].astype(str))
        g = g.assign(backend=_fill_backend(g))
        keys = ["mode", "model", "backend", "seq_len"]
        g = sort_rows(_latest(g, keys), keys)
        shape = f"depth {depth} · d_model {d_model} · mlp_ratio {mlp}"
        title = f"{dev} · {dtype} · batch {batch} · {shape}"
        grp = _Group(section=f"Scaling: {title}",
                     prefix=f"scaling_{slugs[dev]}_{slug(dtype)}_b{batch}_L{depth}_d{d_model}_mlp{mlp}",
                     title=title, rows=g, ok=g[g["status"] == "ok"],
                     style=styles(g["model"], dict(zip(g["model"], g["family"], strict=True))))
        _scaling_group(out, grp, batch)
