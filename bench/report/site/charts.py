"""A report figure as a Vega-Lite chart, for the results site: the same panels, series and styles the
PNG was drawn from (plot.Drawn), with the values under the pointer (tooltips), zoom and pan.

One chart per figure: a panel per subplot (up to three a row, as the PNG), one legend for the figure
beside the panels, never over the data. A series keeps its matplotlib colour, marker, line style and
hollow markers; a label starting with "_" draws without a legend entry, as in matplotlib. Values a log
axis cannot place (zero, negative, not finite) are left out, as matplotlib leaves them out.

    spec = chart(drawn)     # a Vega-Lite spec (a dict of plain JSON values), data inline

Glossary
  key   a series' identity in the chart: its label, or a numbered key for a legend-less series (one
        "_not learned" label can stand for several families, each in its own colour)
"""

from __future__ import annotations

from typing import Any

from archbench.bench.report.plot import Drawn, DrawnPanel, Series, finite

# matplotlib's default cycle ("C0".."C9", tab10), written out: a user's matplotlibrc must not change it
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf")
SHAPES = {"o": "circle", "s": "square", "^": "triangle-up", "D": "diamond", "d": "diamond",
          "v": "triangle-down", "<": "triangle-left", ">": "triangle-right", "p": "cross", "h": "wedge",
          "*": "arrow", "x": "cross", "+": "cross", ".": "circle", "X": "cross", "P": "cross", "8": "circle",
          "H": "wedge"}
DASHES = {"-": [1, 0], "solid": [1, 0], "--": [6, 3], "dashed": [6, 3], ":": [2, 2], "dotted": [2, 2],
          "-.": [6, 3, 2, 3], "dashdot": [6, 3, 2, 3]}
NO_LINE = {"none", "None", "", " "}
PANEL_W, PANEL_H = 300, 210  # a panel among several; a figure of one panel gets more room
ONE_W, ONE_H = 560, 320
NUMBER = ".4~g"  # tooltip values: four significant figures, no trailing zeros


def colour(c: Any) -> str:
    """A matplotlib colour spec as CSS."""
    if c is None:
        return TAB10[0]
    s = str(c)
    if len(s) == 2 and s[0] == "C" and s[1].isdigit():
        return TAB10[int(s[1])]
    if s.startswith("#"):
        return s
    from matplotlib.colors import to_hex  # named colours ("black", "grey"): fixed by CSS, not by rc

    return to_hex(s)


def _errors(yerr: Any, n: int) -> tuple[list[float | None], list[float | None]]:
    """(below, above) per point from matplotlib's yerr: one value per point, or a (below, above) pair."""
    if yerr is None:
        return [None] * n, [None] * n
    if len(yerr) == 2 and all(isinstance(e, list | tuple) for e in yerr):
        return [finite(v) for v in yerr[0]], [finite(v) for v in yerr[1]]
    return [finite(v) for v in yerr], [finite(v) for v in yerr]


def _axis(scale: str) -> dict[str, Any]:
    # the data's own range plus a few pixels, as matplotlib's margins: a "nice" log domain would round
    # 4096..16384 out to 1000..100000 and squeeze the points into the middle
    if scale == "log2":
        return {"type": "log", "base": 2, "nice": False, "padding": 10}
    if scale == "log":
        return {"type": "log", "nice": False, "padding": 10}
    return {"zero": False, "nice": False, "padding": 10}


def _placeable(v: float | None, scale: str) -> bool:
    return v is not None and (scale == "linear" or v > 0)


