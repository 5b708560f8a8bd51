"""Retrieval tables and plots for `archbench report`: accuracy at the best learning rate per cell (mean
over seeds, bench/report/cells.py), as grids (model × d_model, one per task, V, n, K), the lr sweep behind
each best lr, and plots against width, state bytes (one line per family through its state-size variants)
and learning rate. Test lengths and slices: lengths.py; hybrid ratio and placement: hybrid.py.

Glossary
  cell       one (device, task, V, n, K, d_model, depth, mlp_ratio, model with its configs); its runs
             differ only in lr and seed
  best lr    the lr with the highest mean accuracy over seeds (ties: the smaller lr)
  n          train/test sequence length (seq_len)
  K          key-value pairs per MQAR example (num_kv_pairs); -1 inside this module for "none"
  family     a model's name without its config label
"""

from __future__ import annotations

import pandas as pd

from archbench.bench.report.capacity import capacity_series
from archbench.bench.report.cells import (
    SPREAD_NOTE,
    acc_text,
    best_lr,
    best_lr_text,
    k_text,
    natural,
    per_lr,
    prepare,
)
from archbench.bench.report.curves import curve_tables
from archbench.bench.report.format import MISSING, cell_raw, cells, markdown, slug, sort_rows
from archbench.bench.report.hybrid import hybrid_tables
from archbench.bench.report.learning import MARK_NOTE, RESULT_CLASSES
from archbench.bench.report.lengths import length_tables
from archbench.bench.report.orderings import ordering_tables
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.palette import family_style, styles
from archbench.bench.report.plot import ACCURACY, Axis, Panel, Series, plot

PLACE_TITLES = {"cpu": "CPU", "cuda": "GPU"}  # a place of pooled recall cells, as a section names it

POINT = ["task", "seq_len", "num_kv_pairs"]  # one task point: a table section, a plot panel


def _points(gd: pd.DataFrame):
    """(task, n, K) groups in natural order ('mqar V=64' before 'mqar V=128')."""
    return sorted(gd.groupby(POINT), key=lambda kv: (natural(kv[0][0]), *kv[0][1:]))


def _accuracy_tables(out: Outputs, section: str, prefix: str, dev: str, gd: pd.DataFrame) -> None:
    parts, csv_parts = [], []
    for (task, n, k), g in _points(gd):
        g = g.assign(_v=[acc_text(r) for _, r in g.iterrows()])
        w = g.pivot(index=["model", "depth", "mlp_ratio"], columns="d_model", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = ["model", "depth", "mlp_ratio", *(f"d={c}" for c in w.columns[3:])]
        body = markdown(sort_rows(w, ["model", "depth", "mlp_ratio"]).fillna(MISSING).astype(str))
        parts.append(f"## {task}, train/test length n={n}, K={k_text(k)}\n\n{body}\n")
        if task.startswith("mqar"):  # "mqar V=64": one headline per vocabulary
            out.headlines.append((f"{task.replace('mqar', 'MQAR')} accuracy (best lr) — {dev}, "
                                  f"n={n}, K={k_text(k)}", body))
        csv_parts.append(g.assign(accuracy=cells(g, "accuracy", cell_raw)))
    csv = pd.concat(csv_parts)
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k),
                     vocab_size=csv["vocab_size"].map(lambda v: None if v < 0 else v), best_lr=csv["lr"])
    csv = csv[["task", "vocab_size", "seq_len", "num_kv_pairs", "model", "family", "depth", "mlp_ratio",
               "d_model", "accuracy", "acc_min", "acc_max", "seeds", "best_lr", "state_bytes", "params",
               "steps", "status"]]
    out.table(section, f"{prefix}_accuracy", "held-out exact-match accuracy at the best learning rate, "
              f"{SPREAD_NOTE} (rows model, depth, mlp_ratio; columns d_model; one table per task, n, K); "
              f"{MARK_NOTE}",
              "\n".join(parts).rstrip("\n"), csv)


