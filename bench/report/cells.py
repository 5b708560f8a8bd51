"""Retrieval rows as cells: which runs are one cell, seeds averaged per learning rate, the best lr.

A cell is one (device, task, V, n, K, d_model, depth, mlp_ratio, model and its configs); its runs
differ only in the learning rate and the seed. Per lr the report shows the mean accuracy over the
seeds that ran ok, with their min and max; the cell's best lr is the one with the highest mean (ties:
the smaller lr). A best-of-runs pick would reward a lucky seed: Okpekpe & Orvieto 2025 (arXiv
2508.19029) find recurrent models solve MQAR only in a narrow lr window, so one seed can flip a ranking.

Glossary
  task      the row's task, with the vocabulary when it has one: "mqar V=1024"
  K         num_kv_pairs; -1 here for a task without it (so keys sort and group), shown as "-"
  V         vocab_size; -1 here for a task without it
  model     the model's name plus the config fields it sets, "mamba2 d_state=32" (frame.config_labels;
            "mixer.field=value" in a model of several mixers; a field every row of the table sets
            alike is left out): mamba2 at d_state 8 and 32 are two cells
  family    the model's name alone: one family draws one curve through its state-size variants
  identity  the row's model identity (bench/runs/schema.model_identity: canonical JSON of its
            ModelSpec): joins a recall cell with the scaling rows of the very same model
  seed      "spec.seed/train_cfg.seed": two runs with the same lr and seed are one run (the newer kept)
  spread    half the min–max range over seeds, printed as "0.910 ±0.020 (2 seeds)"
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from archbench.bench.report.format import MISSING, is_missing, short_status
from archbench.bench.report.frame import config_labels, require
from archbench.bench.report.learning import MARK, answer_prior, classify, combine, examples_to

KEYS = ["place", "task", "vocab_size", "seq_len", "num_kv_pairs", "d_model", "depth", "mlp_ratio",
        "model"]
READS = require("retrieval", (*KEYS, "identity", "mixers", "configs", "cell", "status", "lr", "seed",
                              "train_cfg", "dtype",
                              "accuracy", "accuracy_by_len", "accuracy_by_slice", "state_bytes", "params",
                              "steps", "task_cfg", "curve", "stopped_early", "examples_seen"),
                "bench/report/cells.py")
# TrainConfig fields that make two runs different cells rather than two lrs or seeds of one: the
# recipe's choices. The budget splits a cell only where one grid point holds several budgets.
RECIPE_FIELDS = ("recipe", "schedule", "warmup_frac", "min_lr_frac", "betas", "adam_eps", "weight_decay",
                 "decay", "grad_clip", "tie_head", "init", "shuffle", "embed_dropout")
SPREAD_NOTE = "mean over seeds ± half their min–max range (seeds that ran ok)"


def prepare(rt: pd.DataFrame) -> pd.DataFrame:
    """The retrieval frame with the cell columns: task label, -1 for missing K / V, the config-aware model
    label (`model`: `config_label` and the recipe's `train_tag`), `family`, `identity` and `seed_id`."""
    rt = rt.assign(
        num_kv_pairs=rt["num_kv_pairs"].map(lambda k: -1 if is_missing(k) else int(k)),
        vocab_size=rt["vocab_size"].map(lambda v: -1 if is_missing(v) else int(v)),
        task=[f"{t} V={int(v)}" if not is_missing(v) else str(t)
              for t, v in zip(rt["task"], rt["vocab_size"], strict=True)],
        task_name=rt["task"].astype(str),  # the registered task, before the label above
        family=rt["model"].astype(str),
        seed_id=[f"{s}/{(c or {}).get('seed', MISSING)}" for s, c in zip(rt["seed"], rt["train_cfg"],
                                                                           strict=True)],
        _lr=rt["lr"].astype(float))
    labels, tags = config_labels(rt), _train_tags(rt)
    rt = rt.assign(model=[f"{lab}{tag}" for lab, tag in zip(labels, tags, strict=True)],
                   config_label=list(labels), train_tag=tags)
    return _learning_columns(rt)


def _train_tags(rt: pd.DataFrame) -> list[str]:
    """" · <recipe>, field=value" for a run whose recipe choices differ from its recipe's defaults, and
    " · <N>k examples" where one grid point holds several budgets: such runs are cells of their own."""
    from archbench.bench.experiments.recipes import RECIPES
    from archbench.bench.experiments.train import TrainConfig

    refs = {name: TrainConfig.for_recipe(name).to_dict() for name in RECIPES}
    tags = []
    for cfg in rt["train_cfg"]:
        cfg = cfg or {}
        recipe = cfg.get("recipe", "archbench")
        ref = refs[recipe]
        changed = [f"{k}={_short(cfg[k])}" for k in RECIPE_FIELDS[1:]
                   if k in cfg and _short(cfg[k]) != _short(ref[k])]
        parts = ([] if recipe == "archbench" else [f"{recipe} recipe"]) + changed
        tags.append(f" · {', '.join(parts)}" if parts else "")
    budget = rt["train_cfg"].map(lambda c: (c or {}).get("max_examples"))
    point = [k for k in KEYS if k != "model"]  # every model at a point, so one grid's cells share a tag
    several = rt.assign(_b=budget).groupby(point)["_b"].transform("nunique") > 1 if len(rt) else \
        pd.Series([], dtype=bool)
    return [f"{t} · {int(b) // 1000}k examples" if many and b is not None else t
            for t, b, many in zip(tags, budget, several, strict=True)]


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(tuple(v) if isinstance(v, list) else v)


def _learning_columns(rt: pd.DataFrame) -> pd.DataFrame:
    """Per run: the task's answer prior (chance, prior_loss), the curve's class (bench/report/learning.py)
    and the examples it took to reach 0.5 and 0.9."""
    if rt.empty:
        return rt.assign(chance=[], prior_loss=[], learn_class=[], ex_50=[], ex_90=[], last_const_share=[],
                         last_rms=[])
    priors = [answer_prior(t, cfg) for t, cfg in zip(rt["task_name"], rt["task_cfg"], strict=True)]
    curves = [c if isinstance(c, dict) else None for c in rt["curve"]]  # None: a row stored without one
    classes = [classify(c, None if is_missing(a) else float(a), not is_missing(e) and bool(e), ch, pl)
               if st == "ok" else short_status(st)
               for c, a, e, (ch, pl), st in zip(curves, rt["accuracy"], rt["stopped_early"], priors,
                                                 rt["status"], strict=True)]
    return rt.assign(chance=[p[0] for p in priors], prior_loss=[p[1] for p in priors], learn_class=classes,
                     ex_50=[examples_to(c, 0.5) for c in curves], ex_90=[examples_to(c, 0.9) for c in curves],
                     last_const_share=[_last_layer(c, "const_share") for c in curves],
                     last_rms=[_last_layer(c, "layer_rms") for c in curves])


def _last_layer(curve: dict[str, list] | None, key: str) -> float:
    """The last layer's figure at the last evaluation (diagnostics.py), NaN for a row without it."""
    values = (curve or {}).get(key)
    last = values[-1][-1] if values and values[-1] else None
    return np.nan if last is None else float(last)


def _mean_dicts(dicts: list[Any]) -> dict[str, float | None]:
    """Per key, the mean of the non-missing values (None where every seed's value is missing)."""
    keys = sorted({k for d in dicts if isinstance(d, dict) for k in d}, key=_key_order)
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [float(d[k]) for d in dicts if isinstance(d, dict) and not is_missing(d.get(k))]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def _key_order(k: str) -> tuple:
    return (0, int(k), "") if k.lstrip("-").isdigit() else (1, 0, k)


def per_lr(rt: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, lr): acc_mean / acc_min / acc_max over the seeds that ran ok, `seeds` (how
    many did), `runs` (how many ran), and the by-length and by-slice accuracies averaged the same way.
    Its status is "ok" when any seed is; else the newest run's (so a grid shows "oom", not a number)."""
    rt = rt.sort_values("_order").drop_duplicates([*KEYS, "_lr", "seed_id"], keep="last")
    recs = []
    for _, g in rt.groupby([*KEYS, "_lr"], sort=True):
        ok = g[(g["status"] == "ok") & g["accuracy"].notna()]
        first = (ok if len(ok) else g).iloc[-1]
        acc = ok["accuracy"].astype(float)
        recs.append({**first.to_dict(),
                     "status": "ok" if len(ok) else first["status"],
                     "accuracy": acc.mean() if len(ok) else np.nan,
                     "acc_min": acc.min() if len(ok) else np.nan,
                     "acc_max": acc.max() if len(ok) else np.nan,
                     "seeds": len(ok), "runs": len(g),
                     "failed": ", ".join(sorted({short_status(s) for s in g["status"] if s != "ok"})),
                     "state_bytes": ok["state_bytes"].mean() if len(ok) else np.nan,
                     "learn_class": combine(list(ok["learn_class"])) if len(ok) else first["learn_class"],
                     "ex_50": _mean_reached(ok["ex_50"]), "ex_90": _mean_reached(ok["ex_90"]),
                     "last_const_share": ok["last_const_share"].mean() if len(ok) else np.nan,
                     "last_rms": ok["last_rms"].mean() if len(ok) else np.nan,
                     "accuracy_by_len": _mean_dicts(list(ok["accuracy_by_len"])),
                     "accuracy_by_slice": _mean_dicts(list(ok["accuracy_by_slice"]))})
    cols = [*rt.columns, "acc_min", "acc_max", "seeds", "runs", "failed", "lrs_tried", "lr_lowest",
            "lr_highest"]
    out = pd.DataFrame.from_records(recs, columns=cols) if recs else pd.DataFrame(columns=cols)
    # how many learning rates the cell was run at: a best-of-sweep from one lr is no sweep; and the ends
    # of its sweep, which `lr_edge` reads
    lrs = out.groupby(KEYS)["_lr"] if len(out) else None
    return out.assign(lrs_tried=lrs.transform("nunique") if len(out) else [],
                      lr_lowest=lrs.transform("min") if len(out) else [],
                      lr_highest=lrs.transform("max") if len(out) else [])


def lr_edge(r: pd.Series) -> str:
    """"lowest" / "highest" when a cell that did not learn had its best lr at that end of a sweep of
    two or more: a lr beyond the sweep may do better, so its figure is the sweep's, not the cell's best
    (a learned cell's edge says nothing: it is at the ceiling already); else ""."""
    if r["lrs_tried"] < 2 or r["learn_class"] == "learned":
        return ""
    return "lowest" if r["_lr"] == r["lr_lowest"] else "highest" if r["_lr"] == r["lr_highest"] else ""


def best_lr_text(r: pd.Series) -> str:
    """The best lr, and which end of the sweep it is where that matters (`lr_edge`): "0.000464, lowest"."""
    edge = lr_edge(r)
    return f"{r['_lr']:g}{f', {edge}' if edge else ''}"


def _mean_reached(values: pd.Series) -> float:
    """The mean over seeds of examples to a threshold; NaN unless every seed reached it."""
    v = [x for x in values if not is_missing(x)]
    return float(np.mean(v)) if v and len(v) == len(values) else np.nan


def best_lr(pl: pd.DataFrame) -> pd.DataFrame:
    """One row per cell from `per_lr`'s: the lr with the highest mean accuracy (ties: the smaller lr).
    A cell whose every run failed keeps its smallest lr's row, so a grid shows its status."""
    pl = pl.assign(_ok=(pl["status"] == "ok") & pl["accuracy"].notna(),
                   _acc=pl["accuracy"].astype(float).fillna(-1.0))
    order = [*KEYS, "_ok", "_acc", "_lr"]
    pl = pl.sort_values(order, ascending=[True] * len(KEYS) + [False, False, True])
    return pl.drop_duplicates(KEYS, keep="first").reset_index(drop=True)


def spread_text(mean: float, lo: float, hi: float, seeds: int) -> str:
    """"0.910" for one seed, "0.910 ±0.020 (2 seeds)" for more: ± half the min–max range."""
    if seeds <= 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ±{(hi - lo) / 2:.3f} ({seeds} seeds)"


def acc_text(r: pd.Series | dict) -> str:
    """A Markdown cell for a per-lr or best-lr row: the spread text and its learning class's mark
    (learning.MARK_NOTE), or the short status."""
    if r["status"] != "ok":
        return short_status(r["status"])
    if is_missing(r["accuracy"]):
        return "n/a"
    mark = MARK.get(r.get("learn_class", "learned"), "")
    return spread_text(r["accuracy"], r["acc_min"], r["acc_max"], int(r["seeds"])) + mark


def k_text(k: int) -> str:
    return MISSING if k < 0 else str(k)


def natural(label: str) -> tuple:
    """Sort key that orders 'mqar V=64' before 'mqar V=128' (numbers as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label))
