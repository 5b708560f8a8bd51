"""`archbench report`: rebuild the tables (Markdown + CSV) and plots (PNG) in results/ from stored rows.

Reads every row under <results>/raw/ (JSON Lines, bench/store.py) and every pytest-benchmark JSON
file under <results>/raw/pytest-benchmark/, and writes only into the top level of <results>/:

  scaling_<device>_<dtype>_b<batch>_d<d_model>_*  per device group: time per mode, fitted exponents,
                                                  crossovers, peak memory, state bytes, energy, utilisation
  retrieval_<device>_*                            best-lr accuracy grids and recall plots
  pytest_benchmark.{md,csv}                       pytest-benchmark runs
  README.md                                       an index of all of it, with a provenance summary

Output is deterministic (sorted rows, no timestamps, PNGs without the "Software" stamp), so running
twice changes no byte. Files an earlier run wrote that this run does not are deleted; the list lives
in <results>/.report-manifest. raw/ is never touched. Markdown shows human units and "n/a" for a
missing figure (never an invented number); CSV keeps raw SI values (seconds, bytes, joules), empty
when missing, and a failed cell's status ("oom", "timeout", "error", "skipped") in place of a value.

Glossary
  n          sequence length (seq_len); for decode, the context length before the timed step
  t(n)       median seconds per call at n (time_median_s)
  exponent   slope p of log t = p log n + c, least squares over the largest half of the ok lengths
  crossover  n where two mixers' times swap order, interpolated linearly in (log n, log t)
  K          key-value pairs per MQAR example (num_kv_pairs)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from archbench.bench.store import CorruptResultError, load_rows

MARK_START = "<!-- archbench:results:start -->"
MARK_END = "<!-- archbench:results:end -->"
MANIFEST = ".report-manifest"
NA = "n/a"
MISSING = "-"  # a cell that was never run (as opposed to run and failed, or run without a figure)
MODE_ORDER = ("prefill", "train", "decode")
MODE_CAPTION = {
    "prefill": "median prefill (forward) time per call",
    "train": "median train step (forward + backward) time per call",
    "decode": "median decode latency per token (one step) vs context n",
}
UTIL_COLUMNS = {
    "util_flops_measured": "achieved FLOP/s ÷ measured matmul peak",
    "util_flops_spec": "achieved FLOP/s ÷ datasheet peak",
    "util_bytes_measured": "achieved bytes/s ÷ measured copy bandwidth",
    "util_bytes_spec": "achieved bytes/s ÷ datasheet bandwidth",
}
SCALING_FIELDS = ("mode", "seq_len", "batch", "d_model", "arch", "backend", "time_median_s", "peak_mem_bytes",
                  "peak_mem_method", "state_bytes", "energy_j_per_token", "energy_source", *UTIL_COLUMNS)
NUMERIC_FIELDS = ("seq_len", "batch", "d_model", "time_median_s", "peak_mem_bytes", "state_bytes",
                  "energy_j_per_token", *UTIL_COLUMNS, "accuracy", "lr", "num_kv_pairs", "n_layer", "params",
                  "steps")
RETRIEVAL_FIELDS = ("task", "num_kv_pairs", "n_layer", "lr", "accuracy", "accuracy_by_len", "params", "steps")


# -- formatting ----------------------------------------------------------------------------------
def _human(v: float, steps: Sequence[tuple[float, str]]) -> str:
    scale, unit = next(((s, u) for s, u in steps if abs(v) >= s), steps[-1])
    x = v / scale
    if unit == "B":
        return f"{int(v)} B"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2  # three significant figures
    return f"{x:.{digits}f} {unit}"


def fmt_seconds(v: float) -> str:
    return _human(v, ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")))


def fmt_bytes(v: float) -> str:
    return _human(v, ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")))


def fmt_joules(v: float) -> str:
    return _human(v, ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")))


def fmt_pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _slug(text: str, limit: int = 40) -> str:
    """Lower-case, [a-z0-9-] only: stable, filesystem-safe file name parts."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit].strip("-") or "unknown"


def _device_slugs(names: Iterable[str]) -> dict[str, str]:
    """Slug per device name; names whose slugs collide (truncation) get a stable suffix."""
    names = sorted(set(names))
    slugs = {n: _slug(n) for n in names}
    taken = list(slugs.values())
    # crc32, not hash(): hash() of a str is salted per process.
    return {n: f"{s}-{zlib.crc32(n.encode()):08x}" if taken.count(s) > 1 else s for n, s in slugs.items()}


