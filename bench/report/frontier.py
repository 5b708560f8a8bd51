"""The recall–cost frontier, for `archbench report`: each recall cell joined with the cost rows of the
very same model, one chart and one table per cost measure, the Pareto front drawn.

Recall is a retrieval cell's accuracy at its best lr, the mean over seeds (bench/report/cells.py). Its
cost comes from the scaling rows of the same device and model identity (name, pattern, mixers,
configs, depth, d_model, mlp_ratio) at batch 1: see MEASURES. Where several scaling rows give one
figure (decode compiled and eager, another backend) the smallest is kept: the path the model would be
served on; the table names that backend. A model without the figure (never measured, or its cell
failed) is left off that chart and named under the table with the reason — never given a guessed cost.
Zoology (arXiv 2312.04927) plots recall against state bytes; the other measures are time and energy
as the rows' own device measured them (one set of charts per device). The state chart of an MQAR point
also draws the capacity reference of bench/report/capacity.py: the state one linear memory needs to
retrieve the point's K pairs top-1 (arXiv 2605.05189).

Glossary
  point     (recall cell, cost) for one model on one task point
  dominated a point another beats or equals on both axes (cost no higher, recall no lower) and beats
            on at least one
  front     the points no other point dominates: the Pareto front, drawn as a step line
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from archbench.bench.report.capacity import capacity_series
from archbench.bench.report.cells import (
    SPREAD_NOTE,
    acc_text,
    best_lr,
    k_text,
    natural,
    per_lr,
    prepare,
)
from archbench.bench.report.format import NA, fmt_bytes, fmt_joules, fmt_seconds, markdown, short_status, slug
from archbench.bench.report.frame import require
from archbench.bench.report.learning import MARK_NOTE, RESULT_CLASSES
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.plot import Series, plot, styles

READS = require("scaling", ("device_name", "dtype", "batch", "mode", "seq_len", "status", "model", "identity",
                            "mixers", "configs", "depth", "d_model", "mlp_ratio", "backend", "time_median_s",
                            "state_bytes", "energy_j_per_token"), "bench/report/frontier.py")


@dataclass(frozen=True)
class Measure:
    key: str  # file stem part
    title: str
    column: str  # the scaling Result field
    modes: tuple[str, ...]  # scaling modes that carry it, first preferred
    seq_len: int
    fmt: Callable[[float], str]


MEASURES = (
    Measure("state_16k", "state bytes at n=16k", "state_bytes", ("decode", "prefill"), 16384, fmt_bytes),
    Measure("decode_4k", "decode time per token at context 4k", "time_median_s", ("decode",), 4096,
            fmt_seconds),
    Measure("decode_16k", "decode time per token at context 16k", "time_median_s", ("decode",), 16384,
            fmt_seconds),
    Measure("prefill_4k", "prefill time at n=4k", "time_median_s", ("prefill",), 4096, fmt_seconds),
    Measure("prefill_16k", "prefill time at n=16k", "time_median_s", ("prefill",), 16384, fmt_seconds),
    Measure("decode_j_4k", "decode energy per token at context 4k", "energy_j_per_token", ("decode",), 4096,
            fmt_joules),
    Measure("decode_j_16k", "decode energy per token at context 16k", "energy_j_per_token", ("decode",),
            16384, fmt_joules),
)
POINT = ["task", "seq_len", "num_kv_pairs"]
MIN_LRS = 3  # a cell's best lr must come from at least this many lrs for it to stand on a front


def pareto_front(cost: list[float], recall: list[float]) -> list[bool]:
    """Whether each point is on the front: no other point has cost <= and recall >=, one of them strict."""
    return [not any(c2 <= c and r2 >= r and (c2 < c or r2 > r) for c2, r2 in zip(cost, recall, strict=True))
            for c, r in zip(cost, recall, strict=True)]


def cost_of(sc: pd.DataFrame, m: Measure) -> dict[str, tuple[float | None, str]]:
    """identity -> (figure, backend) for models with an ok figure, else (None, why it has none)."""
    rows = sc[sc["mode"].isin(m.modes) & (sc["seq_len"] == m.seq_len)]
    out: dict[str, tuple[float | None, str]] = {}
    for ident, g in rows.groupby("identity", sort=True):
        ok = g[(g["status"] == "ok") & g[m.column].notna()]
        if len(ok):
            ok = ok.assign(_mode=ok["mode"].map(m.modes.index)).sort_values(["_mode", m.column, "backend"])
            out[ident] = (float(ok[m.column].iloc[0]), str(ok["backend"].iloc[0]))
        else:
            failed = sorted({short_status(s) for s in g["status"] if s != "ok"})
            out[ident] = (None, ", ".join(failed) if failed else f"no {m.column} figure")
    return out


def eligible(rec: pd.DataFrame) -> pd.Series:
    """Whether a recall cell may stand on a front: its curve says it learned (or is flat above chance,
    capacity-limited) and its best lr comes from a sweep of at least MIN_LRS learning rates."""
    return rec["learn_class"].isin(RESULT_CLASSES) & (rec["lrs_tried"] >= MIN_LRS)


def why_not(r: pd.Series) -> str:
    """Why a cell is off the fronts: its class, or the sweep it lacks."""
    if r["learn_class"] not in RESULT_CLASSES:
        return f"{r['learn_class']} {r['accuracy']:.3f}"
    return f"{int(r['lrs_tried'])} lr{'s' if r['lrs_tried'] > 1 else ''} only"


def _points(recall: pd.DataFrame, costs: dict[str, tuple[float | None, str]]) -> pd.DataFrame:
    """The recall cells with this measure's cost (NaN and the reason where a model has none) and
    `on_front` within each task point, among the cells `eligible` to stand on one."""
    got = [costs.get(i, (None, "not measured")) for i in recall["identity"]]
    pts = recall.assign(cost=[np.nan if c is None else c for c, _ in got],
                        cost_from=[why for _, why in got], on_front=pd.NA, eligible=eligible(recall))
    for _, g in pts[pts["cost"].notna() & pts["eligible"]].groupby(POINT):
        pts.loc[g.index, "on_front"] = pareto_front(g["cost"].tolist(), g["accuracy"].tolist())
    return pts


def _labelled(rec: pd.DataFrame) -> pd.DataFrame:
    """`label`: the model, with its depth and width where a task point holds several (a depth-4 hybrid
    grid beside depth-2 pure stacks)."""
    labels = rec["model"].astype(str).copy()
    for _, g in rec.groupby(POINT):
        for col, tag in (("depth", "L"), ("d_model", "d")):
            if g[col].nunique() > 1:
                labels[g.index] = [f"{lab} {tag}={v}" for lab, v in zip(labels[g.index], g[col], strict=True)]
    return rec.assign(label=labels)


def _title(task: str, n: int, k: int) -> str:
    return f"{task}, n={n}, K={k_text(k)}"


def _sorted_points(pts: pd.DataFrame):
    return sorted(pts.groupby(POINT), key=lambda kv: (natural(kv[0][0]), *kv[0][1:]))


def _measure_outputs(out: Outputs, section: str, stem: str, m: Measure, pts: pd.DataFrame,
                     style: dict[str, dict], dtype: str) -> list[tuple[str, str]]:
    """The chart, the table of the front and the CSV of every point; returns (task point, summary). A
    state chart's panels carry the capacity reference of their K (bench/report/capacity.py)."""
    panels, parts, summary = [], [], []
    for (task, n, k), g in _sorted_points(pts):
        measured = g[g["cost"].notna()].sort_values(["cost", "accuracy"], ascending=[True, False])
        have, apart = measured[measured["eligible"]], measured[~measured["eligible"]]
        lack = g[g["cost"].isna()].sort_values("label")
        front = have[have["on_front"] == True]  # noqa: E712 (a nullable column)
        series: list[Series] = [(fam, s["cost"].tolist(), s["accuracy"].tolist(),
                                 {**style[fam], "linestyle": "none",
                                  "annotate": [lab if lab != fam else "" for lab in s["label"]]})
                                for fam, s in have.groupby("family", sort=True)]
        # cells that did not learn (or lack a sweep): drawn apart, hollow, never part of the front
        series += [(f"_{fam}", s["cost"].tolist(), s["accuracy"].tolist(),
                    {**style[fam], "linestyle": "none", "markerfacecolor": "none", "alpha": 0.5})
                   for fam, s in apart.groupby("family", sort=True)]
        series.append(("Pareto front", front["cost"].tolist(), front["accuracy"].tolist(),
                       {"color": "black", "drawstyle": "steps-post", "linewidth": 1, "alpha": 0.6}))
        if m.column == "state_bytes":
            series += capacity_series(task, k, dtype)
        if len(have):
            panels.append((_title(task, n, k), series))
        table = pd.DataFrame({"model": front["label"], "recall": [acc_text(r) for _, r in front.iterrows()],
                              m.title: front["cost"].map(m.fmt), "best lr": front["_lr"].map("{:g}".format),
                              "measured on": front["cost_from"]})
        body = markdown(table) if len(front) else "_No model of this task point has this figure._"
        missing = "; ".join(f"{r['label']} ({r['cost_from']})" for _, r in lack.iterrows())
        off = "; ".join(f"{r['label']} ({why_not(r)})" for _, r in apart.sort_values("label").iterrows())
        parts.append(f"## {_title(task, n, k)}\n\n{body}\n" +
                     (f"\nNot on the front (did not learn at its lr and budget, or not swept over "
                      f"{MIN_LRS} lrs; drawn hollow): {off}\n" if off else "") +
                     (f"\nLeft off ({NA}: no {m.title} figure): {missing}\n" if missing else ""))
        if len(front):
            steps = [f"{r['label']} {r['accuracy']:.2f} @ {m.fmt(r['cost'])}" for _, r in front.iterrows()]
            summary.append((_title(task, n, k), " → ".join(steps)))
    csv = pts.assign(num_kv_pairs=pts["num_kv_pairs"].map(lambda k: None if k < 0 else k),
                     best_lr=pts["_lr"], cost_backend_or_reason=pts["cost_from"])
    csv = csv[[*POINT, "label", "model", "family", "depth", "d_model", "accuracy", "acc_min", "acc_max",
               "seeds", "best_lr", "lrs_tried", "learn_class", "cost", "cost_backend_or_reason", "on_front"]]
    csv = csv.rename(columns={"accuracy": "recall", "cost": m.column})
    out.table(section, f"{stem}_{m.key}", f"the recall–{m.title} front: models no other beats on both "
              f"(lower {m.title}, higher recall), cheapest first, among the cells whose learning curve says "
              f"they learned (or are flat above chance) at the best of >= {MIN_LRS} lrs; recall = best-lr "
              f"accuracy, {SPREAD_NOTE}",
              "\n".join(parts).rstrip("\n"), csv)
    if panels:
        out.png(section, f"{stem}_{m.key}", f"recall vs {m.title}, Pareto front as a step line",
                plot(panels, m.title, "recall (best-lr accuracy)", xscale="log", yscale="linear"))
    return summary


