"""Accuracy against test length and by slice, for `archbench report` (retrieval rows).

Length extrapolation in the Mamba paper's Table 11 layout (arXiv 2312.00752): rows are models, columns
test lengths, the training length marked; one table per (task, n, K). Every figure is the cell's best
lr (mean over seeds), each length's accuracy averaged over the same seeds. Slices (passkey and
induction by depth of the needle, MQAR by query) get the same layout with slice names as columns.

Glossary
  n        the training length (seq_len); the column headed "n (train)"
  slice    a subset of the held-out rows the task names (e.g. "depth 0.0-0.2")
"""

from __future__ import annotations

import pandas as pd

from archbench.bench.report.cells import k_text, natural
from archbench.bench.report.format import MISSING, is_missing, markdown, slug, sort_rows
from archbench.bench.report.learning import RESULT_CLASSES
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.palette import styles
from archbench.bench.report.plot import ACCURACY, Axis, Panel, plot

IDX = ["model", "depth", "d_model", "mlp_ratio"]


def _wide(g: pd.DataFrame, col: str, order) -> pd.DataFrame:
    """Rows IDX, one column per key of the dict column `col`, values as text ("-": not scored)."""
    recs = []
    for _, r in g.iterrows():
        vals = r[col] if isinstance(r[col], dict) else {}
        recs.append({**{c: r[c] for c in IDX},
                     **{k: (MISSING if is_missing(v) else f"{v:.3f}") for k, v in vals.items()}})
    w = pd.DataFrame.from_records(recs)
    keys = sorted((c for c in w.columns if c not in IDX), key=order)
    return sort_rows(w[[*IDX, *keys]], IDX).fillna(MISSING).astype(str)


def _long(g: pd.DataFrame, col: str, name: str) -> list[dict]:
    return [{"task": r["task"], "seq_len": r["seq_len"],
             "num_kv_pairs": None if r["num_kv_pairs"] < 0 else r["num_kv_pairs"],
             **{c: r[c] for c in IDX}, "best_lr": r["_lr"], "seeds": r["seeds"], name: k,
             "accuracy": None if is_missing(v) else v}
            for _, r in g.iterrows() for k, v in (r[col] if isinstance(r[col], dict) else {}).items()]


def _n_keys(g: pd.DataFrame, col: str) -> int:
    return len({k for d in g[col] if isinstance(d, dict) for k in d})


def _with_training_length(r: pd.Series) -> dict:
    """The row's accuracy by test length with the training length in it: a grid that scores only at
    2n, 4n, … (the frontier's tasks) has it as the row's own held-out `accuracy`."""
    by_len = dict(r["accuracy_by_len"]) if isinstance(r["accuracy_by_len"], dict) else {}
    n = str(int(r["seq_len"]))
    if n not in by_len and not is_missing(r["accuracy"]):
        by_len[n] = r["accuracy"]
    return by_len


def length_tables(out: Outputs, section: str, prefix: str, ok: pd.DataFrame) -> None:
    """`ok`: the device's best-lr cells that ran ok (bench/report/cells.py)."""
    points = sorted(ok.groupby(["task", "seq_len", "num_kv_pairs"]), key=lambda kv: (natural(kv[0][0]),
                                                                                     *kv[0][1:]))
    len_parts, len_csv, slice_parts, slice_csv = [], [], [], []
    for (task, n, k), g in points:
        head = f"## {task}, trained at n={n}, K={k_text(k)}"
        if _n_keys(g, "accuracy_by_len") > 1:
            g = g.assign(accuracy_by_len=[_with_training_length(r) for _, r in g.iterrows()])
            w = _wide(g, "accuracy_by_len", int)
            w.columns = [*IDX, *(f"{c} (train)" if int(c) == n else c for c in w.columns[len(IDX):])]
            len_parts.append(f"{head}\n\n{markdown(w)}\n")
            len_csv += _long(g, "accuracy_by_len", "test_len")
        if _n_keys(g, "accuracy_by_slice") > 0:
            slice_parts.append(f"{head}\n\n{markdown(_wide(g, 'accuracy_by_slice', natural))}\n")
            slice_csv += _long(g, "accuracy_by_slice", "slice")
    if len_parts:
        out.table(section, f"{prefix}_acc_by_len", "accuracy vs test length at the best lr, each length "
                  "the mean over the best lr's seeds; rows model, columns test "
                  "length, the training length marked (Mamba paper Table 11 layout)",
                  "\n".join(len_parts).rstrip("\n"), pd.DataFrame.from_records(len_csv))
    if slice_parts:
        out.table(section, f"{prefix}_acc_by_slice", "accuracy per slice of the held-out set (e.g. passkey "
                  "by needle depth) at the best lr, averaged over its seeds; rows model, columns slice",
                  "\n".join(slice_parts).rstrip("\n"), pd.DataFrame.from_records(slice_csv))
    _plots(out, section, prefix, ok)


def _plots(out: Outputs, section: str, prefix: str, ok: pd.DataFrame) -> None:
    """Accuracy vs test length, one line per model (its widest d_model), one panel per (n, K); a cell
    that did not learn at its training length drawn hollow."""
    style = styles(ok["model"], dict(zip(ok["model"], ok["family"], strict=True)))
    for task, gt in ok.groupby("task", sort=True):
        panels = []
        for (n, k), gp in gt.groupby(["seq_len", "num_kv_pairs"], sort=True):
            lines = []
            for (m, _), s in gp.groupby(["model", "depth"], sort=True):
                r = s.sort_values("d_model").iloc[-1]  # the widest: the most capacity to generalise
                acc = _with_training_length(r)
                pts = sorted((int(t), float(v)) for t, v in acc.items() if not is_missing(v))
                if pts:
                    lines.append((f"{m} d={r['d_model']}", [t for t, _ in pts], [v for _, v in pts],
                                  {**style[m], "hollow": r["learn_class"] not in RESULT_CLASSES}))
            if lines:
                panels.append(Panel(f"{task} trained at n={n}, K={k_text(k)}", lines,
                                    chance=float(gp["chance"].iloc[0])))
        if panels:
            out.png(section, f"{prefix}_{slug(task)}_acc_vs_len", f"{task}: accuracy vs test length, widest "
                    "of each model", plot(panels, Axis("test length (tokens)", unit="n"), ACCURACY,
                                          title=f"{section.removeprefix('Retrieval: ')} · {task}: accuracy "
                                          "at longer test lengths"))
