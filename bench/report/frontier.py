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
from archbench.bench.report.counters import note_no_counter
from archbench.bench.report.format import NA, fmt_bytes, fmt_joules, fmt_seconds, markdown, short_status, slug
from archbench.bench.report.frame import require
from archbench.bench.report.learning import MARK, MARK_NOTE, RESULT_CLASSES
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.palette import family_style
from archbench.bench.report.plot import ACCURACY, Axis, Panel, Series, plot
from archbench.bench.runs.schema import device_kind

READS = require("scaling", ("device_name", "dtype", "batch", "mode", "seq_len", "status", "model", "identity",
                            "mixers", "configs", "depth", "d_model", "mlp_ratio", "backend", "time_median_s",
                            "state_bytes", "energy_j_per_token", "device"), "bench/report/frontier.py")


@dataclass(frozen=True)
class Measure:
    key: str  # file stem part
    title: str
    column: str  # the scaling Result field
    modes: tuple[str, ...]  # scaling modes that carry it, first preferred
    seq_len: int
    fmt: Callable[[float], str]
    unit: str  # the plot's tick unit (bench/report/plot.py UNITS)


MEASURES = (
    Measure("state_16k", "state bytes at n=16k", "state_bytes", ("decode", "prefill"), 16384, fmt_bytes, "B"),
    Measure("decode_4k", "decode time per token at context 4k", "time_median_s", ("decode",), 4096,
            fmt_seconds, "s"),
    Measure("decode_16k", "decode time per token at context 16k", "time_median_s", ("decode",), 16384,
            fmt_seconds, "s"),
    Measure("prefill_4k", "prefill time at n=4k", "time_median_s", ("prefill",), 4096, fmt_seconds, "s"),
    Measure("prefill_16k", "prefill time at n=16k", "time_median_s", ("prefill",), 16384, fmt_seconds, "s"),
    Measure("decode_j_4k", "decode energy per token at context 4k", "energy_j_per_token", ("decode",), 4096,
            fmt_joules, "J"),
    Measure("decode_j_16k", "decode energy per token at context 16k", "energy_j_per_token", ("decode",),
            16384, fmt_joules, "J"),
)
HEADLINE_MEASURES = ("state_16k", "decode_16k")  # the README figure: the memory held, the time per token
RECALL = Axis("recall (best-lr accuracy)", scale="linear", lim=ACCURACY.lim)
POINT = ["task", "seq_len", "num_kv_pairs"]
MIN_LRS = 3  # a cell's best lr must come from at least this many lrs for it to stand on a front
HOLLOW = "hollow: did not learn, or not swept over enough lrs (off the front)"


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


