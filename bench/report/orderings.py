"""The published orderings, checked on the stored recall cells, for `archbench report`.

The recall literature makes five claims a benchmark of these families should reproduce or contradict
with evidence (Zoology, arXiv 2312.04927; Based, arXiv 2402.18668; the hybrid studies of Jamba,
Qwen3-Next and Wang et al., arXiv 2507.06457):

    state      within a family, accuracy rises with the state it holds
    delta      at comparable state, the delta-rule family recalls at least as well as Mamba-2
    linear     linear attention without decay recalls least, at comparable state
    one-in-4   a hybrid with one attention-like layer in four is within 0.05 of full attention where its
               pure recurrent stack is below 0.5
    floor      a hybrid is never below its own pure recurrent stack

Each claim is checked between cells of one task point, width, recipe (and depth: the families at the
recall depth, the hybrids at theirs), and only between cells that may stand on a front
(bench/report/frontier.py `eligible`: the curve says the cell learned, or is flat above chance, and its
best lr comes from a sweep of at least three). A comparison with a cell that is not eligible is
*pending*, with the cell's class named: a cell on the plateau says nothing about the claim — except
where its stored accuracy already decides it. A pending cell's accuracy can only grow as the grid fills
(more lrs raise the best of its sweep, more budget a rising curve; a second seed moves its mean by about
a seed's spread, which the tolerance allows for) and never exceeds 1, so it bounds the final value from
below and 1 from above (`_at_least`): "A recalls no less than B" holds once A is
eligible within TOLERANCE of 1, and disagrees once B already stands more than TOLERANCE above an
eligible A; `one-in-4` does not apply once the recurrent stack already recalls 0.5 or more. "At
comparable state": the two cells' state bytes within a factor of `STATE_RATIO`. A claim "holds" or
"disagrees" within `TOLERANCE` of accuracy, the order of a seed's spread near the top of the scale
(results/METHODS.md). The table is regenerated with the rows: as the grid fills, pending claims become
verdicts.

Glossary
  cell      one model at one task point: its best-lr accuracy, mean over seeds (bench/report/cells.py)
  R / A     a layer of the recurrent partner / the attention-like partner (bench/report/hybrid.py)
"""

from __future__ import annotations

import itertools

import pandas as pd

from archbench.bench.report.cells import k_text, natural
from archbench.bench.report.format import fmt_bytes, markdown
from archbench.bench.report.frontier import eligible, why_not
from archbench.bench.report.hybrid import roles
from archbench.bench.report.outputs import Outputs

TOLERANCE = 0.05  # accuracy: a difference within it is no disagreement
STATE_RATIO = 2.0  # two cells hold comparable state when their state bytes are within this factor
DELTA_RULE = ("deltanet", "gated_deltanet", "kda", "gated_deltaproduct")
MAMBA2, LINEAR = "mamba2", "linear_attention"
HOLDS, DISAGREES, PENDING, NOT_APPLICABLE = "holds", "disagrees", "pending", "does not apply"
VERDICTS = (HOLDS, DISAGREES, PENDING, NOT_APPLICABLE)
GROUP = ["task", "seq_len", "num_kv_pairs", "d_model", "mlp_ratio", "train_tag"]


def _cell_text(r: pd.Series) -> str:
    return f"{r['config_label']} {r['accuracy']:.3f} @ {fmt_bytes(r['state_bytes'])}"


def _pending(cells: list[pd.Series]) -> str | None:
    """"pending: <cell> <why>" for the cells that may not stand on a front; None when all may."""
    off = [f"{r['config_label']} {why_not(r)}" for r in cells if not r["_eligible"]]
    return f"{PENDING}: " + "; ".join(off) if off else None


def _verdict(ok: bool, cells: list[pd.Series]) -> str:
    return _pending(cells) or (HOLDS if ok else DISAGREES)


def _at_least(high: pd.Series, low: pd.Series) -> str:
    """The verdict of "`high` recalls no less than `low`, within the tolerance". With `low` pending and
    `high` eligible, the stored accuracies may decide it already (module doc): `low` ends in
    [its accuracy, 1]."""
    pending = _pending([high, low])
    if pending is None:
        return HOLDS if high["accuracy"] >= low["accuracy"] - TOLERANCE else DISAGREES
    waiting = pending.removeprefix(PENDING + ": ")
    if high["_eligible"] and high["accuracy"] >= 1 - TOLERANCE:
        return (f"{HOLDS}: {high['config_label']} {high['accuracy']:.3f} is within {TOLERANCE} of 1, "
                f"whatever the other reaches ({waiting})")
    if high["_eligible"] and low["accuracy"] > high["accuracy"] + TOLERANCE:
        return (f"{DISAGREES}: {low['config_label']} already {low['accuracy']:.3f}, more than {TOLERANCE} "
                f"above {high['config_label']} {high['accuracy']:.3f}, and can only rise ({waiting})")
    return pending


def _comparable(a: pd.Series, b: pd.Series) -> bool:
    lo, hi = sorted((float(a["state_bytes"]), float(b["state_bytes"])))
    return lo > 0 and hi / lo <= STATE_RATIO


def _state_rows(pure: pd.DataFrame) -> list[dict]:
    """`state`: each family's cells in order of state bytes, accuracy never falling by more than the
    tolerance from one to the next; one cell per state size (an ablation holding the same state as the
    family's own config is not a state size)."""
    rows = []
    for family, g in sorted(pure.groupby("family"), key=lambda kv: kv[0]):
        # one cell per state size: at a size held by several configs (a gate ablation beside the default)
        # the one that sets the fewest fields, the family's own at that size
        g = g.assign(_fields=g["config_label"].str.count(" ")).sort_values(["state_bytes", "_fields",
                                                                            "config_label"])
        g = g.drop_duplicates("state_bytes")
        if len(g) < 2:
            continue  # one state size: nothing to order
        cells = [r for _, r in g.iterrows()]
        ok = all(b["accuracy"] >= a["accuracy"] - TOLERANCE for a, b in itertools.pairwise(cells))
        rows.append({"claim": "state", "subject": family, "cells": " → ".join(map(_cell_text, cells)),
                     "verdict": _verdict(ok, cells)})
    return rows


