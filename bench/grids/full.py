"""The scaling grid and the retrieval grid, one after the other."""

from __future__ import annotations

from archbench.bench.grids import Params, retrieval, scaling

TAKES = tuple(dict.fromkeys(scaling.TAKES + retrieval.TAKES))


def cells(p: Params):
    return [("scaling", c) for _, c in scaling.cells(p)] + [("retrieval", c) for _, c in retrieval.cells(p)]
