"""Retrieval tables and plots for `archbench report`: accuracy at the best learning rate per cell,
as grids (model × d_model, one per task, n, K) and as plots against width, state bytes and test length.

Glossary
  cell       one (device, task, n, K, d_model, depth, mlp_ratio, model); its runs differ only in lr
  best lr    the run with the highest accuracy in a cell (ties: the smaller lr)
  n          train/test sequence length (seq_len)
  K          key-value pairs per MQAR example (num_kv_pairs); -1 inside this module for "none"
"""

from __future__ import annotations

import re

import pandas as pd

from archbench.bench.report.format import (
    MISSING,
    cell_raw,
    cell_text,
    cells,
    is_missing,
    markdown,
    slug,
    sort_rows,
)
from archbench.bench.report.frame import config_labels, require
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.plot import plot, styles

KEYS = ["device_name", "task", "seq_len", "num_kv_pairs", "d_model", "depth", "mlp_ratio", "model"]
# Every column this module reads, checked against the retrieval Spec and Result when it is imported.
READS = require("retrieval", (*KEYS, "cell", "status", "mixers", "configs", "vocab_size", "lr", "accuracy",
                              "accuracy_by_len", "state_bytes", "params", "steps"),
                "bench/report/retrieval.py")


def _k(k: int) -> str:
    return MISSING if k < 0 else str(k)


def _best_lr(rt: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the learning rate with the highest accuracy (ties: the smaller lr). A cell
    whose every run failed keeps the row of its smallest lr, so the grid shows a status, not a number."""
    rt = rt.assign(_ok=(rt["status"] == "ok") & rt["accuracy"].notna(),
                   _acc=rt["accuracy"].astype(float).fillna(-1.0), _lr=rt["lr"].astype(float).fillna(0.0))
    order = [*KEYS, "_ok", "_acc", "_lr", "_order"]
    rt = rt.sort_values(order, ascending=[True] * len(KEYS) + [False, False, True, False])
    return rt.drop_duplicates(KEYS, keep="first")


def _accuracy_tables(out: Outputs, section: str, prefix: str, dev: str, gd: pd.DataFrame) -> None:
    parts, csv_parts = [], []
    groups = gd.groupby(["task", "seq_len", "num_kv_pairs"])
    for (task, n, k), g in sorted(groups, key=lambda kv: (_natural(kv[0][0]), *kv[0][1:])):
        g = g.assign(_v=cells(g, "accuracy", lambda s, a: cell_text(s, a, "{:.3f}".format)))
        w = g.pivot(index=["model", "depth", "mlp_ratio"], columns="d_model", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = ["model", "depth", "mlp_ratio", *(f"d={c}" for c in w.columns[3:])]
        body = markdown(sort_rows(w, ["model", "depth", "mlp_ratio"]).fillna(MISSING).astype(str))
        parts.append(f"## {task}, train/test length n={n}, K={_k(k)}\n\n{body}\n")
        if task.startswith("mqar"):  # "mqar V=64": one headline per vocabulary
            out.headlines.append((f"{task.replace('mqar', 'MQAR')} accuracy (best lr) — {dev}, "
                                  f"n={n}, K={_k(k)}", body))
        csv_parts.append(g.assign(accuracy=cells(g, "accuracy", cell_raw)))
    csv = pd.concat(csv_parts)
    csv = csv.assign(num_kv_pairs=csv["num_kv_pairs"].map(lambda k: None if k < 0 else k), best_lr=csv["lr"])
    csv = csv[["task", "seq_len", "num_kv_pairs", "model", "depth", "mlp_ratio", "d_model", "accuracy",
               "best_lr", "state_bytes", "params", "steps", "status"]]
    out.table(section, f"{prefix}_accuracy", "held-out exact-match accuracy at the best learning rate (rows "
              "model, depth, mlp_ratio; columns d_model; one table per task, n, K)",
              "\n".join(parts).rstrip("\n"), csv)


def _retrieval_plots(out: Outputs, section: str, prefix: str, ok: pd.DataFrame) -> None:
    style = styles(ok["model"])
    for task, gt in ok.groupby("task", sort=True):
        by_width, by_state, by_len = [], [], []
        for (n, k), gp in gt.groupby(["seq_len", "num_kv_pairs"], sort=True):
            title = f"{task} n={n}, K={_k(k)}"
            models = list(gp.groupby(["model", "depth"], sort=True))
            by_width.append((title, [(f"{m} (L={depth})", s["d_model"].tolist(), s["accuracy"].tolist(),
                                      style[m]) for (m, depth), s in models]))
            sb = gp[gp["state_bytes"].notna()].sort_values("state_bytes")
            by_state.append((title, [(m, s["state_bytes"].tolist(), s["accuracy"].tolist(),
                                      {**style[m], "linestyle": "none"})
                                     for m, s in sb.groupby("model", sort=True)]))
            lens = []
            for (m, _), s in models:  # the widest model: the one with the most capacity to generalise
                r = s.sort_values("d_model").iloc[-1]
                acc = r["accuracy_by_len"] if isinstance(r["accuracy_by_len"], dict) else {}
                pts = sorted((int(t), float(v)) for t, v in acc.items() if not is_missing(v))
                if pts:
                    lens.append((f"{m} d={r['d_model']}", [t for t, _ in pts], [v for _, v in pts], style[m]))
            if lens:
                by_len.append((title, lens))
        stem = f"{prefix}_{slug(task)}"
        out.png(section, f"{stem}_acc_vs_dmodel", f"{task}: accuracy vs d_model, one panel per (n, K)",
                plot(by_width, "d_model", "accuracy", xscale="log2", yscale="linear"))
        if any(lines for _, lines in by_state):
            out.png(section, f"{stem}_acc_vs_state", f"{task}: accuracy vs measured state bytes (the recall "
                    "frontier)", plot(by_state, "state bytes (batch 1)", "accuracy", yscale="linear"))
        if by_len:
            out.png(section, f"{stem}_acc_vs_len", f"{task}: accuracy vs test length, widest of each model",
                    plot(by_len, "test length", "accuracy", xscale="log2", yscale="linear"))


def _natural(label: str) -> tuple:
    """Sort key that orders 'mqar V=64' before 'mqar V=128' (numbers as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label))


def retrieval_tables(out: Outputs, rt: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every retrieval table and plot, one set per device."""
    # -1 stands for "none" (a task without K) so the keys sort and group; runs of one task with
    # different vocabularies are different experiments: "mqar V=128".
    rt = rt.assign(num_kv_pairs=rt["num_kv_pairs"].map(lambda k: -1 if is_missing(k) else int(k)),
                   task=[f"{t} V={int(v)}" if not is_missing(v) else str(t)
                         for t, v in zip(rt["task"], rt["vocab_size"], strict=True)])
    rt = rt.assign(model=config_labels(rt, KEYS[:-1]))
    for dev, gd in _best_lr(rt).groupby("device_name", sort=True):
        section, prefix = f"Retrieval: {dev}", f"retrieval_{slugs[dev]}"
        _accuracy_tables(out, section, prefix, dev, gd)
        _retrieval_plots(out, section, prefix, gd[gd["_ok"]])
