"""Learning curves and sample efficiency, for `archbench report`: every retrieval run's curve drawn
(one figure per task point and depth, a panel per family, a line per model and lr), and a table of each
cell at its best lr with its class (bench/report/learning.py) and the examples it took to reach 0.5 and
0.9 of held-out accuracy.

Glossary: chance = the accuracy of answering the most frequent answer; prior loss = the entropy of the
answers in nats (the loss of a model that learned only which tokens answer); ex→0.5 the examples seen
at the first evaluation at or above 0.5.
"""

from __future__ import annotations

import math

import pandas as pd

from archbench.bench.report.cells import best_lr_text, k_text, lr_edge, natural
from archbench.bench.report.format import MISSING, markdown, slug, sort_rows
from archbench.bench.report.learning import LAST, LEARNED, PLATEAU_NATS, RESULT_CLASSES, RISE, RISE_NATS
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.plot import ACCURACY, Axis, Panel, Series, plot

POINT = ["task", "seq_len", "num_kv_pairs"]
LR_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6")
CLASS_NOTE = (f"class: learned (final accuracy >= {LEARNED}), plateau (final loss within {PLATEAU_NATS} nats "
              f"of the prior loss and accuracy near chance), rising (gained >= {RISE} accuracy or lost >= "
              f"{RISE_NATS} nats of loss over the last {LAST:.0%} of its examples), flat (neither: "
              "capacity-limited at this budget); ± seeds disagree")


def _examples(v: float) -> str:
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v / 1000:.0f}k"


def _table(out: Outputs, section: str, prefix: str, best: pd.DataFrame) -> None:
    parts, csv_parts = [], []
    for (task, n, k), g in sorted(best.groupby(POINT), key=lambda kv: (natural(kv[0][0]), *kv[0][1:])):
        g = g[g["_ok"]]
        if g.empty:
            continue
        t = pd.DataFrame({
            "model": g["model"], "depth": g["depth"], "d": g["d_model"], "mlp": g["mlp_ratio"],
            "class": g["learn_class"].replace({"mixed": "± mixed"}),
            "accuracy": g["accuracy"].map("{:.3f}".format),
            "best lr": [best_lr_text(r) for _, r in g.iterrows()], "lrs": g["lrs_tried"].map("{:.0f}".format),
            "ex→0.5": g["ex_50"].map(_examples), "ex→0.9": g["ex_90"].map(_examples),
            "examples": g["examples_seen"].map(_examples),
            "last layer rms / const": [MISSING if math.isnan(r) else f"{r:.2f} / {c:.2f}"
                                       for r, c in zip(g["last_rms"], g["last_const_share"], strict=True)]})
        chance, prior = g["chance"].iloc[0], g["prior_loss"].iloc[0]
        parts.append(f"## {task}, n={n}, K={k_text(k)} — chance {chance:.4f}, prior loss {prior:.2f} nats\n\n"
                     f"{markdown(sort_rows(t, ['model', 'depth', 'd', 'mlp']))}\n")
        csv_parts.append(g)
    if not parts:
        return
    csv = pd.concat(csv_parts)
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k), best_lr=csv["_lr"],
                     best_lr_edge=[lr_edge(r) or None for _, r in csv.iterrows()])
    csv = csv[["task", "seq_len", "num_kv_pairs", "model", "family", "depth", "d_model", "mlp_ratio",
               "learn_class", "accuracy", "best_lr", "best_lr_edge", "lrs_tried", "ex_50", "ex_90",
               "examples_seen", "chance", "prior_loss", "last_rms", "last_const_share"]]
    out.table(section, f"{prefix}_learning", "each cell at its best lr: its learning curve's class and "
              f"sample efficiency (examples to reach 0.5 and 0.9 held-out accuracy; '{MISSING}' never), and "
              "its last mixer's output at the last evaluation: RMS and the share of its energy in one "
              "constant vector "
              f"(bench/experiments/diagnostics.py); {CLASS_NOTE}; a best lr marked 'lowest' or 'highest' "
              "is that end of the cell's sweep while the cell did not learn: a lr beyond it may do better",
              "\n".join(parts).rstrip("\n"), csv)


def _within_family(model: str, family: str) -> str:
    """The part of a model label a family's panel needs: its overrides and recipe tag, without the
    family name ('gated_deltanet output_gate=sigmoid · zoology recipe' -> 'output_gate=sigmoid ·
    zoology recipe')."""
    return model.removeprefix(family).strip().removeprefix("· ").strip()


def _curve_series(runs: pd.DataFrame, lr_color: dict[float, str]) -> list[Series]:
    """A line per run, coloured by lr (dashed: another seed), and a marker at its end: filled where the
    run learned (or is flat above chance), hollow where it did not (still rising, or on the plateau)."""
    series: list[Series] = []
    for (model, lr, seed), r in runs.groupby(["model", "_lr", "seed_id"], sort=True):
        curve = r["curve"].iloc[-1]
        if not isinstance(curve, dict) or len(curve.get("examples") or []) < 2:
            continue
        label = " ".join(filter(None, [_within_family(model, r["family"].iloc[0]), f"lr={lr:g}"]))
        label += "" if seed.startswith("0/") else f" seed {seed.split('/')[0]}"
        xs = [e / 1000 for e in curve["examples"]]
        style = {"color": lr_color[lr], "linewidth": 1, "linestyle": "-" if seed.startswith("0/") else "--"}
        series.append((label, xs, curve["accuracy"], style))
        series.append((f"_{label} end", xs[-1:], curve["accuracy"][-1:],
                       {"color": lr_color[lr], "marker": "o", "markersize": 5, "linestyle": "none",
                        "hollow": r["learn_class"].iloc[-1] not in RESULT_CLASSES}))
    return series


def _plots(out: Outputs, section: str, prefix: str, rt: pd.DataFrame) -> None:
    ok = rt[(rt["status"] == "ok") & rt["curve"].map(lambda c: isinstance(c, dict))]
    for (task, n, k, depth), g in ok.groupby([*POINT, "depth"], sort=True):
        lr_color = {lr: LR_COLORS[i % len(LR_COLORS)] for i, lr in enumerate(sorted(g["_lr"].unique()))}
        chance = float(g["chance"].iloc[0])
        panels = []
        for fam, f in sorted(g.groupby("family"), key=lambda kv: kv[0]):
            series = _curve_series(f, lr_color)
            if series:
                panels.append(Panel(f"{fam} (L={depth})", series, chance=chance))
        if panels:
            stem = f"{prefix}_{slug(task)}_n{n}_k{k_text(k)}_L{depth}_curves"
            out.png(section, stem, f"{task} n={n}, K={k_text(k)}, depth {depth}: held-out-subset accuracy "
                    "against examples seen, every run (colour: lr; dashed: another seed; dotted: chance; the "
                    "end marker hollow where the run did not learn)",
                    plot(panels, Axis("examples seen (thousands)", scale="linear"), ACCURACY,
                         title=f"{section.removeprefix('Retrieval: ')} · {task}, n={n}, K={k_text(k)}, "
                         f"depth {depth}: learning curves"))


def curve_tables(out: Outputs, section: str, prefix: str, runs: pd.DataFrame, best: pd.DataFrame) -> None:
    """The learning table (best-lr cells) and the curve figures (every run) of one device."""
    _table(out, section, prefix, best)
    _plots(out, section, prefix, runs)