def _mode_rank(mode: Any) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def _sorted(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    def key(s: pd.Series) -> pd.Series:
        return s.map(lambda m: _mode_rank(m)[0]) if s.name == "mode" else s

    return df.sort_values(cols, key=key, kind="stable").reset_index(drop=True)


def _markdown(df: pd.DataFrame) -> str:
    # disable_numparse: cells are already formatted text; tabulate must not re-round "0.950".
    return df.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def _csv_value(v: Any) -> Any:
    # Six significant figures is more than any timing here resolves, and drops repr noise (0.1 + 0.2).
    if isinstance(v, float):
        return None if math.isnan(v) else int(v) if v.is_integer() else float(f"{v:.6g}")
    return v


def _csv(df: pd.DataFrame) -> bytes:
    # Built column by column as object dtype: pandas would turn an int column with a gap back into floats.
    clean = pd.DataFrame({c: pd.Series([_csv_value(v) for v in df[c]], dtype=object) for c in df.columns},
                         columns=df.columns)
    return clean.to_csv(index=False, lineterminator="\n").encode("utf-8")


# -- analysis ------------------------------------------------------------------------------------
def fit_exponent(ns: Sequence[float], ts: Sequence[float]) -> tuple[float, int, int, int] | None:
    """Least-squares slope of log t vs log n over the largest half of the points (at least 3).

    The lower half is left out because fixed overheads (kernel launch, Python) flatten short lengths
    and would pull the exponent below the asymptotic one. Returns (slope, n_from, n_to, n_points),
    or None with fewer than 3 usable points in that half.
    """
    pts = sorted((float(n), float(t)) for n, t in zip(ns, ts, strict=True)
                 if not _missing(n) and not _missing(t) and n > 0 and t > 0)
    top = pts[len(pts) // 2:]  # an odd count keeps the middle point
    if len({n for n, _ in top}) < 3:
        return None
    x = np.log([n for n, _ in top])
    y = np.log([t for _, t in top])
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return slope, int(top[0][0]), int(top[-1][0]), len(top)


def crossovers(df: pd.DataFrame) -> pd.DataFrame:
    """Lengths where two archs' median times swap order, per mode and pair of archs.

    `df` needs columns arch, seq_len, time_median_s; mode, backend and status are used when present
    (only status "ok" counts). Each arch is represented by its fastest backend at each n. Between
    consecutive common lengths where the order flips, n is interpolated linearly in log-log space.
    A pair without a flip gets one row with crossover_n NaN ("none in range" in the tables).
    Columns: mode, arch_a, arch_b, crossover_n, faster_below, faster_above, n_from, n_to.
    """
    cols = ["mode", "arch_a", "arch_b", "crossover_n", "faster_below", "faster_above", "n_from", "n_to"]
    d = df.copy()
    if "mode" not in d:
        d["mode"] = ""
    if "status" in d:
        d = d[d["status"] == "ok"]
    d["time_median_s"] = pd.to_numeric(d["time_median_s"], errors="coerce")
    d = d[d["time_median_s"] > 0]  # NaN compares False: missing times drop out
    best = d.groupby(["mode", "arch", "seq_len"])["time_median_s"].min()
    out = []
    for mode in sorted(best.index.get_level_values(0).unique(), key=_mode_rank):
        per = best.loc[mode].unstack("arch")  # (n, arch)
        archs = sorted(per.columns)
        for i, a in enumerate(archs):
            for b in archs[i + 1:]:
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


# -- collected output ----------------------------------------------------------------------------
@dataclass
class _Outputs:
    """Everything one run writes, built in memory first so stale files can be told apart."""

    files: dict[str, bytes] = field(default_factory=dict)  # name in results/ -> content
    index: list[tuple[str, str, str]] = field(default_factory=list)  # (section, file name, caption)
    headlines: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown) for the README
    notes: list[str] = field(default_factory=list)

    def table(self, section: str, stem: str, caption: str, md: pd.DataFrame | str, csv: pd.DataFrame) -> str:
        """Write stem.md (formatted) and stem.csv (raw values); returns the markdown body."""
        body = md if isinstance(md, str) else _markdown(md)
        self.files[f"{stem}.md"] = f"# {caption}\n\n{section}\n\n{body}\n".encode()
        self.files[f"{stem}.csv"] = _csv(csv)
        self.index.append((section, f"{stem}.md", caption))
        return body

    def png(self, section: str, stem: str, caption: str, png: bytes) -> None:
        self.files[f"{stem}.png"] = png
        self.index.append((section, f"{stem}.png", caption))


Series = tuple[str, Sequence[float], Sequence[float], dict]  # (label, xs, ys, matplotlib style)


def _plot(panels: list[tuple[str, list[Series]]], xlabel: str, ylabel: str, xscale: str = "log",
          yscale: str = "log") -> bytes:
    """PNG bytes of one subplot per panel. Deterministic: default style, no Software stamp."""
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg used for PNG

    with mpl.style.context("default"), mpl.rc_context({"svg.hashsalt": "archbench"}):
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig = Figure(figsize=(5.2 * ncols, 3.8 * nrows))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, (title, series) in zip(axes, panels, strict=False):
            for label, xs, ys, style in series:
                ax.plot(xs, ys, label=label, **style)
            ax.set_xscale("log", base=2) if xscale == "log2" else ax.set_xscale(xscale)
            ax.set_yscale(yscale)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            if series:
                ax.legend(fontsize=7, loc="best")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        # Fixed margins rather than tight_layout: one draw fewer per figure, same bytes every run.
        fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.98, bottom=0.55 / fig.get_figheight(),
                            top=1 - 0.35 / fig.get_figheight(), wspace=0.3, hspace=0.45)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return buf.getvalue()


