"""Learning curves read as evidence: did a retrieval cell learn, is it still rising, or did it sit on the
answer-prior plateau? And how many examples it took to reach 0.5 and 0.9.

A task's *answer prior* is the distribution of the tokens it asks for, over every scored position. A
model that has learned only that prior predicts its most frequent answer (accuracy = `chance`) and
has loss = the prior's entropy (`prior_loss`; MQAR: ln(V/2), the values being V/2 tokens drawn
uniformly). Both are measured from the task's own generator, so every task gets them.

Each run's curve (held-out-subset accuracy and training loss at every evaluation) gets one class:

    learned   final accuracy >= LEARNED, or stopped early at its target
    plateau   stuck on the answer-prior plateau: final loss within PLATEAU_NATS of prior_loss and final
              accuracy <= max(PLATEAU_CHANCE x chance, chance + PLATEAU_ABOVE)
    rising    still rising (budget-bound): accuracy gained >= RISE over the last quarter of the
              examples seen, or the loss fell by >= RISE_NATS there
    flat      above the plateau and flat over the last quarter: capacity-limited at this budget
    no curve  a row stored before curves were kept, below LEARNED: nothing says which

Only `learned` and `flat` are results about the architecture; a `plateau` or `rising` cell says "did
not learn at this lr and budget". Thresholds are module constants, stated in docs/methods.md.

Glossary: chance = accuracy of always answering the most frequent answer; prior_loss in nats.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np

LEARNED = 0.9
PLATEAU_NATS = 0.25
PLATEAU_CHANCE = 5.0
PLATEAU_ABOVE = 0.02
RISE = 0.02
RISE_NATS = 0.1
LAST = 0.25  # the last quarter of the examples seen
RESULT_CLASSES = ("learned", "flat")  # the classes that say something about the architecture
CLASSES = ("learned", "flat", "rising", "plateau", "no curve")
MARK = {"learned": "", "flat": " ▭", "rising": " ↗", "plateau": " ⊘", "no curve": " ?", "mixed": " ±"}
MARK_NOTE = ("marks: ▭ flat above chance (capacity-limited at this budget), ↗ still rising (budget-bound), "
             "⊘ stuck on the answer-prior plateau, ± seeds of different classes, ? no learning curve stored; "
             "unmarked: learned (>= 0.9). Only unmarked and ▭ cells are results about the architecture.")
PRIOR_ROWS = 4000  # rows drawn to measure a task's answer prior


@functools.lru_cache(maxsize=256)
def _prior(task: str, task_cfg_json: str) -> tuple[float, float]:
    from archbench.tasks import create
    from archbench.tasks.base import IGNORE

    _, targets = create(task, **json.loads(task_cfg_json)).make(PRIOR_ROWS, np.random.default_rng(0))
    answers = targets[targets != IGNORE]
    if answers.size == 0:
        return math.nan, math.nan
    p = np.unique(answers, return_counts=True)[1] / answers.size
    return float(p.max()), float(-(p * np.log(p)).sum())


def answer_prior(task: str, task_cfg: dict[str, Any]) -> tuple[float, float]:
    """(chance, prior_loss) of a task config, measured from its generator (seed 0)."""
    return _prior(task, json.dumps(task_cfg, sort_keys=True))


def _at_or_before(examples: list[int], values: list, x: float):
    """The value at the last evaluation at or before x examples (the first one if none is)."""
    i = max([j for j, e in enumerate(examples) if e <= x], default=0)
    return values[i]


def classify(curve: dict[str, list] | None, accuracy: float | None, stopped_early: bool,
             chance: float, prior_loss: float) -> str:
    """The class of one run (see the module docstring)."""
    final = accuracy if accuracy is not None else math.nan
    if stopped_early or final >= LEARNED:
        return "learned"
    ex = list((curve or {}).get("examples") or [])
    acc = list((curve or {}).get("accuracy") or [])
    loss = list((curve or {}).get("loss") or [])
    if len(ex) < 2:
        return "no curve"
    last_loss = next((v for v in reversed(loss) if v is not None), math.nan)
    near_prior = not last_loss < prior_loss - PLATEAU_NATS  # nan (diverged) counts as on it
    if near_prior and acc[-1] <= max(PLATEAU_CHANCE * chance, chance + PLATEAU_ABOVE):
        return "plateau"
    start = (1 - LAST) * ex[-1]
    gain = acc[-1] - _at_or_before(ex, acc, start)
    then = _at_or_before(ex, loss, start)
    fell = (then - last_loss) if then is not None and math.isfinite(last_loss) else 0.0
    if gain >= RISE or fell >= RISE_NATS:
        return "rising"
    return "flat"


def examples_to(curve: dict[str, list] | None, threshold: float) -> int | None:
    """Examples seen at the first evaluation whose held-out-subset accuracy reached `threshold`."""
    for e, a in zip((curve or {}).get("examples") or [], (curve or {}).get("accuracy") or [], strict=False):
        if a is not None and a >= threshold:
            return int(e)
    return None


def combine(classes: list[str]) -> str:
    """One class for a cell's seeds: theirs when they agree, else "mixed"."""
    distinct = set(classes)
    return distinct.pop() if len(distinct) == 1 else "mixed"
