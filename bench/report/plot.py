"""PNG plots for the report: one subplot per panel, the legend outside them, units on the ticks,
deterministic bytes (default style, no Software stamp, a layout computed the same way every run),
rendered without pyplot so no global figure state is touched. Every figure is checked by
`readable.assert_figure_readable` before it is written.

    png = plot([Panel("prefill", series)], Axis("n", unit="n", scale="log2"), Axis("median time", unit="s"))

Glossary
  Series  one plotted line: (label, xs, ys, matplotlib style). The report's own style keys: "yerr"
          (error bars: one value or a (below, above) pair per point), "annotate" (a text per point,
          "" for none, written beside it and moved until no two collide) and "hollow" (True: markers
          drawn hollow — a cell that did not learn; the legend then says what hollow means). A label
          starting with "_" stays out of the legend; a label in several panels has one entry.
  Panel   one subplot: a title, its series, its own y Axis if it differs from the figure's, and the
          chance level of an accuracy panel (a dotted line).
  Axis    a label, a unit the tick labels carry ("10 ms", "4 KiB", "16k": UNITS), a scale, limits.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from archbench.bench.report.readable import assert_figure_readable

Series = tuple[str, Sequence[float], Sequence[float], dict]  # (label, xs, ys, matplotlib style)

__all__ = ["ACCURACY", "Axis", "Drawn", "DrawnPanel", "Panel", "PlotPng", "Series", "figure", "finite",
           "plot", "tick_text"]

# "s" seconds and "J" joules with SI prefixes, "B" bytes with binary ones, "n" a count of tokens or
# sequences (powers of two: 4096 is "4k"), "" a plain number.
UNITS = ("s", "J", "B", "n", "")
PANEL_W, PANEL_H = 4.6, 3.5  # inches per subplot, its labels included
DPI = 110
LEGEND_ROWS = 32  # entries per legend column before the legend takes another column
CHANCE_STYLE = {"color": "0.45", "linestyle": ":", "linewidth": 1.2}
CHANCE_LABEL = "chance (always the most frequent answer)"
HOLLOW_LABEL = "hollow: did not learn at its lr and budget"


@dataclass(frozen=True)
class Axis:
    label: str  # what is measured; the unit is on the ticks
    unit: str = ""
    scale: str = "log"  # "log" (base 2 for "B" and "n", else 10) or "linear"
    lim: tuple[float, float] | None = None


@dataclass
class Panel:
    title: str
    series: list[Series]
    y: Axis | None = None  # this panel's own y axis; None: the figure's
    x: Axis | None = None  # this panel's own x axis; None: the figure's
    chance: float | None = None  # an accuracy panel's chance level, drawn dotted


ACCURACY = Axis("accuracy", scale="linear", lim=(-0.02, 1.02))


# -- ticks ---------------------------------------------------------------------------------------
def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"  # 12,000 rather than 1.2e+04


def _prefixed(v: float, steps: Sequence[tuple[float, str]]) -> str:
    scale, prefix = next(((s, p) for s, p in steps if abs(v) >= s * (1 - 1e-9)), steps[-1])
    return f"{_number(v / scale)} {prefix}"


def tick_text(v: float, unit: str) -> str:
    """One tick label: 0.004 s -> '4 ms', 16384 B -> '16 KiB', 4096 tokens -> '4k', 12000 -> '12,000'."""
    if v == 0:
        return "0"
    if unit == "s":
        return _prefixed(v, ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))) + unit
    if unit == "J":
        return _prefixed(v, ((1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))) + unit
    if unit == "B":
        return _prefixed(v, ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")))
    if unit == "n":
        for size, suffix in ((2**20, "M"), (2**10, "k")):
            if abs(v) >= size and float(v / size).is_integer():
                return f"{v / size:g}{suffix}"
    return _number(v)


def _log_ticks(lo: float, hi: float, base: int) -> list[float]:
    """Major ticks inside [lo, hi]: powers of the base (every k-th if there are too many); on a base-10
    axis with fewer than three, 1-3 or 1-2-5 steps, and every other digit where even those leave one."""
    first, last = math.floor(math.log(lo, base)) - 1, math.ceil(math.log(hi, base)) + 1

    def within(subs: tuple[int, ...]) -> list[float]:
        return [m * float(base) ** e for e in range(first, last + 1) for m in subs
                if lo * (1 - 1e-9) <= m * float(base) ** e <= hi * (1 + 1e-9)]

    ticks = within((1,))
    most = 6 if base == 2 else 7  # base-2 labels ("256 KiB") are the wider ones
    if len(ticks) > most:  # keep every k-th, on multiples of k where that leaves two
        k = math.ceil(len(ticks) / most)
        exps = [round(math.log(t, base)) for t in ticks]
        aligned = [t for t, e in zip(ticks, exps, strict=True) if e % k == 0]
        return aligned if len(aligned) >= 2 else ticks[::k]
    if base == 2 or len(ticks) >= 3:
        return ticks
    options = [within(subs) for subs in ((1, 3), (1, 2, 5))]
    best = next((t for t in options if len(t) >= 3), next((t for t in options if len(t) >= 2), None))
    return best if best is not None else within(tuple(range(1, 10)))[::2]


def _set_axis(ax, which: str, spec: Axis, values: Iterable[object]) -> None:
    """Scale, limits, ticks and tick labels of one axis. A log axis with nothing positive to place (every
    time of a mode unusable, say) is drawn linear and empty rather than stop the report."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    log = spec.scale == "log" and _loggable(values)
    base = 2 if spec.unit in ("B", "n") else 10
    if log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    ax.autoscale_view()
    if spec.lim is not None:
        (ax.set_xlim if which == "x" else ax.set_ylim)(*spec.lim)
    fmt = FuncFormatter(lambda v, _pos: tick_text(v, spec.unit))
    if log:
        lo, hi = sorted(axis.get_view_interval())
        ticks = _log_ticks(lo, hi, base)
        if len(ticks) < 2:  # less than one step of the base in view: evenly spaced values instead
            ticks = [t for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(NullFormatter())


def _loggable(values: Iterable[object]) -> bool:
    """Whether a log axis has anything to place: some positive finite number among `values`."""
    for v in values:
        try:
            if math.isfinite(float(v)) and float(v) > 0:
                return True
        except (TypeError, ValueError):
            continue
    return False


# -- figure --------------------------------------------------------------------------------------
def _draw_series(ax, series: list[Series], legend: dict) -> bool:
    """Plot `series` on `ax`; the first handle of each legend label goes into `legend`. Returns whether
    any series was hollow."""
    from matplotlib.lines import Line2D

    hollow_seen = False
    for label, xs, ys, style in series:
        style = dict(style)
        yerr, notes = style.pop("yerr", None), style.pop("annotate", None)
        filled = None
        if style.pop("hollow", False):
            filled = Line2D([], [], **style)  # the legend shows the family, filled; HOLLOW_LABEL the rest
            style["markerfacecolor"] = "white"
            hollow_seen = True
        if yerr is None:
            handle = ax.plot(xs, ys, **style)[0]
        else:
            handle = ax.errorbar(xs, ys, yerr=yerr, capsize=2, **style)
        if not label.startswith("_"):
            legend.setdefault(label, filled or handle)
        for x, y, text in zip(xs, ys, notes or (), strict=False):
            if text:
                note = ax.annotate(text, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6.5)
                note.set_in_layout(False)  # placed after the layout, inside its panel (_place_notes)
    return hollow_seen


NOTE_OFFSETS = ((4, 3, "left"), (4, -10, "left"), (-4, 3, "right"), (-4, -10, "right"), (4, 12, "left"),
                (-4, 12, "right"), (4, -19, "left"), (-4, -19, "right"), (4, 21, "left"), (-4, 21, "right"))


def _place_notes(fig, axes) -> None:
    """Move each point's note to the first offset where it stays inside its panel's plot area and off the
    notes already placed there (in series order: deterministic). A note with no such offset is left out:
    notes name points a table beside the figure lists too, and a pile of overlapping names reads as none."""
    from archbench.bench.report.readable import inside, overlap

    renderer = fig.canvas.get_renderer()
    for ax in axes:
        placed = []
        for note in ax.texts:
            for dx, dy, ha in NOTE_OFFSETS:
                note.xyann = (dx, dy)
                note.set_horizontalalignment(ha)
                box = note.get_window_extent(renderer)
                if inside(box, ax.bbox) and not any(overlap(box, b) for b in placed):
                    placed.append(box)
                    break
            else:
                note.set_visible(False)


def _legend_order(legend: dict) -> list[tuple[str, object]]:
    """Entries with a marker (the models) sorted by name, then the lines and notes without one (a front,
    a bound, chance, what hollow means) in the order they came."""
    def marked(handle) -> bool:
        line = handle.lines[0] if hasattr(handle, "lines") else handle  # an errorbar container
        return line.get_marker() not in (None, "None", "none", "", " ")

    models = sorted(((k, h) for k, h in legend.items() if marked(h)), key=lambda kh: kh[0].lower())
    return models + [(k, h) for k, h in legend.items() if not marked(h)]


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) if len(text) > width else text


