"""Generation tables and plots for `archbench report`: the largest batch each model serves within the
memory budget and its throughput there, throughput and memory against batch size, one set per group of
one device, dtype, shape, vocabulary, P, G and budget (every model of a table has the same depth and
width, and the header says so).

Glossary
  b          batch size (sequences served together)
  b*         the largest batch whose measured memory (parameters + state at P+G + transient peak) fits
  tokens/s   decode throughput, b (G-1) / decode time; e2e adds the prefill: b G / (TTFT + decode time)
  TTFT       time to first token: the prefill of the whole batch
  P, G       prompt length, tokens generated per sequence
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from archbench.bench.report.decode import path_dash, path_labels
from archbench.bench.report.format import (
    MISSING,
    NA,
    cell_text,
    fmt_bytes,
    fmt_seconds,
    is_missing,
    markdown,
    short_status,
    slug,
    sort_rows,
)
from archbench.bench.report.frame import config_labels, require
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.palette import styles
from archbench.bench.report.plot import Axis, Panel, plot

GROUP_KEYS = ("device_name", "dtype", "depth", "d_model", "mlp_ratio", "vocab_size", "prompt_len", "gen_len",
              "memory_budget_bytes")
READS = require("generation", (*GROUP_KEYS, "cell", "status", "model", "mixers", "configs", "batch",
                               "decode_backend", "backend", "ttft_s", "token_latency_s", "tokens_per_s",
                               "e2e_tokens_per_s", "state_bytes", "memory_needed_bytes", "fits_budget",
                               "bound_s", "energy_j_per_token", "energy_source"),
                "bench/report/generation.py")
LARGEST_CAPTION = ("the largest batch within the memory budget (memory needed: parameters + state / KV cache "
                   "at P+G + the transient peak, measured) and the throughput there; 'next batch' says why "
                   "the sweep stopped")
BY_BATCH_CAPTION = ("decode tokens/s per batch size ('(over)': the measured memory exceeds the budget; "
                    "skipped: parameters + state alone exceed it)")


def _fmt_rate(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _fill_backend(g: pd.DataFrame) -> list[str]:
    """A skipped or failed batch ran nothing: show it under the path its model ran at other batches."""
    ran = g[g["backend"].notna()].groupby(["model", "decode_backend"])["backend"].agg(
        lambda b: b.value_counts().index[0])
    return [b if not is_missing(b) else ran.get((m, d), d)
            for b, m, d in zip(g["backend"], g["model"], g["decode_backend"], strict=True)]


def _largest(g: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, backend): b*, its figures, and why the sweep stopped after it."""
    recs = []
    for (model, backend), s in g.groupby(["model", "backend"], sort=True):
        s = s.sort_values("batch")
        fit = s[(s["status"] == "ok") & (s["fits_budget"] == True)]  # noqa: E712 (a column of bools / NaN)
        best = fit.iloc[-1] if len(fit) else None
        after = s[s["batch"] > best["batch"]] if best is not None else s
        if len(after):
            nxt = after.iloc[0]
            why = ("measured memory over budget" if nxt["status"] == "ok" else short_status(nxt["status"]))
            if str(nxt["status"]).startswith("skipped: over the memory budget"):
                why = "parameters + state over budget"
            stop = f"b={int(nxt['batch'])}: {why}"
        else:
            stop = "largest batch tried (--max-batch)"
        rec: dict[str, Any] = {"model": model, "backend": backend, "stopped": stop}
        if best is None:
            rec.update(largest_batch=None)
        else:
            rec.update(largest_batch=int(best["batch"]), tokens_per_s=best["tokens_per_s"],
                       e2e_tokens_per_s=best["e2e_tokens_per_s"], ttft_s=best["ttft_s"],
                       token_latency_s=best["token_latency_s"],
                       memory_needed_bytes=best["memory_needed_bytes"],
                       state_bytes_per_seq=best["state_bytes"] / best["batch"])
        recs.append(rec)
    cols = ["model", "backend", "largest_batch", "tokens_per_s", "e2e_tokens_per_s", "ttft_s",
            "token_latency_s", "memory_needed_bytes", "state_bytes_per_seq", "stopped"]
    return pd.DataFrame.from_records(recs).reindex(columns=cols)


def _largest_md(lg: pd.DataFrame) -> pd.DataFrame:
    def f(v: Any, fmt) -> str:
        return NA if is_missing(v) else fmt(v)

    return pd.DataFrame({
        "model": lg["model"], "backend": lg["backend"],
        "largest batch": [MISSING if is_missing(b) else str(int(b)) for b in lg["largest_batch"]],
        "decode tokens/s": [f(v, _fmt_rate) for v in lg["tokens_per_s"]],
        "e2e tokens/s": [f(v, _fmt_rate) for v in lg["e2e_tokens_per_s"]],
        "TTFT": [f(v, fmt_seconds) for v in lg["ttft_s"]],
        "per token": [f(v, fmt_seconds) for v in lg["token_latency_s"]],
        "memory needed": [f(v, fmt_bytes) for v in lg["memory_needed_bytes"]],
        "state / sequence": [f(v, fmt_bytes) for v in lg["state_bytes_per_seq"]],
        "next batch": lg["stopped"],
    })


