"""Peer runs beside archbench's: learning curves another project's own trainer measured on the data
archbench trains on, drawn with the archbench runs of the same task point, model family, recipe and
learning rate — the check that archbench's trainer is not what a result depends on.

A peer run is stored as JSON under <results>/raw/peer/ (a list of runs) by the script that ran it
outside this project (its source and patches are named in the file and in results/METHODS.md):

    [{"source": "HazyResearch/zoology <commit>",
      "config": {"task": {"name": "mqar", "seq_len": 64, "num_kv_pairs": 8, "vocab_size": 256},
                 "trainer": {"learning_rate": 0.00215, ...}, "model_config": {...}, ...},
      "label": "...",   (optional)
      "epochs": [{"epoch": 1, "examples": 9984, "train_loss": ..., "valid_accuracy": ...}, ...]}]

Glossary: peer = the other project's run; ours = archbench's retrieval rows of the same recipe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from archbench.bench.report.format import markdown, slug
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.plot import ACCURACY, Axis, Panel, Series, plot
from archbench.bench.runs.store import regular_files

RECIPE = {"HazyResearch/zoology": "zoology"}  # peer project -> the archbench recipe that mirrors its trainer
FAMILY = {"zoology.mixers.attention.MHA": "attention"}  # a peer's sequence mixer -> the archbench mixer


def _label(run: dict) -> str:
    if run.get("label"):
        return str(run["label"])
    heads = ((run.get("config") or {}).get("model_config") or {}).get("sequence_mixer", {}).get("kwargs", {})
    n = heads.get("num_heads")
    extra = "" if n is None else f", {n} head{'s' if n != 1 else ''}"
    return f"{run['source'].split()[0]} (its trainer{extra})"


def _ours(rt: pd.DataFrame, task: dict, recipe: str, lr: float, family: str | None) -> pd.DataFrame:
    """Our pure-`family` runs of the peer's task point, recipe and lr (none for an unknown family)."""
    if rt.empty or family is None:
        return rt.iloc[:0]
    cfg = rt["task_cfg"].map(lambda c: {k: c.get(k) for k in ("seq_len", "num_kv_pairs", "vocab_size")})
    want = {k: task.get(k) for k in ("seq_len", "num_kv_pairs", "vocab_size")}
    same = (rt["task_name"] == task.get("name")) & cfg.map(want.__eq__) & \
        (rt["train_cfg"].map(lambda c: (c or {}).get("recipe", "archbench")) == recipe) & \
        rt["lr"].map(lambda v: math.isclose(float(v), lr, rel_tol=1e-6)) & (rt["status"] == "ok") & \
        rt["mixers"].map(lambda m: set(m.values()) == {family})
    return rt[same]


def _row(run: str, examples: int, accuracy: float, loss: float | None) -> dict[str, object]:
    return {"run": run, "examples": examples, "held-out accuracy": f"{accuracy:.3f}",
            "training loss": "n/a" if loss is None else f"{loss:.3f}"}


def peer_tables(out: Outputs, rt: pd.DataFrame, peer_dir: Path) -> None:
    """One figure and one table per peer file: its runs and ours, accuracy and loss against examples."""
    for path in regular_files(sorted(peer_dir.glob("*.json"))) if peer_dir.is_dir() else []:
        runs = json.loads(path.read_text("utf-8"))
        first = runs[0]
        task, lr = first["config"]["task"], float(first["config"]["trainer"]["learning_rate"])
        recipe = RECIPE.get(first["source"].split()[0], "archbench")
        mixer = (first["config"].get("model_config") or {}).get("sequence_mixer", {}).get("name")
        series: list[Series] = []
        loss: list[Series] = []
        table = []
        for i, run in enumerate(runs):
            ex = [e["examples"] / 1000 for e in run["epochs"]]
            series.append((_label(run), ex, [e["valid_accuracy"] for e in run["epochs"]],
                           {"color": f"C{i}", "marker": "o", "linestyle": "--"}))
            loss.append((_label(run), ex, [e["train_loss"] for e in run["epochs"]],
                         {"color": f"C{i}", "marker": "o", "linestyle": "--"}))
            table += [_row(_label(run), e["examples"], e["valid_accuracy"], e["train_loss"])
                      for e in run["epochs"]]
        ours = _ours(rt, task, recipe, lr, FAMILY.get(mixer))
        for j, (_, r) in enumerate(ours.iterrows()):
            c, name = r["curve"], f"archbench {r['model']}"
            ex = [e / 1000 for e in c["examples"]]
            series.append((name, ex, c["accuracy"], {"color": f"C{len(runs) + j}", "marker": "s"}))
            loss.append((name, ex, c["loss"], {"color": f"C{len(runs) + j}", "marker": "s"}))
            table += [_row(name, e, a, v)
                      for e, a, v in zip(c["examples"], c["accuracy"], c["loss"], strict=True)]
        title = (f"{task['name']} n={task.get('seq_len')}, K={task.get('num_kv_pairs')}, "
                 f"V={task.get('vocab_size')}, lr={lr:g}")
        stem = f"peer_{slug(path.stem)}"
        caption = (f"peer check: {first['source']}'s own trainer on archbench's data beside archbench's "
                   f"{recipe} recipe, {title} (after each epoch: held-out accuracy, and the training loss "
                   f"averaged over the epoch; {path.name})")
        out.table("Peer runs", stem, caption, markdown(pd.DataFrame(table)), pd.DataFrame(table))
        # the chance level of archbench's runs of the same data (the peer's file does not carry one)
        chance = float(ours["chance"].iloc[0]) if len(ours) else None
        out.png("Peer runs", stem, caption,
                plot([Panel("held-out accuracy after each epoch", series, chance=chance),
                      Panel("training loss, mean of the epoch", loss,
                            y=Axis("training loss (nats)", scale="linear"))],
                     Axis("examples seen (thousands)", scale="linear"), ACCURACY,
                     title=f"peer check: {first['source'].split()[0]} against archbench, {title}"))
