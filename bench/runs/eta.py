"""How long a run has left, estimated from the wall times of the cells it has finished.

The parts of a grid differ in cost by orders of magnitude (a scaling cell takes seconds, a training run
minutes), while the cells of one part cost alike, so each part's cells still to run are priced at the
mean wall time of that part's finished cells; a part with none finished yet at the mean of the cells of
that part already stored (`stored`: a resumed grid's earlier runs, so a part of seconds-long cost cells
is not priced at a training run's minutes), else at the mean over all finished cells. The sum is
divided by how many cells run at once, measured rather than assumed: the finished cells' wall time
over the time from the first start to the last finish (a little under 1 with the local executor, for
the loop's own work between cells; about the number of workers on Ray), never more than the most
cells seen in flight together.

    eta = Eta(["a", "a", "b"])          # one entry per cell expected to run, by part
    eta.start("a"); eta.finish("a", 2.0)
    eta.remaining_s()                   # 2 s for the other "a", 2 s for "b" (no "b" finished yet)
    eta.text()                          # "~4 s left"

Cells that turn out not to run (skipped after a shorter length failed) are taken off with `drop`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Hashable, Iterable

from rich.progress import ProgressColumn, Task
from rich.text import Text


class Eta:
    """Remaining time of a run, per part, from the cells finished so far."""

    def __init__(self, parts: Iterable[Hashable], clock=time.monotonic,
                 stored: dict[Hashable, list[float]] | None = None) -> None:
        self.left: Counter = Counter(parts)  # part -> cells expected to run, not finished yet
        self.walls: dict[Hashable, list[float]] = {}  # part -> wall seconds of its finished cells
        self.stored = {p: w for p, w in (stored or {}).items() if w}  # part -> walls of earlier runs' cells
        self.running: list[tuple[Hashable, float]] = []  # (part, start) of the cells in flight
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.most_at_once = 0
        self.clock = clock

    def drop(self, part: Hashable) -> None:
        """A cell expected to run that will not (skipped): it costs nothing."""
        self.left[part] = max(0, self.left[part] - 1)

    def start(self, part: Hashable) -> None:
        now = self.clock()
        self.first_start = now if self.first_start is None else self.first_start
        self.running.append((part, now))
        self.most_at_once = max(self.most_at_once, len(self.running))

    def finish(self, part: Hashable, wall_s: float) -> None:
        self.left[part] = max(0, self.left[part] - 1)
        self.walls.setdefault(part, []).append(max(0.0, float(wall_s)))
        started = next((i for i, (p, _) in enumerate(self.running) if p == part), None)
        if started is not None:
            del self.running[started]
        self.last_finish = self.clock()

    def _price(self, part: Hashable, overall: float) -> float:
        walls = self.walls.get(part) or self.stored.get(part)
        return sum(walls) / len(walls) if walls else overall

    def remaining_s(self) -> float | None:
        """Seconds left, or None before any cell has finished (nothing to price the rest by)."""
        done = [w for walls in self.walls.values() for w in walls]
        if not done or self.first_start is None or self.last_finish is None:
            return None
        overall = sum(done) / len(done)
        work = sum(n * self._price(part, overall) for part, n in self.left.items())
        now = self.clock()
        # The cells in flight are part-way through: count off the time they have run (at most their price).
        work -= sum(min(now - t0, self._price(part, overall)) for part, t0 in self.running)
        span = self.last_finish - self.first_start
        at_once = min(sum(done) / span if span > 0 else math.inf, max(1, self.most_at_once))
        return max(0.0, work / max(at_once, 1e-3))

    def text(self) -> str:
        """'~12 min left'; before a cell has finished, when the estimate will come; '' at the end."""
        if not sum(self.left.values()):
            return ""
        left = self.remaining_s()
        return "ETA after the first cell" if left is None else f"~{duration(left)} left"


def duration(seconds: float) -> str:
    """'40 s', '12 min', '1 h 05 min': as precise as an estimate deserves."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


class EtaColumn(ProgressColumn):
    """The run's remaining time on the progress bar, recomputed at each refresh (so it counts down
    while a long cell runs)."""

    def __init__(self, eta: Eta) -> None:
        super().__init__()
        self.eta = eta

    def render(self, task: Task) -> Text:
        return Text(self.eta.text(), style="progress.remaining")
