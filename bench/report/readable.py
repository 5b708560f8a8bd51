"""Whether a figure reads: no legend over data, no text off the canvas, no two labels on top of each other.

Checked from matplotlib's own extents (`get_window_extent` with the figure's renderer), so what is
checked is what is drawn. `plot.figure` calls `assert_figure_readable` on every figure before it is
saved: an unreadable figure stops the report, naming what collides, instead of being committed.

    fig = plot.figure(panels, x, y)          # laid out and already checked
    figure_problems(fig) == []               # the same check, as a list of sentences

What counts as a problem:
  - a legend whose box overlaps any plot area (an axes' data rectangle);
  - a visible text (titles, axis and tick labels, legend entries, point notes) not wholly on the canvas;
  - two adjacent tick labels of one axis that overlap ("3×10⁴×10²");
  - a text of one panel (title, axis or tick label, note) overlapping a text of another panel, of the
    figure title or of a legend; two notes of one panel overlapping.
"""

from __future__ import annotations

import itertools

from matplotlib.axis import Axis, Tick
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

SLACK = 0.5  # pixels: antialiasing rounds an edge, never a collision


class UnreadableFigure(AssertionError):
    """A figure that fails `figure_problems`: its message lists what collides or is cut off."""


def overlap(a: Bbox, b: Bbox) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK) and (min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK)


def inside(inner: Bbox, outer: Bbox) -> bool:
    return (inner.x0 >= outer.x0 - SLACK and inner.y0 >= outer.y0 - SLACK and inner.x1 <= outer.x1 + SLACK
            and inner.y1 <= outer.y1 + SLACK)


def _shown(t: Text) -> bool:
    return t.get_visible() and bool(t.get_text().strip())


def _drawn_tick_labels(axis: Axis) -> list[Text]:
    """The tick labels matplotlib draws: ticks inside the view interval (the axis keeps a pool of ticks,
    some of them outside it and never drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * (hi - lo) if hi > lo else 1e-12
    out = []
    for ticks, locs in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                        (axis.get_minor_ticks(), axis.get_minorticklocs())):
        for tick, loc in zip(ticks, locs, strict=False):
            if tick.get_visible() and lo - eps <= loc <= hi + eps:
                out += [t for t in (tick.label1, tick.label2) if _shown(t)]
    return out


def _name(ax) -> str:
    return repr(ax.get_title()) if ax.get_title() else f"panel {ax.get_subplotspec().num1 + 1}"


def figure_problems(fig: Figure) -> list[str]:
    """What makes `fig` hard to read, one sentence each; empty when nothing does."""
    if not hasattr(fig.canvas, "get_renderer"):  # a Figure made without pyplot has no drawing canvas yet
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    canvas = fig.bbox
    axes = [ax for ax in fig.axes if ax.get_visible()]
    legends = [*fig.legends, *(ax.get_legend() for ax in axes if ax.get_legend() is not None)]
    problems: list[str] = []

    for leg in legends:
        box = leg.get_window_extent(r)
        problems += [f"the legend covers the plot area of {_name(ax)}"
                     for ax in axes if overlap(box, ax.bbox)]
        if not inside(box, canvas):
            problems.append("the legend runs off the canvas")

    pool = {t for tick in fig.findobj(Tick) for t in (tick.label1, tick.label2)}
    owned: list[tuple[object, str, Text]] = []  # (owner, kind, text): who a text belongs to
    for ax in axes:
        for axis, which in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            labels = _drawn_tick_labels(axis)
            owned += [(ax, "frame", t) for t in labels]
            boxes = sorted(((t.get_window_extent(r), t.get_text()) for t in labels),
                           key=lambda bt: bt[0].x0 if which == "x" else bt[0].y0)
            for (a, ta), (b, tb) in itertools.pairwise(boxes):
                if overlap(a, b):
                    problems.append(f"tick labels {ta!r} and {tb!r} of the {which} axis of {_name(ax)} "
                                    "overlap")
    owner_of: dict[Text, tuple[object, str]] = {}
    for ax in axes:
        owner_of.update({t: (ax, "note" if isinstance(t, Annotation) else "frame") for t in ax.findobj(Text)})
    for leg in legends:  # after the axes: a legend drawn inside an axes is still a legend
        owner_of.update({t: (leg, "legend") for t in leg.findobj(Text)})
    for t in fig.findobj(Text):
        if t not in pool and _shown(t):
            owner, kind = owner_of.get(t, (fig, "figure"))
            owned.append((owner, kind, t))

    boxes = [(owner, kind, t, t.get_window_extent(r)) for owner, kind, t in owned]
    for _, _, t, box in boxes:
        if not inside(box, canvas):
            problems.append(f"the text {t.get_text()!r} falls outside the canvas")
    for (o1, k1, t1, b1), (o2, k2, t2, b2) in itertools.combinations(boxes, 2):
        apart = o1 is not o2 or (k1 == k2 == "note")
        if apart and not (k1 == k2 == "legend" and o1 is o2) and overlap(b1, b2):
            problems.append(f"the texts {t1.get_text()!r} and {t2.get_text()!r} overlap")
    return list(dict.fromkeys(problems))


def assert_figure_readable(fig: Figure) -> None:
    """Raise UnreadableFigure naming every problem `figure_problems` finds."""
    problems = figure_problems(fig)
    if problems:
        suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""  # get_suptitle: mpl >= 3.8
        title = suptitle or next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
        raise UnreadableFigure(f"figure {title!r} does not read: " + "; ".join(problems))
