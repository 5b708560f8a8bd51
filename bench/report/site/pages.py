"""The results site's pages, in reading order, and which page shows each table and figure the report
wrote: the first rule in RULES whose pattern matches the file's stem (the specific rules first: a
scaling group's decode tables before the rest of the group). A file no rule matches (a plugin's kind,
a new table) goes to "More results" rather than being left out.

The order answers the question archbench asks: what recall each architecture buys at what cost (the
frontier, first), how cost grows with n, what decoding costs, then the recall evidence behind the
frontier (by task, by state size, hybrids, learning curves), what the grid took, and where it ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    slug: str  # file name without .html
    title: str
    intro: str


PAGES = (
    Page("index", "Recall–cost frontier",
         "Recall (best-lr accuracy of a small trained model) against what the same model costs to run: "
         "state bytes, decode time per token, prefill time and energy. A model on the front is one no "
         "other beats on both. Only cells whose learning curve says they learned (or sit flat above "
         "chance) after a sweep of at least three learning rates stand on a front; the rest are drawn "
         "hollow."),
    Page("scaling", "Scaling and crossover",
         "Time per call against sequence length n for each mode, the fitted log-log exponent, the n where "
         "two models swap order, peak memory, energy and utilisation. Every table holds models of one "
         "shape (depth, width, MLP ratio). Then the pytest-benchmark runs: the training step per mixer "
         "and each chunked op on its own."),
    Page("decode", "Decode and generation",
         "One token at context n against its bytes-moved bound, the memory a decode step holds and "
         "allocates, and generation: the largest batch within a memory budget and its throughput."),
    Page("recall", "Recall by task",
         "Held-out accuracy at the best learning rate for every task, width and model, the learning-rate "
         "sweep behind each best lr, accuracy at longer test lengths and by query slice."),
    Page("state", "State sweeps",
         "Accuracy against the state a model holds (measured from its state tensors): one line per family "
         "through its state-size variants — Zoology's recall–state view — and the state / KV-cache bytes "
         "against n."),
    Page("hybrids", "Hybrids",
         "Recall by where the attention-like layers sit among the recurrent ones (R/A patterns of one "
         "depth), with the production presets in the grid."),
    Page("learning", "Learning curves",
         "Every run's held-out accuracy against examples seen, and each cell's class: learned, flat "
         "(capacity-limited), still rising (budget-bound) or stuck on the answer-prior plateau. Only "
         "learned and flat cells are results about an architecture. Peer runs (another project's trainer "
         "on the same data) sit beside archbench's."),
    Page("grid", "The grid's cost",
         "For each grid: its parts, the cells stored, the time they took (each row's own wall time), the "
         "machine's load then, and an estimate for the cells left."),
    Page("provenance", "Provenance",
         "Where and with what every stored row was measured: device, commits, package versions, threads "
         "and the machine's load."),
    Page("more", "More results", "Tables and figures of kinds the pages above do not place."),
)
# (pattern over a file's stem, page): the first match wins
RULES = (
    (r"_grid$", "grid"),  # a grid's cost, whichever grid (frontier_<device>_grid too)
    (r"^frontier_", "index"),
    (r"^scaling_.*_(time_decode|decode_bound|decode_latency|decode_memory)$", "decode"),
    (r"^generation_", "decode"),
    (r"^scaling_.*_state$", "state"),
    (r"^retrieval_.*_acc_vs_state$", "state"),
    (r"^scaling_", "scaling"),
    (r"^(pytest_benchmark|train_speed_|op_speed$|peer_speed$)", "scaling"),
    (r"_hybrid$", "hybrids"),
    (r"(_learning|_curves)$", "learning"),
    (r"^peer_", "learning"),
    (r"^retrieval_", "recall"),
)
FALLBACK = "more"


def page_of(name: str) -> str:
    """The slug of the page that shows the report file `name` ("x.md", "x.png")."""
    stem = name.rsplit(".", 1)[0]
    return next((slug for pattern, slug in RULES if re.search(pattern, stem)), FALLBACK)