def _styles(labels: Iterable[str]) -> dict[str, dict]:
    colors = [f"C{i}" for i in range(10)]
    return {lab: {"color": colors[i % 10], "marker": "os^Dv<>ph*"[i // 10 % 10]}
            for i, lab in enumerate(sorted(set(labels)))}


# -- row preparation -----------------------------------------------------------------------------
def _normalise(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.reset_index(drop=True).copy()
    for col in ("kind", "status", "device_name", "dtype", "provenance", "arch_cfg", "seq_len", "d_model",
                *SCALING_FIELDS, *RETRIEVAL_FIELDS):
        if col not in rows:
            rows[col] = None
    for col in NUMERIC_FIELDS:  # a stray string becomes NaN ("n/a"), not a TypeError in a comparison
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    rows["_order"] = np.arange(len(rows))  # load order: sorted files, then line order
    rows["status"] = rows["status"].map(lambda s: "unknown" if _missing(s) else str(s))
    prov_dev = rows["provenance"].map(lambda p: p.get("device_name") if isinstance(p, dict) else None)
    rows["device_name"] = [d if not _missing(d) else p if not _missing(p) else "unknown device"
                           for d, p in zip(rows["device_name"], prov_dev, strict=True)]
    rows["dtype"] = rows["dtype"].map(lambda s: "unknown" if _missing(s) else str(s))
    rows["backend"] = rows["backend"].map(lambda s: "default" if _missing(s) else str(s))
    return rows


def _short_status(status: str) -> str:
    return status.split(":", 1)[0].strip()  # "error: CUDA failure ..." -> "error"


def _arch_labels(df: pd.DataFrame, coords: list[str]) -> pd.Series:
    """arch, plus "(key=value)" for arch_cfg fields that differ between rows at the same coordinates.

    Two configs of one mixer in one grid (e.g. hybrid patterns) would otherwise collide. Fields that
    only follow the coordinates (d_model, or n_head derived from it) do not split the label.
    """
    cfg = df["arch_cfg"].map(lambda c: c if isinstance(c, dict) else {})
    labels = df["arch"].astype(str).copy()
    for arch, sub in df.groupby("arch", sort=True):
        sub_cfg = cfg[sub.index]
        varying = []
        for k in sorted({k for c in sub_cfg for k in c}):
            vals = sub_cfg.map(lambda c, k=k: json.dumps(c.get(k), sort_keys=True))
            if (vals.groupby([sub[c].astype(str) for c in coords]).nunique() > 1).any():
                varying.append(k)
        if varying:
            labels[sub.index] = [
                f"{arch} ({', '.join(f'{k}={c.get(k)}' for k in varying)})" for c in sub_cfg
            ]
    return labels


def _latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: the last ok row if there is one, else the last row (a rerun wins)."""
    df = df.assign(_ok=df["status"] == "ok")
    return df.sort_values([*keys, "_ok", "_order"]).drop_duplicates(keys, keep="last")


def _cell(status: str, value: Any, fmt: Callable[[Any], str]) -> str:
    if status != "ok":
        return _short_status(status)
    return NA if _missing(value) else fmt(value)


def _raw(status: str, value: Any) -> Any:
    if status != "ok":
        return _short_status(status)
    return None if _missing(value) else value


def _cells(g: pd.DataFrame, value: str, conv: Callable[[str, Any], Any]) -> list[Any]:
    return [conv(s, v) for s, v in zip(g["status"], g[value], strict=True)]


def _wide(g: pd.DataFrame, index: list[str], value: str, fmt: Callable[[Any], str]) -> list[pd.DataFrame]:
    """[markdown, csv] frames: rows `index`, one column per n; cells formatted / raw values."""
    frames = []
    for conv in (lambda s, v: _cell(s, v, fmt), _raw):
        long = g.assign(_v=_cells(g, value, conv))
        w = long.pivot(index=index, columns="seq_len", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = [*index, *(str(int(c)) for c in w.columns[len(index):])]
        frames.append(_sorted(w, index))
    md, csv = frames
    return md.fillna(MISSING), csv


# -- scaling -------------------------------------------------------------------------------------
@dataclass
class _Group:
    """One scaling group: rows of one device, dtype, batch and width, one row per cell."""

    section: str
    prefix: str
    rows: pd.DataFrame  # every status, sorted by mode, arch, backend, n
    ok: pd.DataFrame
    style: dict[str, dict]  # arch -> colour / marker, stable across this group's plots
    dashes: dict[str, str]  # backend -> line style

    def lines(self, df: pd.DataFrame, value: str, fits: dict | None = None) -> list[Series]:
        out = []
        for (arch, backend), s in df.groupby(["arch", "backend"], sort=False):
            label = f"{arch} ({backend})"
            if fits is not None:
                e = fits.get((arch, backend))
                label += f" ~ n^{e:.2f}" if e is not None else " (no fit)"
            out.append((label, s["seq_len"].tolist(), s[value].tolist(),
                        {**self.style[arch], "linestyle": self.dashes[backend]}))
        return out

    def per_mode(self, df: pd.DataFrame, value: str, what: str) -> list[tuple[str, list[Series]]]:
        return [(f"{mode} {what}", self.lines(gm, value)) for mode, gm in df.groupby("mode", sort=False)]


def _exponents(grp: _Group) -> pd.DataFrame:
    fits = []
    for (mode, arch, backend), s in grp.ok.groupby(["mode", "arch", "backend"], sort=False):
        fit = fit_exponent(s["seq_len"].tolist(), s["time_median_s"].tolist())
        fits.append([mode, arch, backend, *(fit or (None, None, None, None)), len(s)])
    cols = ["mode", "arch", "backend", "exponent", "fit_from", "fit_to", "fit_points", "ok_lengths"]
    return pd.DataFrame(fits, columns=cols)


def _scaling_group(out: _Outputs, grp: _Group, batch: int) -> None:
    g, ok, sec, pre = grp.rows, grp.ok, grp.section, grp.prefix
    title = sec.removeprefix("Scaling: ")
    fits = _exponents(grp)
    for mode in sorted(g["mode"].unique(), key=_mode_rank):
        md, csv = _wide(g[g["mode"] == mode], ["arch", "backend"], "time_median_s", fmt_seconds)
        caption, stem = MODE_CAPTION.get(mode, f"median {mode} time per call"), f"{pre}_time_{_slug(mode)}"
        body = out.table(sec, stem, f"{caption} (rows arch, backend; columns n)", md, csv)
        if mode == "prefill":
            out.headlines.append((f"Prefill time — {title}", body))
        fm = fits[fits["mode"] == mode]
        slopes = {(a, b): None if _missing(e) else e
                  for a, b, e in zip(fm["arch"], fm["backend"], fm["exponent"], strict=True)}
        lines = grp.lines(ok[ok["mode"] == mode], "time_median_s", slopes)
        if lines:
            xlabel = "context n (tokens)" if mode == "decode" else "n (tokens)"
            out.png(sec, stem, f"{caption}, log-log; the legend gives the fitted exponent",
                    _plot([(f"{mode} — {title}", lines)], xlabel, "median seconds"))

    md = fits.assign(
        exponent=[NA if _missing(e) else f"{e:.2f}" for e in fits["exponent"]],
        fit_range=["no fit (needs 3 lengths in the upper half)" if _missing(a) else f"{int(a)}–{int(b)}"
                   for a, b in zip(fits["fit_from"], fits["fit_to"], strict=True)],
        fit_points=[MISSING if _missing(p) else str(int(p)) for p in fits["fit_points"]],
        ok_lengths=fits["ok_lengths"].astype(str),
    )[["mode", "arch", "backend", "exponent", "fit_range", "fit_points", "ok_lengths"]]
    body = out.table(sec, f"{pre}_exponents", "fitted log-log exponent of time vs n (least squares over the "
                     "largest half of the ok lengths)", md, fits)
    out.headlines.append((f"Fitted exponents — {title}", body))

    cx = crossovers(g)
    md = cx.assign(crossover_n=["none in range" if _missing(x) else f"{x:,.0f}" for x in cx["crossover_n"]],
                   n_range=[f"{a}–{b}" for a, b in zip(cx["n_from"], cx["n_to"], strict=True)])
    md = md[["mode", "arch_a", "arch_b", "crossover_n", "faster_below", "faster_above", "n_range"]]
    out.table(sec, f"{pre}_crossovers", "crossover n where two archs swap time order (each at its fastest "
              "backend; log-log interpolation)", md, cx)

    methods = ", ".join(sorted(str(m) for m in ok["peak_mem_method"].dropna().unique())) or NA
    md, csv = _wide(g, ["mode", "arch", "backend"], "peak_mem_bytes", fmt_bytes)
    out.table(sec, f"{pre}_memory", f"peak memory per call (method: {methods})", md, csv)
    mem = ok[ok["peak_mem_bytes"].notna()]
    if len(mem):
        out.png(sec, f"{pre}_memory", "peak memory vs n, one panel per mode (log-log)",
                _plot(grp.per_mode(mem, "peak_mem_bytes", "peak memory"), "n (tokens)", "peak bytes"))

    # state_bytes depends on (arch, batch, n) only, not on mode or backend.
    st = g[g["state_bytes"].notna()].groupby(["arch", "seq_len"], as_index=False)["state_bytes"].max()
    md, csv = _wide(st.assign(status="ok"), ["arch"], "state_bytes", fmt_bytes) if len(st) else (st, st)
    out.table(sec, f"{pre}_state", f"recurrent state / KV cache bytes at batch {batch}, measured from the "
              "state tensors", md, csv)

    md, csv = _wide(g, ["mode", "arch", "backend"], "energy_j_per_token", fmt_joules)
    sources = ", ".join(sorted(str(s) for s in ok["energy_source"].dropna().unique())) or "none readable"
    out.table(sec, f"{pre}_energy", f"energy per token (source: {sources}; n/a: no energy counter readable)",
              md, csv)
    en = ok[ok["energy_j_per_token"].notna()]
    if len(en):
        out.png(sec, f"{pre}_energy", "energy per token vs n, one panel per mode (measured cells only)",
                _plot(grp.per_mode(en, "energy_j_per_token", "energy per token"), "n (tokens)", "joules"))

    parts, empty = [], []
    for col, name in UTIL_COLUMNS.items():
        if ok[col].notna().any():
            md, _ = _wide(ok, ["mode", "arch", "backend"], col, fmt_pct)
            parts.append(f"## {name}\n\n{_markdown(md)}\n")
        else:
            empty.append(name)
    if empty:
        parts.append(f"n/a in every cell: {', '.join(empty)}.\n")
    util = ok[["mode", "arch", "backend", "seq_len", *UTIL_COLUMNS]]
    out.table(sec, f"{pre}_util", "utilisation: achieved FLOP/s and bytes/s as a fraction of the device "
              "peaks (ok cells; columns n)", "\n".join(parts).rstrip("\n"), util)


def _scaling(out: _Outputs, sc: pd.DataFrame, slugs: dict[str, str]) -> None:
    required = ["arch", "mode", "seq_len", "batch", "d_model"]
    bad = sc[required].isna().any(axis=1)
    if bad.any():
        out.notes.append(f"{int(bad.sum())} scaling row(s) lack one of {', '.join(required)}; left out.")
    sc = sc[~bad].astype({"seq_len": int, "batch": int, "d_model": int})
    groups = sc.groupby(["device_name", "dtype", "batch", "d_model"], sort=True)
    for (dev, dtype, batch, d_model), g in groups:
        g = g.assign(arch=_arch_labels(g, ["mode", "seq_len"]))
        keys = ["mode", "arch", "backend", "seq_len"]
        g = _sorted(_latest(g, keys), keys)
        backends = sorted(g["backend"].unique())
        grp = _Group(section=f"Scaling: {dev} · {dtype} · batch {batch} · d_model {d_model}",
                     prefix=f"scaling_{slugs[dev]}_{_slug(dtype)}_b{batch}_d{d_model}", rows=g,
                     ok=g[g["status"] == "ok"], style=_styles(g["arch"]),
                     dashes={b: ("-", "--", ":", "-.")[i % 4] for i, b in enumerate(backends)})
        _scaling_group(out, grp, batch)


# -- retrieval -----------------------------------------------------------------------------------
RETRIEVAL_KEYS = ["device_name", "task", "seq_len", "num_kv_pairs", "d_model", "n_layer", "arch"]


def _k(k: int) -> str:
    return MISSING if k < 0 else str(k)


def _best_lr(rt: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the learning rate with the highest accuracy (ties: the smaller lr). A cell
    whose every run failed keeps the row of its smallest lr, so the grid shows a status, not a number."""
    rt = rt.assign(_ok=(rt["status"] == "ok") & rt["accuracy"].notna(),
                   _acc=rt["accuracy"].astype(float).fillna(-1.0), _lr=rt["lr"].astype(float).fillna(0.0))
    order = [*RETRIEVAL_KEYS, "_ok", "_acc", "_lr", "_order"]
    rt = rt.sort_values(order, ascending=[True] * len(RETRIEVAL_KEYS) + [False, False, True, False])
    return rt.drop_duplicates(RETRIEVAL_KEYS, keep="first")


def _accuracy_tables(out: _Outputs, section: str, prefix: str, dev: str, gd: pd.DataFrame) -> None:
    parts, csv_parts = [], []
    for (task, n, k), g in gd.groupby(["task", "seq_len", "num_kv_pairs"], sort=True):
        cells = _cells(g, "accuracy", lambda s, a: _cell(s, a, "{:.3f}".format))
        g = g.assign(layers=g["n_layer"].map(_k), _v=cells)
        w = g.pivot(index=["arch", "layers"], columns="d_model", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = ["arch", "n_layer", *(f"d={c}" for c in w.columns[2:])]
        body = _markdown(_sorted(w, ["arch", "n_layer"]).fillna(MISSING))
        parts.append(f"## {task}, train/test length n={n}, K={_k(k)}\n\n{body}\n")
        if task == "mqar":
            out.headlines.append((f"MQAR accuracy (best lr) — {dev}, n={n}, K={_k(k)}", body))
        csv_parts.append(g.assign(accuracy=_cells(g, "accuracy", _raw)))
    csv = pd.concat(csv_parts)
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k),
                     n_layer=csv["n_layer"].map(lambda k: None if k < 0 else k), best_lr=csv["lr"])
    csv = csv[["task", "seq_len", "num_kv_pairs", "arch", "n_layer", "d_model", "accuracy", "best_lr",
               "state_bytes", "params", "steps", "status"]]
    out.table(section, f"{prefix}_accuracy", "held-out exact-match accuracy at the best learning rate (rows "
              "arch, columns d_model; one table per task, n, K)", "\n".join(parts).rstrip("\n"), csv)


def _retrieval_plots(out: _Outputs, section: str, prefix: str, ok: pd.DataFrame) -> None:
    style = _styles(ok["arch"])
    for task, gt in ok.groupby("task", sort=True):
        by_width, by_state, by_len = [], [], []
        for (n, k), gp in gt.groupby(["seq_len", "num_kv_pairs"], sort=True):
            title = f"{task} n={n}, K={_k(k)}"
            archs = list(gp.groupby(["arch", "n_layer"], sort=True))
            by_width.append((title, [(f"{a} (L={_k(nl)})" if nl >= 0 else a, s["d_model"].tolist(),
                                      s["accuracy"].tolist(), style[a]) for (a, nl), s in archs]))
            sb = gp[gp["state_bytes"].notna()].sort_values("state_bytes")
            by_state.append((title, [(a, s["state_bytes"].tolist(), s["accuracy"].tolist(),
                                      {**style[a], "linestyle": "none"})
                                     for a, s in sb.groupby("arch", sort=True)]))
            lens = []
            for (a, _), s in archs:  # the widest model per arch: the one with the most capacity to generalise
                r = s.sort_values("d_model").iloc[-1]
                acc = r["accuracy_by_len"] if isinstance(r["accuracy_by_len"], dict) else {}
                pts = sorted((int(t), float(v)) for t, v in acc.items() if not _missing(v))
                if pts:
                    lens.append((f"{a} d={r['d_model']}", [t for t, _ in pts], [v for _, v in pts], style[a]))
            if lens:
                by_len.append((title, lens))
        stem = f"{prefix}_{_slug(task)}"
        out.png(section, f"{stem}_acc_vs_dmodel", f"{task}: accuracy vs d_model, one panel per (n, K)",
                _plot(by_width, "d_model", "accuracy", xscale="log2", yscale="linear"))
        if any(lines for _, lines in by_state):
            out.png(section, f"{stem}_acc_vs_state", f"{task}: accuracy vs measured state bytes (the recall "
                    "frontier)", _plot(by_state, "state bytes (batch 1)", "accuracy", yscale="linear"))
        if by_len:
            out.png(section, f"{stem}_acc_vs_len", f"{task}: accuracy vs test length, widest model per arch",
                    _plot(by_len, "test length", "accuracy", xscale="log2", yscale="linear"))


def _retrieval(out: _Outputs, rt: pd.DataFrame, slugs: dict[str, str]) -> None:
    required = ["arch", "task", "seq_len", "d_model"]
    bad = rt[required].isna().any(axis=1)
    if bad.any():
        out.notes.append(f"{int(bad.sum())} retrieval row(s) lack one of {', '.join(required)}; left out.")
    rt = rt[~bad].astype({"seq_len": int, "d_model": int})
    # -1 stands for "none" (a task without K, a row without n_layer) so the keys sort and group.
    rt = rt.assign(num_kv_pairs=rt["num_kv_pairs"].map(lambda k: -1 if _missing(k) else int(k)),
                   n_layer=rt["n_layer"].map(lambda k: -1 if _missing(k) else int(k)))
    rt = rt.assign(arch=_arch_labels(rt, RETRIEVAL_KEYS[:-1]))
    for dev, gd in _best_lr(rt).groupby("device_name", sort=True):
        section, prefix = f"Retrieval: {dev}", f"retrieval_{slugs[dev]}"
        _accuracy_tables(out, section, prefix, dev, gd)
        _retrieval_plots(out, section, prefix, gd[gd["_ok"]])


# -- pytest-benchmark ----------------------------------------------------------------------------
def _pytest_benchmark(out: _Outputs, folder: Path) -> list[str]:
    """Table of every benchmark in folder/*.json; returns provenance lines (machine, commit) per file."""
    recs, prov = [], []
    for f in sorted(folder.glob("*.json")):
        try:
            data = json.loads(f.read_text("utf-8"))
            benches = data.get("benchmarks", [])
        except (ValueError, AttributeError) as exc:
            raise CorruptResultError(f"unreadable pytest-benchmark file {f}: {exc}") from None
        machine = data.get("machine_info") or {}
        cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
        commit = data.get("commit_info") or {}
        where = cpu.get("brand_raw") or machine.get("node") or "unknown machine"
        dirty = "+dirty" if commit.get("dirty") else ""
        prov.append(f"`{f.name}`: {where}, commit {str(commit.get('id') or 'unknown')[:12]}{dirty}")
        for b in benches:
            st = b.get("stats") or {}
            rec = {"file": f.name, "group": b.get("group") or "", "name": b.get("name"),
                   "params": json.dumps(b["params"], sort_keys=True) if b.get("params") else "",
                   "median_s": st.get("median"), "min_s": st.get("min"), "max_s": st.get("max"),
                   "rounds": st.get("rounds")}
            for k, v in sorted((b.get("extra_info") or {}).items()):
                rec[k if k not in rec else f"extra_{k}"] = json.dumps(v, sort_keys=True) if isinstance(
                    v, dict | list) else v
            recs.append(rec)
    if not recs:
        return prov
    df = pd.DataFrame.from_records(recs)
    base = ["group", "name", "params", "file", "median_s", "min_s", "max_s", "rounds"]
    df = df[base + sorted(c for c in df.columns if c not in base)]
    df = df.sort_values(["group", "name", "params", "file"], kind="stable").reset_index(drop=True)
    md = df.copy()
    for c in ("median_s", "min_s", "max_s"):
        md[c] = [NA if _missing(v) else fmt_seconds(v) for v in md[c]]
    md = md.astype(object).map(lambda v: NA if _missing(v) else str(v))
    md = md.rename(columns={"median_s": "median", "min_s": "min", "max_s": "max"})
    out.table("pytest-benchmark", "pytest_benchmark", "pytest-benchmark runs (median, min, max per call; "
              "extra_info fields as columns)", md, df)
    return prov


# -- index, README markers, writing --------------------------------------------------------------
def _join(values: Iterable[Any]) -> str:
    vals = sorted({str(v) for v in values if not _missing(v)})
    return ", ".join(vals) if vals else NA


def _provenance(rows: pd.DataFrame) -> str:
    recs = []
    for dev, g in rows.groupby("device_name", sort=True):
        prov = [p if isinstance(p, dict) else {} for p in g["provenance"]]
        commits = {f"{str(p['git_commit'])[:12]}{'+dirty' if p.get('git_dirty') else ''}"
                   for p in prov if p.get("git_commit")}
        recs.append({"device": dev, "rows": str(len(g)),
                     **{k: _join(p.get(k) for p in prov) for k in ("torch", "cuda", "python")},
                     "archbench": _join(p.get("archbench_version", p.get("archbench")) for p in prov),
                     "git commits": _join(commits) if commits else "none recorded"})
    return _markdown(pd.DataFrame.from_records(recs))


def _index(out: _Outputs, rows: pd.DataFrame, bench_prov: list[str]) -> bytes:
    lines = ["# Results", "", "Generated by `archbench report` from the rows under `raw/`. Do not edit by "
             "hand; rerun `archbench report`.", ""]
    if len(rows):
        counts = rows.assign(s=rows["status"].map(_short_status)).groupby(["kind", "s"], dropna=False).size()
        summary = "; ".join(f"{kind}: " + ", ".join(f"{n} {s}" for (k, s), n in counts.items() if k == kind)
                            for kind in sorted({str(k) for k, _ in counts.index}))
        lines += [f"{len(rows)} rows ({summary}).", ""]
    elif not out.index:
        lines += ["No result rows yet: run `archbench run SUITE`, then `archbench report`.", ""]
    lines += [*(f"Note: {n}" for n in out.notes), *([""] if out.notes else [])]
    sections = list(dict.fromkeys(s for s, _, _ in out.index))  # in the order they were generated
    for sec in sections:
        lines += [f"## {sec}", ""]
        for s, name, caption in out.index:
            if s == sec:
                csv = name.removesuffix(".md") + ".csv"
                extra = f" ([csv]({csv}))" if name.endswith(".md") and csv in out.files else ""
                lines.append(f"- [{name}]({name}){extra} — {caption}")
        lines.append("")
    if len(rows) or bench_prov:
        lines += ["## Provenance", ""]
        if len(rows):
            lines += [_provenance(rows), ""]
        if bench_prov:
            lines += ["pytest-benchmark files:", "", *(f"- {p}" for p in bench_prov), ""]
    return ("\n".join(lines).rstrip("\n") + "\n").encode()


def _headline(out: _Outputs, link: str) -> str:
    if not out.headlines:
        return "_No results yet: run `archbench run SUITE`, then `archbench report --readme README.md`._"
    parts = [f"_Generated by `archbench report`; every table and plot: [{link}]({link})._"]
    parts += [f"#### {title}\n\n{table}" for title, table in out.headlines]
    return "\n\n".join(parts)


def _replace_markers(readme: Path, content: str) -> bool:
    """Put `content` between the markers, bytes outside them untouched; False if the markers are absent."""
    if not readme.is_file():
        return False
    text = readme.read_bytes().decode("utf-8")
    start = text.find(MARK_START)
    end = text.find(MARK_END, start + len(MARK_START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return False
    nl = "\r\n" if "\r\n" in text else "\n"
    new = text[: start + len(MARK_START)] + nl + content.replace("\n", nl) + nl + text[end:]
    if new != text:
        readme.write_bytes(new.encode("utf-8"))
    return True


def _write(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:  # unchanged files keep their mtime
        path.write_bytes(data)


def write_report(results_dir: Path, readme: Path | None = None) -> list[Path]:
    """Regenerate the tables, plots and index under `results_dir` from its raw/ rows.

    With `readme`, also refresh the headline tables between the archbench:results markers there.
    Returns every file this run produced (rewritten or already identical), sorted; the README last.
    """
    results_dir = Path(results_dir)
    raw = results_dir / "raw"
    rows = _normalise(load_rows(raw) if raw.is_dir() else pd.DataFrame())
    slugs = _device_slugs(rows["device_name"])
    out = _Outputs()
    _scaling(out, rows[rows["kind"] == "scaling"], slugs)
    _retrieval(out, rows[rows["kind"] == "retrieval"], slugs)
    bench_prov = _pytest_benchmark(out, raw / "pytest-benchmark")
    out.files["README.md"] = _index(out, rows, bench_prov)

    results_dir.mkdir(parents=True, exist_ok=True)
    manifest = results_dir / MANIFEST
    old = manifest.read_text("utf-8").split("\n") if manifest.is_file() else []
    for name in old:  # only plain names in results/ top level that an earlier run wrote
        stale = results_dir / name
        if name and name == stale.name and name not in ("raw", MANIFEST, *out.files) and stale.is_file():
            stale.unlink()
    for name, data in sorted(out.files.items()):
        _write(results_dir / name, data)
    _write(manifest, ("\n".join(sorted(out.files)) + "\n").encode())
    written = sorted([results_dir / n for n in out.files] + [manifest])
    if readme is not None:
        readme = Path(readme)
        index = (results_dir / "README.md").resolve()
        link = Path(os.path.relpath(index, readme.resolve().parent)).as_posix()
        if _replace_markers(readme, _headline(out, link)):
            written.append(readme)
    return written
