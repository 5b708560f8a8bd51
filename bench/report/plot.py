"""PNG plots for the report: one subplot per panel, deterministic bytes (default style, no Software
stamp, fixed margins), rendered without pyplot so no global figure state is touched.

Glossary
  Series  one plotted line: (label, xs, ys, matplotlib style); two style keys are the report's own:
          "yerr" (error bars: one value or a (below, above) pair per point) and "annotate" (a text per
          point, written beside it). A label starting with "_" stays out of the legend
  panel   (title, [Series]): one subplot
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Series = tuple[str, Sequence[float], Sequence[float], dict]  # (label, xs, ys, matplotlib style)


@dataclass(frozen=True)
class Drawn:
    """What one `plot` call drew: the results site redraws it as an interactive chart from this, so a
    figure has one definition (its report module's) whichever way it is shown."""

    panels: list[tuple[str, list[Series]]]
    xlabel: str
    ylabel: str
    xscale: str
    yscale: str
    ylim: tuple[float, float] | None


class PlotPng(bytes):
    """PNG bytes that carry the `Drawn` they were rendered from (`.drawn`); written to a file, just bytes."""

    drawn: Drawn


def plot(panels: list[tuple[str, list[Series]]], xlabel: str, ylabel: str, xscale: str = "log",
         yscale: str = "log", ylim: tuple[float, float] | None = None) -> PlotPng:
    """PNG bytes of one subplot per panel. Deterministic: default style, no Software stamp."""
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg used for PNG

    with mpl.style.context("default"), mpl.rc_context({"svg.hashsalt": "archbench"}):
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig = Figure(figsize=(5.2 * ncols, 3.8 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()  # squeeze=False: always a 2-D array
        for ax, (title, series) in zip(axes, panels, strict=False):
            for label, xs, ys, style in series:
                style = dict(style)
                yerr, notes = style.pop("yerr", None), style.pop("annotate", None)
                if yerr is None:
                    ax.plot(xs, ys, label=label, **style)
                else:
                    ax.errorbar(xs, ys, yerr=yerr, label=label, capsize=2, **style)
                for x, y, text in zip(xs, ys, notes or (), strict=False):
                    ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
            # a log axis with no positive finite value to place raises in matplotlib: such a panel (every
            # time of a mode unusable, say) is drawn on a linear axis, empty, rather than stop the report
            if xscale == "linear" or _loggable(x for _, xs, _, _ in series for x in xs):
                ax.set_xscale("log", base=2) if xscale == "log2" else ax.set_xscale(xscale)
            if yscale == "linear" or _loggable(y for _, _, ys, _ in series for y in ys):
                ax.set_yscale(yscale)
            if ylim is not None:
                ax.set_ylim(*ylim)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            if any(not label.startswith("_") for label, *_ in series):
                ax.legend(fontsize=7, loc="best")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        # Fixed margins rather than tight_layout: one draw fewer per figure, same bytes every run.
        fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.98, bottom=0.55 / fig.get_figheight(),
                            top=1 - 0.35 / fig.get_figheight(), wspace=0.3, hspace=0.45)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    png = PlotPng(buf.getvalue())
    png.drawn = Drawn(panels, xlabel, ylabel, xscale, yscale, ylim)
    return png


def _loggable(values: Iterable[object]) -> bool:
    """Whether a log axis has anything to place: some positive finite number among `values`."""
    for v in values:
        try:
            if math.isfinite(float(v)) and float(v) > 0:
                return True
        except (TypeError, ValueError):
            continue
    return False


def styles(labels: Iterable[str]) -> dict[str, dict]:
    """A colour and marker per label, stable for a given set of labels."""
    colors = [f"C{i}" for i in range(10)]
    return {lab: {"color": colors[i % 10], "marker": "os^Dv<>ph*"[i // 10 % 10]}
            for i, lab in enumerate(sorted(set(labels)))}
