"""Retrieval tables and plots for `archbench report`: accuracy at the best learning rate per cell,
as grids (arch × d_model, one per task, n, K) and as plots against width, state bytes and test length.

Glossary
  cell       one (device, task, n, K, d_model, n_layer, arch); its runs differ only in lr
  best lr    the run with the highest accuracy in a cell (ties: the smaller lr)
  n          train/test sequence length (seq_len)
  K          key-value pairs per MQAR example (num_kv_pairs); -1 inside this module for "none"
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from archbench.bench.report_format import (
    MISSING,
    _arch_labels,
    _cell,
    _cells,
    _markdown,
    _missing,
    _Outputs,
    _plot,
    _raw,
    _slug,
    _sorted,
    _styles,
)

RETRIEVAL_FIELDS = ("task", "num_kv_pairs", "n_layer", "lr", "accuracy", "accuracy_by_len", "params", "steps")
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
    groups = gd.groupby(["task", "seq_len", "num_kv_pairs"])
    for (task, n, k), g in sorted(groups, key=lambda kv: (_natural(kv[0][0]), *kv[0][1:])):
        cells = _cells(g, "accuracy", lambda s, a: _cell(s, a, "{:.3f}".format))
        g = g.assign(layers=g["n_layer"].map(_k), _v=cells)
        w = g.pivot(index=["arch", "layers"], columns="d_model", values="_v")
        w = w.reindex(columns=sorted(w.columns)).reset_index()
        w.columns = ["arch", "n_layer", *(f"d={c}" for c in w.columns[2:])]
        body = _markdown(_sorted(w, ["arch", "n_layer"]).fillna(MISSING))
        parts.append(f"## {task}, train/test length n={n}, K={_k(k)}\n\n{body}\n")
        if task.startswith("mqar"):  # "mqar V=64": one headline per vocabulary
            out.headlines.append((f"{task.replace('mqar', 'MQAR')} accuracy (best lr) — {dev}, "
                                  f"n={n}, K={_k(k)}", body))
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


def _natural(label: str) -> tuple:
    """Sort key that orders 'mqar V=64' before 'mqar V=128' (numbers as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label))


def _task_label(task: str, cfg: Any) -> str:
    """'mqar V=128': runs of one task with different vocabularies are different experiments."""
    vocab = cfg.get("vocab_size") if isinstance(cfg, dict) else None
    return f"{task} V={vocab}" if vocab else str(task)


def _retrieval(out: _Outputs, rt: pd.DataFrame, slugs: dict[str, str]) -> None:
    required = ["arch", "task", "seq_len", "d_model"]
    bad = rt[required].isna().any(axis=1)
    if bad.any():
        out.notes.append(f"{int(bad.sum())} retrieval row(s) lack one of {', '.join(required)}; left out.")
    rt = rt[~bad].astype({"seq_len": int, "d_model": int})
    # -1 stands for "none" (a task without K, a row without n_layer) so the keys sort and group.
    rt = rt.assign(num_kv_pairs=rt["num_kv_pairs"].map(lambda k: -1 if _missing(k) else int(k)),
                   n_layer=rt["n_layer"].map(lambda k: -1 if _missing(k) else int(k)),
                   task=[_task_label(t, c) for t, c in zip(rt["task"], rt.get("task_cfg", [None] * len(rt)),
                                                          strict=True)])
    rt = rt.assign(arch=_arch_labels(rt, RETRIEVAL_KEYS[:-1]))
    for dev, gd in _best_lr(rt).groupby("device_name", sort=True):
        section, prefix = f"Retrieval: {dev}", f"retrieval_{slugs[dev]}"
        _accuracy_tables(out, section, prefix, dev, gd)
        _retrieval_plots(out, section, prefix, gd[gd["_ok"]])