def _by_batch(g: pd.DataFrame) -> pd.DataFrame:
    """Rows model, backend; a column per batch: decode tokens/s, '(over)' where memory exceeds the budget."""
    def text(status: str, v: Any, fits: Any) -> str:
        cell = cell_text(status, v, _fmt_rate)
        return f"{cell} (over)" if status == "ok" and not is_missing(fits) and not fits else cell

    w = g.assign(_v=[text(s, v, f) for s, v, f in zip(g["status"], g["tokens_per_s"], g["fits_budget"],
                                                       strict=True)])
    w = w.pivot(index=["model", "backend"], columns="batch", values="_v")
    w = w.reindex(columns=sorted(w.columns)).reset_index()
    w.columns = ["model", "backend", *(f"b={int(c)}" for c in w.columns[2:])]
    return sort_rows(w, ["model", "backend"]).fillna(MISSING)


def _plots(out: Outputs, section: str, prefix: str, title: str, g: pd.DataFrame, budget: float,
           lg: pd.DataFrame) -> None:
    ok = g[g["status"] == "ok"]
    if ok.empty:
        return
    style = styles(g["model"], dict(zip(g["model"], g["family"], strict=True)))
    thr, mem = [], []
    lo, hi = ok["tokens_per_s"].min(), ok["tokens_per_s"].max()
    names = path_labels(ok)
    for (model, backend), s in ok.groupby(["model", "backend"], sort=True):
        s = s.sort_values("batch")
        st = {**style[model], "linestyle": path_dash(backend)}
        thr.append((names[model, backend], s["batch"].tolist(), s["tokens_per_s"].tolist(), st))
        mem.append((names[model, backend], s["batch"].tolist(), s["memory_needed_bytes"].tolist(), st))
    for model, b in zip(lg["model"], lg["largest_batch"], strict=True):
        if not is_missing(b):  # the budget's limit on this model's batch: a vertical line at b*
            thr.append((f"_{model} largest batch within budget", [b, b], [lo, hi],
                        {"color": style[model]["color"], "linestyle": ":", "marker": None}))
    if lg["largest_batch"].notna().any():
        thr.append(("dotted: the model's largest batch within the budget", [], [],
                    {"color": "0.3", "linestyle": ":"}))
    xs = sorted(g["batch"].unique())
    mem.append((f"budget {fmt_bytes(budget)}", [xs[0], xs[-1]], [budget, budget],
                {"color": "black", "linestyle": "--", "marker": None, "linewidth": 1.5}))
    out.png(section, f"{prefix}_throughput", "decode tokens/s vs batch (log-log; dotted: each model's "
            "largest batch within the memory budget) and the memory each batch needs against the budget "
            "(dashed)",
            plot([Panel("decode throughput", thr, y=Axis("decode tokens/s")),
                  Panel("memory needed: parameters + state / KV cache + transient peak", mem,
                        y=Axis("memory needed", unit="B"))],
                 Axis("batch (sequences)", unit="n"), Axis(""), title=title))


def generation_tables(out: Outputs, gt: pd.DataFrame, slugs: dict[str, str]) -> None:
    """Every generation table and plot, one set per group of one device, dtype, shape, P, G and budget."""
    for keys, g in gt.groupby(list(GROUP_KEYS), sort=True):
        dev, dtype, depth, d_model, mlp, vocab, P, G, budget = keys
        g = g.assign(model=config_labels(g), family=g["model"].astype(str))
        g = g.assign(backend=_fill_backend(g))
        g = g.sort_values(["model", "backend", "batch", "_order"]).drop_duplicates(
            ["model", "backend", "batch"], keep="last")
        title = (f"{dev} · {dtype} · depth {depth} · d_model {d_model} · mlp_ratio {mlp} · V {vocab} · "
                 f"P {P} · G {G} · budget {fmt_bytes(budget)}")
        section = f"Generation: {title}"
        prefix = (f"generation_{slugs[dev]}_{slug(dtype)}_L{depth}_d{d_model}_mlp{mlp}_v{vocab}_p{P}_g{G}_"
                  f"m{int(budget) >> 20}")
        lg = _largest(g)
        body = out.table(section, f"{prefix}_largest_batch", LARGEST_CAPTION, _largest_md(lg), lg)
        out.headlines.append((f"Largest batch within budget — {title}", body))
        csv = sort_rows(g, ["model", "backend", "batch"])[
            ["model", "backend", "batch", "status", "ttft_s", "token_latency_s", "tokens_per_s",
             "e2e_tokens_per_s", "state_bytes", "memory_needed_bytes", "fits_budget", "bound_s",
             "energy_j_per_token", "energy_source"]]
        out.table(section, f"{prefix}_by_batch", BY_BATCH_CAPTION, markdown(_by_batch(g)), csv)
        _plots(out, section, prefix, title, g, float(budget), lg)