def figure(panels: Sequence[Panel | tuple[str, list[Series]]], x: Axis, y: Axis, title: str = "",
           hollow_label: str = HOLLOW_LABEL):
    """The laid-out, checked Figure of one subplot per panel (up to three a row), the legend to the
    right of them all, `title` above; `hollow_label` says what a hollow marker means. Raises
    readable.UnreadableFigure if anything collides."""
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global figure state
    from matplotlib.lines import Line2D

    panels = [p if isinstance(p, Panel) else Panel(*p) for p in panels]
    with mpl.style.context("default"), mpl.rc_context({"svg.hashsalt": "archbench"}):
        ncols = max(1, min(3, len(panels)))
        nrows = max(1, math.ceil(len(panels) / ncols))
        fig = Figure(figsize=(ncols * PANEL_W, nrows * PANEL_H), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # measured before it is saved: the legend's size sets the figure's
        fig.get_layout_engine().set(w_pad=0.06, h_pad=0.06, wspace=0.04, hspace=0.04)
        axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
        legend: dict[str, object] = {}
        hollow = chance = False
        for ax, panel in zip(axes, panels, strict=False):
            hollow |= _draw_series(ax, panel.series, legend)
            if panel.chance is not None and math.isfinite(panel.chance):
                ax.axhline(panel.chance, zorder=0.5, **CHANCE_STYLE)
                chance = True
            xspec, yspec = panel.x or x, panel.y or y
            _set_axis(ax, "x", xspec, (v for _, xs, _, _ in panel.series for v in xs))
            _set_axis(ax, "y", yspec, (v for _, _, ys, _ in panel.series for v in ys))
            ax.set_title(_wrap(panel.title, int(PANEL_W * 72 / (9 * 0.55))), fontsize=9)
            ax.set_xlabel(xspec.label, fontsize=9)
            ax.set_ylabel(yspec.label, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(True, which="major", alpha=0.3)
        for ax in axes[len(panels):]:
            ax.remove()
        axes = axes[:len(panels)]
        entries = _legend_order(legend)
        if chance:
            entries.append((CHANCE_LABEL, Line2D([], [], **CHANCE_STYLE)))
        if hollow:
            entries.append((hollow_label, Line2D([], [], linestyle="none", marker="o", color="0.3",
                                                 markerfacecolor="white")))
        width, height = ncols * PANEL_W, nrows * PANEL_H
        if entries:
            labels = [_wrap(label, 44) for label, _ in entries]
            ncol = math.ceil(len(labels) / max(LEGEND_ROWS, int(height / 0.19)))
            leg = fig.legend([h for _, h in entries], labels, loc="outside right upper", fontsize=7,
                             frameon=False, ncols=ncol)
            box = leg.get_window_extent(fig.canvas.get_renderer())  # its own size: no layout needed
            width += box.width / DPI + 0.1
            height = max(height, box.height / DPI + 0.3)
        if title:  # above the panels, left-aligned: the legend's column to its right stays clear
            lines = _wrap(title, int(ncols * PANEL_W * 72 / (10 * 0.6)))
            fig.suptitle(lines, fontsize=10, x=0.01, ha="left")
            height += 0.2 * (lines.count("\n") + 1)
        fig.set_size_inches(width, height)
        if any(ax.texts for ax in axes):
            fig.draw_without_rendering()  # the layout, before notes are placed inside the panels
            _place_notes(fig, axes)
        assert_figure_readable(fig)
        fig.set_layout_engine("none")  # laid out and checked: saving must not move anything again
    return fig


def plot(panels: Sequence[Panel | tuple[str, list[Series]]], x: Axis, y: Axis, title: str = "",
         hollow_label: str = HOLLOW_LABEL) -> PlotPng:
    """PNG bytes of `figure(...)`, carrying what they drew (`.drawn`). Deterministic: default style, no
    Software stamp."""
    import matplotlib as mpl
    import matplotlib.style

    panels = [p if isinstance(p, Panel) else Panel(*p) for p in panels]
    fig = figure(panels, x, y, title, hollow_label)
    buf = io.BytesIO()
    with mpl.style.context("default"):
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    png = PlotPng(buf.getvalue())
    png.drawn = Drawn([_drawn_panel(p, p.x or x, p.y or y) for p in panels])
    return png


# -- what a plot drew, for the results site -------------------------------------------------------
@dataclass(frozen=True)
class DrawnPanel:
    """One subplot as data: its series (the chance level among them, as a dotted line across the
    panel's x range) and its axes, each scale "linear", "log" (base 10) or "log2"."""

    title: str
    series: list[Series]
    xlabel: str
    ylabel: str
    xscale: str
    yscale: str
    ylim: tuple[float, float] | None


@dataclass(frozen=True)
class Drawn:
    """What one `plot` call drew: the results site redraws it as an interactive chart from this, so a
    figure has one definition (its report module's) whichever way it is shown."""

    panels: list[DrawnPanel]


class PlotPng(bytes):
    """PNG bytes that carry the `Drawn` they were rendered from (`.drawn`); written to a file, just bytes."""

    drawn: Drawn


def _drawn_panel(panel: Panel, x: Axis, y: Axis) -> DrawnPanel:
    series = list(panel.series)
    xs = [f for _, vs, _, _ in series for v in vs if (f := finite(v)) is not None]
    if panel.chance is not None and math.isfinite(panel.chance) and xs:
        series.append((CHANCE_LABEL, [min(xs), max(xs)], [panel.chance] * 2, dict(CHANCE_STYLE)))
    return DrawnPanel(panel.title, series, _titled(x), _titled(y), _scale_name(x), _scale_name(y), y.lim)


def _titled(axis: Axis) -> str:
    """An axis title for a chart whose ticks carry no unit: 'median time (s)'."""
    return f"{axis.label} ({axis.unit})" if axis.unit in ("s", "J", "B") else axis.label


def _scale_name(axis: Axis) -> str:
    return "linear" if axis.scale == "linear" else "log2" if axis.unit in ("B", "n") else "log"


def finite(v: object) -> float | None:
    """`v` as a float when it is a finite number, else None (a plotted value may be NaN, None or text)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