def frontier_tables(out: Outputs, rt: pd.DataFrame, sc: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every frontier chart and table, one set per (device, scaling dtype) whose recall cells have at
    least one cost figure; the README's frontier headline (`out.frontier`) for one MQAR task point."""
    recall = best_lr(per_lr(prepare(rt)))
    recall = _labelled(recall[recall["_ok"]])
    sc = sc[sc["batch"] == 1]
    for (dev, dtype), gs in sc.groupby(["device_name", "dtype"], sort=True):
        rec = recall[recall["device_name"] == dev]
        if rec.empty:
            continue
        section, stem = f"Recall–cost frontier: {dev} · {dtype}", f"frontier_{slugs[dev]}_{slug(dtype)}"
        style = styles(rec["family"])
        pts = {m.key: _points(rec, cost_of(gs, m)) for m in MEASURES}
        measured = [m for m in MEASURES if pts[m.key]["cost"].notna().any()]
        if not measured:
            out.notes.append(f"No recall–cost frontier for {dev} · {dtype}: no retrieval model there has a "
                             f"scaling row of the same model at batch 1 and n = 4096 / 16384.")
            continue
        _costs_table(out, section, stem, rec, pts)
        lines: dict[str, list[str]] = {}
        for m in measured:
            for point, text in _measure_outputs(out, section, stem, m, pts[m.key], style, dtype):
                lines.setdefault(point, []).append(f"| {m.title} | {text} |")
        head = _headline_point(pts)
        if head in lines:
            out.frontier.append((f"Recall–cost front — {dev} · {dtype} · {head.replace('mqar', 'MQAR')}",
                                 "| cost measure | front, cheapest first (model recall @ cost) |\n"
                                 "|:--|:--|\n" + "\n".join(lines[head])))


def _headline_point(pts: dict[str, pd.DataFrame]) -> str | None:
    """The README's one task point: the MQAR point with the most (model, measure) figures — the frontier
    grid's, not an older grid's cell that happens to share a model (ties: larger V, then n, then K)."""
    counts: dict[tuple, int] = {}
    for p in pts.values():
        for (task, n, k), g in p[p["task"].str.startswith("mqar")].groupby(POINT):
            key = (task, n, k)
            counts[key] = counts.get(key, 0) + int(g["cost"].notna().sum())
    if not counts:
        return None
    task, n, k = max(counts, key=lambda key: (counts[key], natural(key[0]), key[1], key[2]))
    return _title(task, n, k)


def _costs_table(out: Outputs, section: str, stem: str, rec: pd.DataFrame,
                 pts: dict[str, pd.DataFrame]) -> None:
    """Every recall cell with every measure: the joined table the charts are drawn from."""
    parts, csv = [], rec[[*POINT, "label", "model", "family", "depth", "d_model", "accuracy", "acc_min",
                          "acc_max", "seeds", "_lr", "lrs_tried", "learn_class"]]
    csv = csv.rename(columns={"accuracy": "recall", "_lr": "best_lr"})
    for m in MEASURES:
        csv = csv.assign(**{m.key: pts[m.key]["cost"]})
    for (task, n, k), g in _sorted_points(rec):
        t = pd.DataFrame({"model": g["label"], "recall": [acc_text(r) for _, r in g.iterrows()],
                          "lrs": g["lrs_tried"].map(lambda v: f"{v:.0f}"),
                          **{m.title: [NA if np.isnan(c) else m.fmt(c)
                                       for c in pts[m.key].loc[g.index, "cost"]] for m in MEASURES}})
        t = t.sort_values("model")
        parts.append(f"## {_title(task, n, k)}\n\n{markdown(t)}\n")
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k))
    out.table(section, f"{stem}_costs", f"recall (best-lr accuracy, {SPREAD_NOTE}) and every cost measure of "
              f"the same model (scaling rows at batch 1; n/a: not measured or failed); {MARK_NOTE}",
              "\n".join(parts).rstrip("\n"), csv)