def _split(g: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(eligible, not eligible, on the front) among one task point's cells with this measure's cost."""
    measured = g[g["cost"].notna()].sort_values(["cost", "accuracy"], ascending=[True, False])
    have, apart = measured[measured["eligible"]], measured[~measured["eligible"]]
    return have, apart, have[have["on_front"] == True]  # noqa: E712 (a nullable column)


def _panel(g: pd.DataFrame, title: str, references: list[Series] = ()) -> Panel | None:
    """One task point's chart: a marker per cell in its family's style (the front's cells named beside
    them), hollow for the cells off the front by rule, the front as a step line, chance dotted, and
    `references` (a state chart's capacity line, bench/report/capacity.py) drawn last."""
    have, apart, front = _split(g)
    if not len(have) + len(apart):
        return None
    names = set(front.index)
    series: list[Series] = [(fam, s["cost"].tolist(), s["accuracy"].tolist(),
                             {**family_style(fam), "linestyle": "none",
                              "annotate": [lab if i in names else "" for i, lab in zip(s.index, s["label"],
                                                                                      strict=True)]})
                            for fam, s in have.groupby("family", sort=True)]
    # cells that did not learn (or lack a sweep): hollow, never part of the front; legend-less, since
    # their family's entry is the filled marker (a family with none here gets its entry from them)
    shown = {fam for fam, *_ in series}
    series += [(f"{'_' if fam in shown else ''}{fam}", s["cost"].tolist(), s["accuracy"].tolist(),
                {**family_style(fam), "linestyle": "none", "hollow": True})
               for fam, s in apart.groupby("family", sort=True)]
    series.append(("Pareto front", front["cost"].tolist(), front["accuracy"].tolist(),
                   {"color": "black", "drawstyle": "steps-post", "linewidth": 1, "alpha": 0.6}))
    return Panel(title, series + list(references), chance=float(g["chance"].iloc[0]))


def _measure_outputs(out: Outputs, section: str, stem: str, m: Measure, pts: pd.DataFrame,
                     dtype: str) -> list[tuple[str, str]]:
    """The chart, the table of the front and the CSV of every point; returns (task point, summary). A
    state chart's panels carry the capacity reference of their K (bench/report/capacity.py)."""
    panels, parts, summary = [], [], []
    for (task, n, k), g in _sorted_points(pts):
        have, apart, front = _split(g)
        lack = g[g["cost"].isna()].sort_values("label")
        references = capacity_series(task, k, dtype) if m.column == "state_bytes" else []
        panel = _panel(g, _title(task, n, k), references)
        if panel is not None:
            panels.append(panel)
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
                plot(panels, Axis(f"{m.title} (batch 1)", unit=m.unit), RECALL,
                     title=f"{section.removeprefix('Recall–cost frontier: ')}: recall against {m.title}",
                     hollow_label=HOLLOW))
    return summary


def frontier_tables(out: Outputs, rt: pd.DataFrame, sc: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every frontier chart and table, one set per (device, scaling dtype) whose recall cells have at
    least one cost figure; the headline (`out.frontier`, `out.headline`) for one MQAR task point."""
    recall = best_lr(per_lr(prepare(rt)))
    recall = _labelled(recall[recall["_ok"]])
    sc = sc[sc["batch"] == 1]
    for (dev, dtype), gs in sc.groupby(["device_name", "dtype"], sort=True):
        # recall from every machine of this device kind (a trained model's accuracy is not the machine's,
        # bench/runs/schema.py `place`); the costs are this machine's own
        rec = recall[recall["place"] == device_kind(str(gs["device"].iloc[0]))]
        if rec.empty:
            continue
        section, stem = f"Recall–cost frontier: {dev} · {dtype}", f"frontier_{slugs[dev]}_{slug(dtype)}"
        pts = {m.key: _points(rec, cost_of(gs, m)) for m in MEASURES}
        measured = [m for m in MEASURES if pts[m.key]["cost"].notna().any()]
        if not measured:
            out.notes.append(f"No recall–cost frontier for {dev} · {dtype}: no retrieval model there has a "
                             f"scaling row of the same model at batch 1 and n = 4096 / 16384.")
            continue
        # A measure no model has (energy on a device without a counter) is one line, not a column of n/a.
        if any(m.column == "energy_j_per_token" for m in MEASURES if m not in measured):
            note_no_counter(out, gs["device"].iloc[0], dev)
        _costs_table(out, section, stem, rec, pts, measured)
        lines: dict[str, list[str]] = {}
        for m in measured:
            for point, text in _measure_outputs(out, section, stem, m, pts[m.key], dtype):
                lines.setdefault(point, []).append(f"| {m.title} | {text} |")
        got = _headline_point(pts)
        if got is None or _title(*got[0]) not in lines:
            continue
        (task, n, k), figures = got
        head = _title(task, n, k).replace("mqar", "MQAR")
        out.frontier.append((f"Recall–cost front — {dev} · {dtype} · {head}",
                             "| cost measure | front, cheapest first (model recall @ cost) |\n"
                             "|:--|:--|\n" + "\n".join(lines[_title(task, n, k)])))
        _headline(out, section, stem, f"{dev} · {dtype} · {head}", (task, n, k), figures, pts, dtype)


def _headline_point(pts: dict[str, pd.DataFrame]) -> tuple[tuple, tuple[int, int]] | None:
    """The README's one task point and its (model, measure) figures, (of cells on a front, all): the MQAR
    point with the
    most figures of cells that may stand on a front, then the most figures — the frontier grid's, not an
    older grid's cells or a suite of one-lr ablations that happens to share a model (ties: larger V, then
    n, then K)."""
    counts: dict[tuple, tuple[int, int]] = {}
    for p in pts.values():
        for (task, n, k), g in p[p["task"].str.startswith("mqar")].groupby(POINT):
            key, measured = (task, n, k), g["cost"].notna()
            front, every = counts.get(key, (0, 0))
            counts[key] = (front + int((measured & g["eligible"]).sum()), every + int(measured.sum()))
    if not counts:
        return None
    best = max(counts, key=lambda key: (counts[key], natural(key[0]), key[1], key[2]))
    return best, counts[best]


def _headline(out: Outputs, section: str, stem: str, title: str, point: tuple, figures: tuple[int, int],
              pts: dict[str, pd.DataFrame], dtype: str) -> None:
    """The README's first screen for one device: recall against state and time at 16k at the headline
    task point (one panel per measure), and a table of each pure family at its defaults there. `figures`
    (those of cells eligible for a front, all) ranks it against other devices' (write.py)."""
    at = {key: p[(p["task"] == point[0]) & (p["seq_len"] == point[1]) & (p["num_kv_pairs"] == point[2])]
          for key, p in pts.items()}
    measures = [m for m in MEASURES if m.key in HEADLINE_MEASURES and at[m.key]["cost"].notna().any()]
    panels = [_panel(at[m.key], m.title,
                     capacity_series(point[0], point[2], dtype) if m.column == "state_bytes" else [])
              for m in measures]
    panels = [(m, p) for m, p in zip(measures, panels, strict=True) if p is not None]
    if not panels:
        return
    for m, p in panels:
        p.x = Axis(f"{m.title} (batch 1)", unit=m.unit)
    png = f"{stem}_headline.png"
    out.png(section, f"{stem}_headline", f"the headline: recall at {title} against "
            f"{', '.join(m.title for m, _ in panels)}, the Pareto front as a step line",
            plot([p for _, p in panels], panels[0][1].x, RECALL, title=f"{title}: recall against cost",
                 hollow_label=HOLLOW))
    cells = at[MEASURES[0].key]
    pure = cells[cells["pattern"].map(lambda pat: len(set(pat)) == 1)]
    # the families side by side under one training recipe: the one most of them have a cell under here
    # (a grid's recipe, not an older record such as the 40k-example plateau rows), a family without one
    # under another, labelled; then each family's best-swept cell (most lrs, then seeds: a grid's headline
    # rather than a state-sweep variant run at one lr), at its smallest depth, with the fewest fields set
    # (`train_tag` names the recipe's choices, and the budget where the point holds several)
    shared = pure.groupby("train_tag")["family"].transform("nunique")
    pure = pure.assign(_fields=pure["configs"].map(lambda c: sum(len(v) for v in c.values())),
                       _lrs=-pure["lrs_tried"], _seeds=-pure["seeds"], _shared=-shared)
    pure = pure.sort_values(["family", "_shared", "depth", "_lrs", "_seeds", "_fields", "label"])
    pure = pure.drop_duplicates("family").sort_values(["accuracy", "family"], ascending=[False, True])
    table = pd.DataFrame({
        "model": pure["label"],
        "recall": [f"{a:.2f}{MARK.get(c, '')}" for a, c in zip(pure["accuracy"], pure["learn_class"],
                                                              strict=True)],
        **{m.title: [NA if np.isnan(c) else m.fmt(c) for c in at[m.key].loc[pure.index, "cost"]]
           for m, _ in panels}})
    out.headline.append((figures, title, png, markdown(table)))


def _costs_table(out: Outputs, section: str, stem: str, rec: pd.DataFrame,
                 pts: dict[str, pd.DataFrame], measures: list[Measure]) -> None:
    """Every recall cell with every measure some model has: the joined table the charts are drawn from."""
    parts, csv = [], rec[[*POINT, "label", "model", "family", "depth", "d_model", "accuracy", "acc_min",
                          "acc_max", "seeds", "_lr", "lrs_tried", "learn_class"]]
    csv = csv.rename(columns={"accuracy": "recall", "_lr": "best_lr"})
    for m in measures:
        csv = csv.assign(**{m.key: pts[m.key]["cost"]})
    for (task, n, k), g in _sorted_points(rec):
        t = pd.DataFrame({"model": g["label"], "recall": [acc_text(r) for _, r in g.iterrows()],
                          "lrs": g["lrs_tried"].map(lambda v: f"{v:.0f}"),
                          **{m.title: [NA if np.isnan(c) else m.fmt(c)
                                       for c in pts[m.key].loc[g.index, "cost"]] for m in measures}})
        t = t.sort_values("model")
        parts.append(f"## {_title(task, n, k)}\n\n{markdown(t)}\n")
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k))
    out.table(section, f"{stem}_costs", f"recall (best-lr accuracy, {SPREAD_NOTE}) and every cost measure of "
              f"the same model (scaling rows at batch 1; n/a: not measured or failed); {MARK_NOTE}",
              "\n".join(parts).rstrip("\n"), csv)
