"""Experiment kinds, registered like mixers and tasks: one file each (see base.py for the contract).

    scaling     time, memory, energy and utilisation of a model's Backbone at one n, in one mode
    retrieval   a small LM trained on a synthetic task, scored on held-out rows (train.py is its loop)
    generation  an LM serving a batch: prefill P tokens, generate G; TTFT, tokens/s, memory vs a budget

decode.py is no kind: the per-token step as served (eager, compiled, CUDA graph) that scaling's
decode mode and generation share. A later kind is one more file here that declares
its Spec, Result, `run` and summary columns, and registers; plugins use the entry point group
`archbench.experiments`. The run loop, the row schema and the report reach every kind through
`get(kind)`.
"""

from __future__ import annotations

from archbench.archs.registry import Registry, UnknownNameError
from archbench.bench.experiments.base import Experiment, Progress

BUILTINS = ("scaling", "retrieval", "generation")
EXPERIMENTS = Registry("experiment kind", "archbench.experiments",
                       (f"archbench.bench.experiments.{m}" for m in BUILTINS))
register = EXPERIMENTS.register


def get(kind: str) -> type[Experiment]:
    return EXPERIMENTS.get(kind)


def list_experiments() -> list[str]:
    return EXPERIMENTS.names()


__all__ = ["EXPERIMENTS", "Experiment", "Progress", "UnknownNameError", "get", "list_experiments", "register"]
