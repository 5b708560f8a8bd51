"""Hybrid ratio and placement, for `archbench report`: recall of one depth's models by where their
attention-like layers sit.

A model of two mixers, one recurrent and one attention-like, is written as its pattern over R and A
("MMAM:M=mamba2,A=attention" is RRAR). One table per (task point, depth, d_model, mlp_ratio): rows are
(recurrent partner, attention-like partner), each with its configs; columns the R/A patterns present,
from RRRR (the pure recurrent stack) by number of A, then by their positions, to AAAA (the pure
attention-like stack); cells the best-lr accuracy (mean over seeds). A pure stack fills the RRRR or
AAAA column of every row whose partner it is (same mixer, same configs). Presets (archs/presets.py)
sit in the grid like any model, their name beside the figure, and are listed with their pattern.
Compare: the hybrid-ratio studies (Mamba-2 paper §9.2.3, Wang et al. 2025 arXiv 2507.06457, Kimi
Linear's 0:1 … 15:1 ablation) measure perplexity; this grid measures recall.

Glossary
  R / A     a recurrent / an attention-like layer (ATTENTION_LIKE: full or sliding-window attention)
  partner   (mixer, its config overrides): one side of a row
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from archbench.bench.report.cells import SPREAD_NOTE, acc_text, k_text, natural
from archbench.bench.report.format import MISSING, cell_raw, markdown
from archbench.bench.report.outputs import Outputs

ATTENTION_LIKE = frozenset({"attention", "swa"})


def _partner_text(partner: tuple[str, str]) -> str:
    mixer, cfg = partner
    fields = json.loads(cfg)
    return f"{mixer} ({', '.join(f'{k}={v}' for k, v in sorted(fields.items()))})" if fields else mixer


def roles(pattern: str, mixers: dict[str, str],
          configs: dict[str, dict[str, Any]]) -> tuple[str, Any, Any] | None:
    """(R/A pattern, recurrent partner or None, attention-like partner or None); None for a model that
    is not one recurrent and/or one attention-like mixer (two recurrent families, say)."""
    used = {c: mixers[c] for c in dict.fromkeys(pattern)}
    rec = [c for c, m in used.items() if m not in ATTENTION_LIKE]
    att = [c for c, m in used.items() if m in ATTENTION_LIKE]
    if len(rec) > 1 or len(att) > 1:
        return None

    def partner(letters: list[str]) -> tuple[str, str] | None:
        if not letters:
            return None
        return used[letters[0]], json.dumps(configs.get(letters[0], {}), sort_keys=True)

    return "".join("A" if c in att else "R" for c in pattern), partner(rec), partner(att)


def _column_order(ra: str) -> tuple:
    return (ra.count("A"), [i for i, c in enumerate(ra) if c == "A"])


def _grid(g: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]] | None:
    """The wide table and the long records of one (task point, depth, d_model, mlp_ratio) group."""
    from archbench.archs.presets import PRESETS

    placed = []
    for _, r in g.iterrows():
        got = roles(r["pattern"], r["mixers"], r["configs"])
        if got is not None:
            placed.append((r, *got))
    pairs = sorted({(rec, att) for _, _, rec, att in placed if rec and att})
    if not pairs:
        return None  # no hybrid of this shape: the pure stacks are in the accuracy grid already
    cells: dict[tuple, list[tuple[str, pd.Series]]] = {}
    recs = []
    for r, ra, rec, att in placed:
        for pair in pairs:
            if (rec is None or rec == pair[0]) and (att is None or att == pair[1]):
                cells.setdefault((pair, ra), []).append((r["family"], r))
                recs.append({"recurrent": _partner_text(pair[0]), "attention_like": _partner_text(pair[1]),
                             "ra_pattern": ra, "model": r["model"], "pattern": r["pattern"],
                             "preset": r["family"] in PRESETS,
                             "accuracy": cell_raw(r["status"], r["accuracy"]),
                             "acc_min": r["acc_min"], "acc_max": r["acc_max"], "seeds": r["seeds"],
                             "best_lr": r["_lr"], "status": r["status"]})
    cols = sorted({ra for _, ra in cells}, key=_column_order)
    rows = []
    for pair in pairs:
        row = {"recurrent": _partner_text(pair[0]), "attention-like": _partner_text(pair[1])}
        for ra in cols:
            entries = sorted(cells.get((pair, ra), []), key=lambda e: (e[0] in PRESETS, e[0]))
            many = len(entries) > 1
            row[ra] = "; ".join(f"{acc_text(r)} ({fam})" if fam in PRESETS or many else acc_text(r)
                                for fam, r in entries) or MISSING
        rows.append(row)
    return pd.DataFrame.from_records(rows), recs


def _presets_note(g: pd.DataFrame) -> str:
    from archbench.archs.presets import PRESETS

    lines = []
    for _, r in g[g["family"].isin(list(PRESETS))].drop_duplicates("family").sort_values("family").iterrows():
        got = roles(r["pattern"], r["mixers"], r["configs"])
        ra = f" → {got[0]}" if got else " (not one recurrent + one attention-like mixer: not in the grid)"
        letters = ", ".join(f"{c}={m}" for c, m in r["mixers"].items())
        lines.append(f"- `{r['family']}`: {r['pattern']} ({letters}){ra} — {PRESETS[r['family']].source}")
    return "\n".join(lines)


def hybrid_tables(out: Outputs, section: str, prefix: str, gd: pd.DataFrame) -> None:
    """`gd`: the device's best-lr cells (bench/report/cells.py). Writes <prefix>_hybrid.{md,csv}."""
    parts, recs = [], []
    groups = gd.groupby(["task", "seq_len", "num_kv_pairs", "depth", "d_model", "mlp_ratio"])
    for (task, n, k, depth, d, mlp), g in sorted(groups, key=lambda kv: (natural(kv[0][0]), *kv[0][1:])):
        got = _grid(g)
        if got is None:
            continue
        wide, long = got
        presets = _presets_note(g)
        parts.append(f"## {task}, n={n}, K={k_text(k)} · depth {depth} · d_model {d} · mlp_ratio {mlp}\n\n"
                     f"{markdown(wide)}\n" + (f"\nPresets in this grid:\n\n{presets}\n" if presets else ""))
        recs += [{"task": task, "seq_len": n, "num_kv_pairs": None if k < 0 else k, "depth": depth,
                  "d_model": d, "mlp_ratio": mlp, **rec} for rec in long]
    if parts:
        out.table(section, f"{prefix}_hybrid", "hybrid ratio and placement: best-lr accuracy by where the "
                  f"attention-like layers (A) sit among the recurrent ones (R), {SPREAD_NOTE}; rows "
                  "(recurrent, attention-like) partners, columns R/A pattern (RRRR, AAAA: the pure stacks)",
                  "\n".join(parts).rstrip("\n"), pd.DataFrame.from_records(recs))