def _lr_table(out: Outputs, section: str, prefix: str, pl: pd.DataFrame, best: pd.DataFrame) -> None:
    """Every lr of every cell: what the best lr was chosen from."""
    cell = (*POINT, "model", "depth", "mlp_ratio", "d_model")
    best_of = {tuple(r[c] for c in cell): r["_lr"] for _, r in best.iterrows()}
    best_text = {tuple(r[c] for c in cell): best_lr_text(r) for _, r in best.iterrows()}
    idx = ["model", "depth", "mlp_ratio", "d_model"]
    parts = []
    for (task, n, k), g in _points(pl):
        g = g.assign(_v=[acc_text(r) for _, r in g.iterrows()])
        w = g.pivot(index=idx, columns="_lr", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = [*idx, *(f"lr={c:g}" for c in w.columns[len(idx):])]
        w["best lr"] = [best_text.get((task, n, k, *key), MISSING)
                        for key in zip(*(w[c] for c in idx), strict=True)]
        body = markdown(sort_rows(w, idx).fillna(MISSING).astype(str))
        parts.append(f"## {task}, n={n}, K={k_text(k)}\n\n{body}\n")
    keys = list(zip(*(pl[c] for c in cell), strict=True))
    csv = pl.assign(num_kv_pairs=pl["num_kv_pairs"].map(lambda k: None if k < 0 else k),
                    accuracy=cells(pl, "accuracy", cell_raw),
                    best=[best_of.get(key) == lr for key, lr in zip(keys, pl["_lr"], strict=True)])
    csv = csv[["task", "seq_len", "num_kv_pairs", "model", "family", "depth", "mlp_ratio", "d_model", "lr",
               "accuracy", "acc_min", "acc_max", "seeds", "runs", "failed", "best", "status"]]
    out.table(section, f"{prefix}_lr_sweep", f"accuracy per learning rate, {SPREAD_NOTE}; the best lr has "
              f"the highest mean (rows model, depth, mlp_ratio, d_model; columns lr), marked 'lowest' or "
              f"'highest' where it is that end of the sweep and the cell did not learn; {MARK_NOTE}",
              "\n".join(parts).rstrip("\n"), csv)


def _family_label(fam: str, depth: int, depths: int) -> str:
    return f"{fam} (L={depth})" if depths > 1 else fam


def _not_learned(s: pd.DataFrame) -> pd.Series:
    return ~s["learn_class"].isin(RESULT_CLASSES)


def _state_series(gp: pd.DataFrame) -> list[Series]:
    """One line per family (and depth) through its state-size variants and widths, by state bytes;
    cells that did not learn are drawn hollow over their line."""
    sb = gp[gp["state_bytes"].notna()]
    depths = sorted(sb["depth"].unique())
    series: list[Series] = []
    for (fam, depth), s in sb.sort_values("state_bytes").groupby(["family", "depth"]):
        # a second depth of one family: its line dashed, the family's colour and marker kept
        st = {**family_style(fam), "linestyle": "-" if depth == depths[0] else "--"}
        series.append((_family_label(fam, depth, len(depths)), s["state_bytes"].tolist(),
                       s["accuracy"].tolist(), st))
        series += _hollow(s, "state_bytes", st)
    return series


def _hollow(s: pd.DataFrame, x: str, style: dict) -> list[Series]:
    """The points of `s` whose class is not a result (learning.RESULT_CLASSES), hollow and legend-less."""
    off = s[_not_learned(s)]
    if off.empty:
        return []
    return [("_not learned", off[x].tolist(), off["accuracy"].tolist(),
             {**style, "linestyle": "none", "hollow": True})]


def _lr_series(gp: pd.DataFrame) -> list[Series]:
    """Accuracy vs lr per family: its best state config solid, its other configs faint without a legend
    entry; error bars the seeds' min–max around the mean; an lr at which the cell did not learn hollow."""
    series: list[Series] = []
    for fam, f in gp.groupby("family", sort=True):
        best_cfg = f.sort_values(["accuracy", "model"], ascending=[False, True])["model"].iloc[0]
        for label, s in f.groupby("model", sort=True):
            s = s.sort_values("_lr")
            err = [(s["accuracy"] - s["acc_min"]).tolist(), (s["acc_max"] - s["accuracy"]).tolist()]
            faint = {} if label == best_cfg else {"alpha": 0.25}
            st = {**family_style(fam), **faint}
            series.append((label if label == best_cfg else f"_{label}", s["_lr"].tolist(),
                           s["accuracy"].tolist(), {**st, "yerr": err}))
            series += _hollow(s, "_lr", st)
    return series


def _retrieval_plots(out: Outputs, section: str, prefix: str, ok: pd.DataFrame, ok_lr: pd.DataFrame) -> None:
    dev = section.removeprefix("Retrieval: ")
    style = styles(ok["model"], dict(zip(ok["model"], ok["family"], strict=True)))
    for task, gt in ok.groupby("task", sort=True):
        by_width, by_state, by_lr = [], [], []
        for (n, k), gp in gt.groupby(["seq_len", "num_kv_pairs"], sort=True):
            title, chance = f"{task} n={n}, K={k_text(k)}", float(gp["chance"].iloc[0])
            width_series: list[Series] = []
            for (m, depth), s in gp.groupby(["model", "depth"], sort=True):
                st = style[m]
                width_series += [(f"{m} (L={depth})", s["d_model"].tolist(), s["accuracy"].tolist(), st),
                                 *_hollow(s, "d_model", st)]
            by_width.append(Panel(title, width_series, chance=chance))
            state_series = _state_series(gp)
            if state_series:  # the capacity reference of the panel's K (bench/report/capacity.py)
                state_series += capacity_series(task, k, gp["dtype"].iloc[0])
            by_state.append(Panel(title, state_series, chance=chance))
            lrs = ok_lr[(ok_lr["task"] == task) & (ok_lr["seq_len"] == n) & (ok_lr["num_kv_pairs"] == k)]
            for (d, depth), gl in lrs.groupby(["d_model", "depth"], sort=True):
                if gl["_lr"].nunique() > 1:
                    by_lr.append(Panel(f"{title}, d={d}, L={depth}", _lr_series(gl), chance=chance))
        stem = f"{prefix}_{slug(task)}"
        out.png(section, f"{stem}_acc_vs_dmodel", f"{task}: accuracy vs d_model, one panel per (n, K)",
                plot(by_width, Axis("d_model", unit="n"), ACCURACY,
                     title=f"{dev} · {task}: accuracy (best lr) against width"))
        if any(p.series for p in by_state):
            out.png(section, f"{stem}_acc_vs_state", f"{task}: accuracy (best lr, mean over seeds) vs "
                    "measured state bytes, one line per family through its state sizes (the recall "
                    "frontier); dashed, the state one d×d linear memory needs to retrieve the panel's K "
                    "pairs top-1, d² = 2K ln K (arXiv 2605.05189)",
                    plot(by_state, Axis("state bytes (batch 1, at n)", unit="B"), ACCURACY,
                         title=f"{dev} · {task}: accuracy (best lr) against the state the model holds"))
        if by_lr:
            out.png(section, f"{stem}_acc_vs_lr", f"{task}: accuracy vs learning rate per family (its best "
                    "state config solid, error bars the seeds' min–max; other configs faint)",
                    plot(by_lr, Axis("learning rate"), ACCURACY,
                         title=f"{dev} · {task}: accuracy against learning rate (mean over seeds, "
                         "min–max bars)"))


def _machines_table(out: Outputs, section: str, prefix: str, runs: pd.DataFrame) -> None:
    """The machines that trained a place's cells: recall is pooled over them (a trained model's accuracy
    is not the machine's, bench/runs/schema.py `place`), and this says whose rows are whose."""
    t = runs.groupby("device_name", sort=True).agg(rows=("cell", "size"),
                                                   ok=("status", lambda s: int((s == "ok").sum())))
    t = t.reset_index().rename(columns={"device_name": "machine"})
    out.table(section, f"{prefix}_machines", "the machines that trained these cells: every retrieval table "
              "here pools their rows, since a trained model's accuracy is the same experiment on any machine "
              "of the kind, to float rounding (results/METHODS.md); each row's provenance names its machine",
              t, t)


def retrieval_tables(out: Outputs, rt: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every retrieval table and plot, one set per place: the device kind (CPU, GPU) the cells trained on,
    over every machine of that kind."""
    runs = prepare(rt)
    pl = per_lr(runs)
    best = best_lr(pl)
    for where, gd in best.groupby("place", sort=True):
        dev = PLACE_TITLES.get(where, where)
        section, prefix = f"Retrieval: {dev}", f"retrieval_{slugs[where]}"
        pd_lr = pl[pl["place"] == where]
        _machines_table(out, section, prefix, runs[runs["place"] == where])
        _accuracy_tables(out, section, prefix, dev, gd)
        _lr_table(out, section, prefix, pd_lr, gd)
        ok_lr = pd_lr[(pd_lr["status"] == "ok") & pd_lr["accuracy"].notna()]
        _retrieval_plots(out, section, prefix, gd[gd["_ok"]], ok_lr)
        length_tables(out, section, prefix, gd[gd["_ok"]])
        curve_tables(out, section, prefix, runs[runs["place"] == where], gd)
        hybrid_tables(out, section, prefix, gd)
        ordering_tables(out, section, prefix, gd[gd["_ok"]])