class _Keys:
    """Series keys with their look, shared by every panel of a figure (one legend)."""

    def __init__(self) -> None:
        self.style: dict[str, dict[str, Any]] = {}
        self.legend: list[str] = []

    def add(self, label: str, style: dict) -> str:
        hidden = label.startswith("_")
        key = f"{label[1:]} #{len(self.style)}" if hidden else label
        if key not in self.style:  # a label drawn in several panels keeps its first look
            marker = style.get("marker")  # a line without markers shows as a line in the legend
            self.style[key] = {"color": colour(style.get("color")),
                               "shape": SHAPES.get(marker, "circle") if marker else "stroke",
                               "dash": DASHES.get(str(style.get("linestyle", "-")), [1, 0])}
            if not hidden:
                self.legend.append(key)
        return key

    def encoding(self, channel: str) -> dict[str, Any]:
        keys = list(self.style)
        field = {"field": "key", "type": "nominal"}
        # colour, shape and dash share one legend (one field, one legend): it shows all three, as
        # matplotlib's does
        legend = {"values": self.legend, "labelLimit": 320, "symbolLimit": 0} if self.legend else None
        if channel == "color":
            return {**field, "title": None, "legend": legend,
                    "scale": {"domain": keys, "range": [self.style[k]["color"] for k in keys]}}
        if channel == "shape":
            return {**field, "title": None, "legend": legend,
                    "scale": {"domain": keys, "range": [self.style[k]["shape"] for k in keys]}}
        return {**field, "title": None, "legend": legend,
                "scale": {"domain": keys, "range": [self.style[k]["dash"] for k in keys]}}


def _records(index: int, series: list[Series], keys: _Keys, drawn: DrawnPanel) -> tuple[list[dict], set[str]]:
    """One record per placeable point of one panel; and which kinds of layer the panel needs."""
    recs: list[dict] = []
    needs: set[str] = set()
    for label, xs, ys, style in series:
        key = keys.add(label, style)
        marker = style.get("marker")  # matplotlib's plot draws no marker unless asked
        has_marker = marker not in (None, "", "none", "None")
        line = str(style.get("linestyle", "-")) not in NO_LINE
        step = style.get("drawstyle") == "steps-post"
        hollow = bool(style.get("hollow")) or str(style.get("markerfacecolor", "")).lower() in ("none",
                                                                                              "white")
        notes = style.get("annotate") or []
        below, above = _errors(style.get("yerr"), len(ys))
        kind = ("step" if step else "line") if line else None
        dot = ("hollow" if hollow else "dot") if has_marker else "hover"
        for i, (x, y) in enumerate(zip(xs, ys, strict=False)):
            fx, fy = finite(x), finite(y)
            if not (_placeable(fx, drawn.xscale) and _placeable(fy, drawn.yscale)):
                continue
            rec: dict[str, Any] = {"p": index, "key": key, "series": label.lstrip("_"), "x": fx, "y": fy,
                                   "o": float(style.get("alpha", 1.0)), "dot": dot}
            if kind:
                rec["line"] = kind
                needs.add(kind)
            needs.add(dot)
            if i < len(notes) and notes[i]:
                rec["note"] = str(notes[i])
                needs.add("note")
            if below[i] is not None and above[i] is not None:
                lo, hi = fy - below[i], fy + above[i]
                if _placeable(lo, drawn.yscale) and _placeable(hi, drawn.yscale):
                    rec["lo"], rec["hi"] = lo, hi
                    needs.add("spread")  # min and max in the tooltip
                    if hi > lo:
                        needs.add("err")  # a bar to draw: a panel of zero spreads would draw none
            recs.append(rec)
    return recs, needs


