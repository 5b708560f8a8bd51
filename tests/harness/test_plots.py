"""The report's figures read at a glance: the readability check catches what it names (legend over data,
text off the canvas, crowded tick labels, panels running into each other), every figure the report
builds passes it, the layout copes with crowded input, one colour and marker per family everywhere,
units on the ticks, chance drawn, cells that did not learn hollow."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

from archbench.archs import list_archs
from archbench.archs.presets import PRESETS
from archbench.bench.report import plot as plot_module
from archbench.bench.report import write_report
from archbench.bench.report.palette import family_style, styles
from archbench.bench.report.plot import ACCURACY, CHANCE_LABEL, HOLLOW_LABEL, Axis, Panel, figure, tick_text
from archbench.bench.report.readable import UnreadableFigure, assert_figure_readable, figure_problems


def _fig(w: float = 4.0, h: float = 3.0, n: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, n, squeeze=False).ravel())
    for ax in axes:
        ax.plot([1, 2, 3], [1, 4, 9], label="data")
    return fig, axes


# -- the check finds what it names (each test fails if the check stops looking) ---------------------
def test_a_legend_over_the_data_is_found() -> None:
    fig, (ax,) = _fig()
    ax.legend(loc="center")
    assert any("legend covers the plot area" in p for p in figure_problems(fig))
    with pytest.raises(UnreadableFigure, match="legend covers"):
        assert_figure_readable(fig)


def test_text_off_the_canvas_is_found() -> None:
    fig, (ax,) = _fig()
    fig.subplots_adjust(left=0.15)
    ax.set_title("a title far too long for a four-inch figure to hold on one line, clipped at both ends")
    assert any("falls outside the canvas" in p for p in figure_problems(fig))


def test_crowded_tick_labels_are_found() -> None:
    fig, (ax,) = _fig()
    ax.xaxis.set_major_locator(FixedLocator([1.0, 1.02, 1.04]))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.6f} s")
    assert any("tick labels" in p and "overlap" in p for p in figure_problems(fig))


def test_panels_running_into_each_other_are_found() -> None:
    fig, axes = _fig(w=6.0, n=2)
    fig.subplots_adjust(wspace=0.0, left=0.2, right=0.8)
    for ax in axes:
        ax.set_title("a panel title wider than its panel")
    assert any("the texts 'a panel title wider than its panel' and" in p for p in figure_problems(fig))


def test_a_clean_figure_has_no_problem() -> None:
    fig, (ax,) = _fig(w=6.0)
    ax.set_title("fine")
    fig.legend(loc="outside right upper")  # no constrained layout: placed by hand below
    fig.subplots_adjust(left=0.12, right=0.7, bottom=0.15, top=0.88)
    assert figure_problems(fig) == []


# -- the report's own figures -----------------------------------------------------------------------
def _crowded(n_models: int = 40, label_len: int = 0) -> list:
    names = [f"{m}{'' if i % 3 == 0 else f' d_state={4 << i % 3}'}" for i, m in
             enumerate(list_archs() * 4)][:n_models]
    families = {name: name.split()[0] for name in names}
    style = styles(names, families)
    ns = [1024, 4096, 16384]
    return [(f"{name}{'x' * label_len}  ~n^1.{i:02d}", ns, [1e-4 * (i + 1) * n / 1024 for n in ns],
             style[name]) for i, name in enumerate(names)]


@pytest.mark.parametrize("panels", [1, 2, 4, 9])
def test_the_layout_keeps_a_crowded_figure_readable(panels: int) -> None:
    """Forty lines with long labels, a long title and notes on every panel: the legend goes outside, the
    figure grows, notes that cannot be placed are left out — and the check passes."""
    series = _crowded(label_len=30)
    series[0] = (*series[0][:3], {**series[0][3], "annotate": ["first", "second", "third"]})
    fig = figure([Panel(f"panel {i}: a title of some length that must wrap to fit its panel", series)
                  for i in range(panels)], Axis("context n (tokens)", unit="n"),
                 Axis("median time", unit="s"),
                 title="A device name · float32 · batch 1 · depth 4 · d_model 256 · mlp_ratio 0 " * 2)
    assert figure_problems(fig) == []
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)


@pytest.mark.parametrize(("lo", "hi", "unit"), [(2e-5, 3e-5, "s"), (0.08, 0.104, "s"), (2048, 3.3e7, "B"),
                                               (4096, 5000, "n"), (1e-4, 3e-2, ""), (1.0, 1e4, "J")])
def test_log_ticks_are_few_clean_and_apart(lo: float, hi: float, unit: str) -> None:
    fig = figure([Panel("p", [("a", [lo, hi], [lo, hi], {"marker": "o"})])], Axis("x", unit=unit),
                 Axis("y", unit=unit))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
    assert 1 <= len(labels) <= 7
    assert not any("×" in t or "^" in t or "e" in t.replace("µ", "") for t in labels)  # no 3×10⁴×10²


def test_units_are_on_the_ticks() -> None:
    assert [tick_text(v, u) for v, u in [(0.004, "s"), (2e-5, "s"), (1.5, "s"), (16384, "B"), (3 << 20, "B"),
                                         (4096, "n"), (96, "n"), (2e-6, "J"), (12000, ""), (0.25, ""),
                                         (5000, "s"), (2e4, "J")]] == \
        ["4 ms", "20 µs", "1.5 s", "16 KiB", "3 MiB", "4k", "96", "2 µJ", "12,000", "0.25", "5,000 s",
         "20 kJ"]


def test_chance_is_drawn_and_hollow_cells_say_so() -> None:
    style = family_style("mamba2")
    fig = figure([Panel("mqar", [("mamba2", [1, 2], [0.9, 0.95], style),
                                 ("_mamba2 off", [3], [0.01], {**style, "hollow": True, "linestyle": "none"}),
                                 ("gla", [4], [0.0], {**family_style("gla"), "hollow": True})], chance=0.02)],
                 Axis("state", unit="B"), ACCURACY)
    ax = fig.axes[0]
    assert any(list(line.get_ydata()) == [0.02, 0.02] for line in ax.get_lines())  # the chance line
    assert any(line.get_markerfacecolor() == "white" for line in ax.get_lines())
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert CHANCE_LABEL in texts and HOLLOW_LABEL in texts
    handles = dict(zip(texts, fig.legends[0].legend_handles, strict=True))
    assert handles["gla"].get_markerfacecolor() != "white"  # a family's entry is filled, even if its cells
    # are all hollow: the legend names the family, HOLLOW_LABEL what hollow means


# -- one colour and marker per family -------------------------------------------------------------
@pytest.mark.parametrize("name", [*list_archs(), *PRESETS])
def test_every_mixer_and_preset_has_its_own_colour_and_marker(name: str) -> None:
    mine = family_style(name)
    others = [family_style(n) for n in [*list_archs(), *PRESETS] if n != name]
    assert (mine["color"], mine["marker"]) not in {(o["color"], o["marker"]) for o in others}
    assert family_style(name) == mine  # fixed: not the order families happen to appear in


def test_variants_keep_their_family_hue_and_hybrids_their_partner_colour() -> None:
    st = styles(["mamba2", "mamba2 d_state=64", "mamba2 d_state=8"],
                {"mamba2": "mamba2", "mamba2 d_state=64": "mamba2", "mamba2 d_state=8": "mamba2"})
    assert st["mamba2"]["color"] == family_style("mamba2")["color"]  # the defaults keep the full colour
    assert len({s["color"] for s in st.values()}) == 3 and len({s["marker"] for s in st.values()}) == 1
    pattern = family_style("RRRX:R=gated_deltanet,X=attention")
    assert pattern["color"] == family_style("gated_deltanet")["color"]
    assert pattern == family_style("RRRX:R=gated_deltanet,X=attention")
    plugin = family_style("some_plugin_mixer")
    assert plugin == family_style("some_plugin_mixer") and plugin["color"].startswith("#")


def test_every_figure_the_report_builds_is_checked(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each PNG the report writes went through the readability check (which raises on a problem)."""
    from helpers.rows import write_rows
    from test_frontier_report import _rows

    checked = []

    def check(fig: Figure) -> None:
        assert_figure_readable(fig)
        checked.append(fig)

    monkeypatch.setattr(plot_module, "assert_figure_readable", check)
    recall, cost = _rows()
    results = write_rows(tmp_path / "results", retrieval=recall, scaling=cost)
    written = write_report(results)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) >= 8 and len(checked) == len(pngs)
