"""The capacity reference on the recall–state plots: the state one d × d linear memory needs for top-1
retrieval of the n key–value pairs the plotted task stores.

Barnfield, Kim, Nichani, Lee, Lu 2026, "Sharp Capacity Thresholds in Linear Associative Memory: From
Winner-Take-All to Listwise Retrieval" (arXiv 2605.05189): with isotropic Gaussian keys and targets,
top-1 retrieval of n pairs from a d × d linear memory (every target beating its largest distractor)
needs d² ≍ n log n — the correlation-matrix memory, Σ v kᵀ, reaches it at a sharp transition and no
linear memory does with less — and the paper's conjectured sharp threshold is d² ~ 2 n ln n. On an MQAR
plot n = K, the pairs per example, and the line is drawn at

    bytes = 2 K ln K · b,   b the bytes of one state element: 4 (recurrent states run in float32 at any
                            activation dtype, archs/ops/common.py `state_dtype`), 8 in a float64 run.

Assumption: the whole state is ONE d × d memory that must hold all K pairs — one head of one layer, at the
threshold. A model of L layers and H heads holds L·H such memories, each seeing every pair, so a model left
of the line has less state than a single memory needs (under the paper's model it cannot retrieve K pairs
top-1 in a linear memory, whatever its layout); right of it, the line says nothing about its layout, only
how far above a single memory's need its state is. Tasks without K pairs (passkey, copy, …) get no line.
"""

from __future__ import annotations

import math

from archbench.bench.report.plot import Series

SOURCE = "arXiv 2605.05189"
STYLE = {"color": "0.4", "linestyle": "--", "linewidth": 1}


def capacity_bytes(pairs: int, element_bytes: int = 4) -> float | None:
    """State bytes of one d × d memory at the top-1 threshold for `pairs` pairs: 2 n ln n elements of
    `element_bytes` each; None where n < 2 (no distractor to beat)."""
    if pairs < 2:
        return None
    return 2 * pairs * math.log(pairs) * element_bytes


def element_bytes(dtype: str) -> int:
    """Bytes of one recurrent-state element in a run of activation `dtype`: float32 unless float64."""
    return 8 if str(dtype).removeprefix("torch.") == "float64" else 4


def capacity_series(task: str, pairs: int, dtype: str) -> list[Series]:
    """The labelled vertical line for a recall–state panel of `task` with K = `pairs` (none for a task
    without pairs): x = `capacity_bytes`, spanning the accuracy axis [0, 1]."""
    x = capacity_bytes(pairs, element_bytes(dtype)) if task.startswith("mqar") else None
    if x is None:
        return []
    kind = "float64" if element_bytes(dtype) == 8 else "float32"
    label = f"d² = 2K ln K, K={pairs}: one {kind} d×d memory ({SOURCE})"
    return [(label, [x, x], [0.0, 1.0], dict(STYLE))]