def _layers(needs: set[str], keys: _Keys, drawn: DrawnPanel) -> list[dict]:
    x = {"field": "x", "type": "quantitative", "title": drawn.xlabel, "scale": _axis(drawn.xscale),
         "axis": {"labelOverlap": True}}
    yscale = _axis(drawn.yscale)
    if drawn.ylim is not None:
        yscale = {**yscale, "domain": list(drawn.ylim), "padding": 0}
    y = {"field": "y", "type": "quantitative", "title": drawn.ylabel, "scale": yscale,
         "axis": {"labelOverlap": True}}
    color, opacity = keys.encoding("color"), {"field": "o", "type": "quantitative", "scale": None}
    tip = [{"field": "series", "type": "nominal", "title": "series"},
           {"field": "x", "type": "quantitative", "title": drawn.xlabel, "format": NUMBER},
           {"field": "y", "type": "quantitative", "title": drawn.ylabel, "format": NUMBER}]
    if "note" in needs:
        tip.append({"field": "note", "type": "nominal", "title": "label"})
    if "spread" in needs:
        tip += [{"field": "lo", "type": "quantitative", "title": "min", "format": NUMBER},
                {"field": "hi", "type": "quantitative", "title": "max", "format": NUMBER}]
    layers: list[dict] = []
    for kind, interpolate in (("line", "linear"), ("step", "step-after")):
        if kind in needs:
            layers.append({"transform": [{"filter": f"datum.line === '{kind}'"}],
                           "mark": {"type": "line", "interpolate": interpolate, "strokeWidth": 1.5},
                           "encoding": {"x": x, "y": y, "color": color, "detail": {"field": "key"},
                                        "strokeDash": keys.encoding("strokeDash"), "opacity": opacity}})
    if "err" in needs:
        layers.append({"transform": [{"filter": "datum.lo < datum.hi"}], "mark": {"type": "rule"},
                       "encoding": {"x": x, "y": {"field": "lo", "type": "quantitative"},
                                    "y2": {"field": "hi"}, "color": color, "opacity": opacity}})
    for dot, mark in (("dot", {"type": "point", "filled": True, "size": 45}),
                      ("hollow", {"type": "point", "filled": False, "size": 55, "strokeWidth": 1.5}),
                      ("hover", {"type": "point", "filled": True, "size": 60, "opacity": 0})):
        if dot in needs:
            enc = {"x": x, "y": y, "color": color, "tooltip": tip}
            if dot != "hover":  # the invisible hover targets of a line: round, whatever its legend shows
                enc["opacity"], enc["shape"] = opacity, keys.encoding("shape")
            layers.append({"transform": [{"filter": f"datum.dot === '{dot}'"}], "mark": mark,
                           "encoding": enc})
    if "note" in needs:
        layers.append({"transform": [{"filter": "datum.note"}],
                       "mark": {"type": "text", "align": "left", "dx": 4, "dy": -5, "fontSize": 8},
                       "encoding": {"x": x, "y": y, "text": {"field": "note"}, "color": color}})
    return layers


def chart(drawn: Drawn) -> dict[str, Any] | None:
    """The Vega-Lite spec of a figure; None when no panel has a point to place."""
    keys = _Keys()
    data: list[dict] = []
    panels = []
    for i, panel in enumerate(drawn.panels):
        recs, needs = _records(i, panel.series, keys, panel)
        if not recs:
            continue
        data += recs
        panels.append((i, panel, needs))
    if not panels:
        return None
    # every point of a figure answers every tooltip field: no label is an empty one, and a point
    # without error bars spans nothing (its min and max are its value)
    for rec in data:
        if any("note" in needs for _, _, needs in panels):
            rec.setdefault("note", "")
        if any("spread" in needs for _, _, needs in panels):
            rec.setdefault("lo", rec["y"])
            rec.setdefault("hi", rec["y"])
    one = len(panels) == 1
    views = []
    for i, panel, needs in panels:
        title = panel.title
        layers = _layers(needs, keys, panel)
        # zoom and pan (drag, wheel; double-click resets): a selection lives on one layer, binds the view
        layers[0]["params"] = [{"name": f"zoom{i}", "select": "interval", "bind": "scales"}]
        views.append({"title": {"text": title, "fontSize": 11, "limit": (ONE_W if one else PANEL_W) + 40},
                      "width": ONE_W if one else PANEL_W, "height": ONE_H if one else PANEL_H,
                      "transform": [{"filter": f"datum.p === {i}"}], "layer": layers})
    shared = {c: "shared" for c in ("color", "shape", "strokeDash")}
    return {"data": {"values": data}, "columns": min(3, len(views)), "concat": views,
            "resolve": {"scale": {"x": "independent", "y": "independent", **shared}},
            "config": {"legend": {"orient": "right"}, "view": {"stroke": "#ddd"},
                       "axis": {"labelFontSize": 10, "titleFontSize": 11}}}