def _pair_rows(pure: pd.DataFrame, claim: str, low_family: str, high: tuple[str, ...]) -> list[dict]:
    """A claim that `low_family`'s cells recall no more than those of `high` (within the tolerance), at
    comparable state: one row per pair of cells."""
    rows = []
    lows = [r for _, r in pure[pure["family"] == low_family].sort_values("state_bytes").iterrows()]
    for _, h in pure[pure["family"].isin(high)].sort_values(["family", "state_bytes"]).iterrows():
        for low in lows:
            if _comparable(low, h):
                rows.append({"claim": claim, "subject": f"{h['family']} vs {low_family}",
                             "cells": f"{_cell_text(h)} · {_cell_text(low)}", "verdict": _at_least(h, low)})
    return rows


def _hybrid_rows(deep: pd.DataFrame) -> list[dict]:
    """`one-in-4` and `floor` for every hybrid of one recurrent and one attention-like partner."""
    placed = []
    for _, r in deep.iterrows():
        got = roles(r["pattern"], r["mixers"], r["configs"])
        if got is not None:
            placed.append((got, r))
    stacks = {(ra, partner): r for (ra, rec, att), r in placed
              for partner in (rec, att) if partner is not None and set(ra) == {ra[0]}}
    rows = []
    for (ra, rec, att), r in placed:
        if rec is None or att is None:
            continue  # a pure stack
        name = f"{r['config_label']} ({ra})"
        pure = stacks.get(("R" * len(ra), rec))
        full = stacks.get(("A" * len(ra), att))
        if pure is None:
            rows.append({"claim": "floor", "subject": name, "cells": _cell_text(r),
                         "verdict": f"{PENDING}: its recurrent stack (same config) not stored"})
            continue
        rows.append({"claim": "floor", "subject": name, "cells": f"{_cell_text(r)} · {_cell_text(pure)}",
                     "verdict": _at_least(r, pure)})
        if ra.count("A") * 4 != len(ra):
            continue  # one-in-4 speaks of one attention-like layer in four
        if full is None:
            rows.append({"claim": "one-in-4", "subject": name, "cells": _cell_text(r),
                         "verdict": f"{PENDING}: full attention-like stack not stored"})
            continue
        cells = [r, pure, full]
        text = " · ".join(map(_cell_text, cells))
        verdict = _pending(cells)
        if pure["accuracy"] >= 0.5:  # so far: a pending stack's accuracy can only rise (module doc)
            verdict = f"{NOT_APPLICABLE}: the recurrent stack recalls {pure['accuracy']:.3f} (>= 0.5)" + (
                "" if pure["_eligible"] else f"; {why_not(pure)}, it can only rise")
        elif verdict is None:
            verdict = HOLDS if abs(r["accuracy"] - full["accuracy"]) <= TOLERANCE else DISAGREES
        rows.append({"claim": "one-in-4", "subject": name, "cells": text, "verdict": verdict})
    return rows


def ordering_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """Every claim's rows for one device's best-lr cells (bench/report/cells.py `best_lr`, ok rows)."""
    cells = cells.assign(_eligible=eligible(cells))
    rows = []
    for key, g in sorted(cells.groupby(GROUP), key=lambda kv: (natural(kv[0][0]), *kv[0][1:])):
        depths = sorted(g["depth"].unique())
        point = dict(zip(GROUP, key, strict=True))
        for depth in depths:
            at = g[g["depth"] == depth]
            pure = at[at["family"] == at["config_label"].str.split(" ").str[0]]
            pure = pure[pure["pattern"].map(lambda p: len(set(p)) == 1)]
            got = (_state_rows(pure) + _pair_rows(pure, "delta", MAMBA2, DELTA_RULE)
                   + _pair_rows(pure, "linear", LINEAR, tuple(sorted(set(pure["family"]) - {LINEAR})))
                   + _hybrid_rows(at))
            rows += [{**point, "depth": depth, **r} for r in got]
    return pd.DataFrame.from_records(rows, columns=[*GROUP, "depth", "claim", "subject", "cells", "verdict"])


def ordering_tables(out: Outputs, section: str, prefix: str, cells: pd.DataFrame) -> None:
    """Writes <prefix>_orderings.{md,csv}: one part per task point, depth, width and recipe."""
    rows = ordering_rows(cells)
    if rows.empty:
        return
    parts = []
    for key, g in rows.groupby([*GROUP, "depth"], sort=False):
        task, n, k, d, mlp, tag, depth = key
        counts = g["verdict"].map(lambda v: v.split(":")[0]).value_counts()
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        parts.append(f"## {task}, n={n}, K={k_text(k)} · depth {depth} · d_model {d} · mlp_ratio {mlp}{tag}"
                     f"\n\n{tally}\n\n"
                     f"{markdown(g[['claim', 'subject', 'cells', 'verdict']])}\n")
    out.table(section, f"{prefix}_orderings", "the published orderings checked on these cells (claims: "
              "bench/report/orderings.py): holds / disagrees within ±0.05 accuracy, at comparable state "
              "(within 2× bytes), or pending while a cell it needs has not learned or lacks a 3-lr sweep",
              "\n".join(parts).rstrip("\n"), rows)
