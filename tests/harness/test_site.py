"""The results site `archbench report` writes (bench/report/site/): every table and figure on one page,
links that resolve offline, charts that carry the plotted values, the same bytes in any folder, and
PNG figures when the charts' library is missing. The browser checks are in test_site_browser.py."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import ForeignFileError, write_report
from archbench.bench.report.plot import Drawn, DrawnPanel
from archbench.bench.report.site import vega
from archbench.bench.report.site.charts import chart
from archbench.bench.report.site.mdhtml import cell_class, cell_value, to_html
from archbench.bench.report.site.pages import PAGES, page_of
from archbench.bench.runs.schema import Row
from archbench.tasks import TaskSpec

NS = (1024, 4096, 16384)
PRE = "scaling_test-cpu-2-cpus_float32_b1_L2_d64_mlp0"


def _cost(model: str, mode: str, n: int, t: float) -> dict:
    spec = ScalingSpec(model_spec(model), mode=mode, seq_len=n, batch=1, device="cpu", dtype="float32")
    state = 256 * (n if model == "attention" else 16)
    result = ScalingResult(
        backend="chunked", time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=3,
        peak_mem_bytes=1000 * n, peak_mem_method="torch_allocated", state_bytes=state, params=1000,
        energy_j=None, energy_j_per_token=None, energy_source=None, flops=1000, tokens_per_s=n / t,
        flops_per_s=None, bytes_per_s=None, flops_frac_measured=None, bytes_frac_measured=None,
        flops_frac_spec=None, bytes_frac_spec=None)
    return Row("scaling", spec, result, "ok", {**PROV, "load_1m": 1.5}, 1.0).to_json()


def _recall(model: str, lr: float, acc: float) -> dict:
    spec = RetrievalSpec(model_spec(model), TaskSpec("mqar", {"seq_len": 64, "num_kv_pairs": 4,
                                                               "vocab_size": 1024}),
                         TrainConfig(lr=lr), test_lens=(128,), device="cpu", dtype="float32")
    result = RetrievalResult(
        backend="reference", params=1000, steps=10, examples_seen=640, train_seconds=1.0, state_bytes=4096,
        accuracy=acc, accuracy_by_len={"128": acc / 2}, test_len=128, accuracy_by_slice={}, final_loss=0.5,
        stopped_early=False, curve={"examples": [320, 640], "loss": [0.5, 0.5], "accuracy": [acc, acc]})
    return Row("retrieval", spec, result, "ok", PROV, 1.0).to_json()


def _rows() -> dict[str, list[dict]]:
    scaling = [_cost(m, mode, n, c * n**p) for m, c, p in (("attention", 1e-9, 2), ("mamba2", 1e-6, 1))
               for mode in ("prefill", "decode") for n in NS]
    accs = {"attention": (0.5, 0.98, 0.9), "mamba2": (0.3, 0.2, 0.1)}  # learned; flat above chance
    retrieval = [_recall(m, lr, acc) for m in accs
                 for lr, acc in zip((1e-3, 3e-3, 1e-2), accs[m], strict=True)]
    return {"scaling": scaling, "retrieval": retrieval}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report over small rows that reach every page but the grid's, shared by the tests that read it."""
    folder = write_rows(tmp_path_factory.mktemp("site") / "results", **_rows())
    write_report(folder)
    return folder


def _site(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "site").iterdir()) if p.is_file()}


class _Refs(HTMLParser):
    """Every href and src of a page, and its ids."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.refs.append(v)
            if k == "id" and v:
                self.ids.add(v)


def _parse(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text("utf-8"))
    return p


def test_site_regenerates_byte_for_byte_in_another_folder(results: Path, tmp_path: Path) -> None:
    first = _site(results)
    assert {"index.html", "site.css", "site.js", vega.BUNDLE} <= set(first)
    write_report(results)  # again, in place: no byte changes
    assert _site(results) == first
    other = tmp_path / "elsewhere" / "results"
    shutil.copytree(results / "raw", other / "raw")
    write_report(other)  # another folder, another process state: the same bytes, every file
    assert _site(other) == first
    assert str(results) not in b"".join(first.values()).decode("utf-8", "replace")  # no absolute paths


def test_every_table_and_figure_is_on_its_page(results: Path) -> None:
    names = re.findall(r"^- \[([^\]]+)\]", (results / "README.md").read_text(), flags=re.M)
    assert names and "](site/index.html)" in (results / "README.md").read_text()
    pages = {p.slug: _parse(results / "site" / f"{p.slug}.html") for p in PAGES
             if (results / "site" / f"{p.slug}.html").exists()}
    for name in names:
        anchor = re.sub(r"[^A-Za-z0-9_-]", "-", name)
        holders = [slug for slug, p in pages.items() if anchor in p.ids]
        assert holders == [page_of(name)], f"{name} shown on {holders}"
    assert page_of(f"{PRE}_decode_bound.md") == "decode" and page_of(f"{PRE}_time_prefill.png") == "scaling"
    assert page_of(f"{PRE}_state.md") == "state" and page_of("frontier_x_float32_costs.md") == "index"
    assert page_of("frontier_x_grid.md") == "grid" and page_of("somebody_elses_table.md") == "more"
    assert "more" not in pages  # written only when something lands there


def test_links_resolve_to_files_and_nothing_is_fetched(results: Path) -> None:
    site = results / "site"
    for page in sorted(site.glob("*.html")):
        parsed = _parse(page)
        assert parsed.refs, page.name
        for ref in parsed.refs:
            assert not re.match(r"^(https?:)?//", ref), f"{page.name}: {ref} needs the network"
            if ref.startswith("data:"):
                continue
            path, _, fragment = ref.partition("#")
            target = (site / path).resolve() if path else page
            assert target.is_file(), f"{page.name}: {ref}"
            if fragment:
                assert fragment in _parse(target).ids, f"{page.name}: {ref}"
        text = page.read_text("utf-8")
        assert '"url"' not in text  # every chart's data is inline: browsers refuse a fetch from file://
        assert f'<script src="{vega.BUNDLE}">' in text or 'class="chart"' not in text


def test_tables_are_sortable_and_figures_are_charts(results: Path) -> None:
    index = (results / "site" / "index.html").read_text("utf-8")
    items = re.findall(r'class="item" id="([^"]+)"', index)
    assert items[0].endswith("_state_16k-png")  # the frontier's first chart, before the tables behind it
    scaling = (results / "site" / "scaling.html").read_text("utf-8")
    assert '<table class="sortable">' in scaling and "data-v=" in scaling
    specs = re.findall(r'<script type="application/json" id="spec-([^"]+)">(.*?)</script>', scaling)
    spec = json.loads(dict(specs)[f"{PRE}_time_prefill-png"])
    points = {(r["series"], r["x"]): r["y"] for r in spec["data"]["values"]}
    assert points["attention  ~n^2.00", 4096] == pytest.approx(1e-9 * 4096**2)
    assert points["mamba2  ~n^1.00", 16384] == pytest.approx(1e-6 * 16384)
    learning = (results / "site" / "learning.html").read_text("utf-8")
    assert 'class="c-learned"' in learning and 'class="c-flat"' in learning  # the cells' classes, coloured


def test_without_the_charts_library_figures_are_pngs_and_the_bundle_goes(
        results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "results"
    shutil.copytree(results, folder)
    (folder / "site" / "screenshots").mkdir()
    (folder / "site" / "screenshots" / "index.png").write_bytes(b"a screenshot the report did not write")
    monkeypatch.setattr(vega, "bundle", lambda: None)
    write_report(folder)
    site = folder / "site"
    assert not (site / vega.BUNDLE).exists()  # listed in the manifest by the run before: removed
    assert (site / "screenshots" / "index.png").exists()  # never the report's: kept
    scaling = (site / "scaling.html").read_text("utf-8")
    assert f'<img src="../{PRE}_time_prefill.png"' in scaling and 'class="chart"' not in scaling
    assert vega.INSTALL_HINT.replace("'", "&#x27;") in (site / "index.html").read_text("utf-8")


def test_a_site_page_the_report_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    folder = write_rows(tmp_path / "results", **_rows())
    (folder / "site").mkdir()
    (folder / "site" / "index.html").write_text("<p>my own page</p>")
    with pytest.raises(ForeignFileError, match="index.html"):
        write_report(folder)
    assert (folder / "site" / "index.html").read_text() == "<p>my own page</p>"


# -- the pieces ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [
    ("17.4 µs", 17.4e-6), ("3.00 MiB", 3 * 2**20), ("1,071", 1071), ("0.910 ±0.020 (2 seeds)", 0.91),
    ("1.00 ms (2.0×)", 1e-3), ("25.0%", 0.25), ("32k", 32000), ("0.363 ↗", 0.363), ("-1.5", -1.5),
    ("n/a", None), ("-", None), ("oom", None), ("mamba2", None), ("b=32: over budget", None), ("", None),
    ("e195570adbbd", None), ("4a1f09c", None), ("1e-3", 1e-3), (".5 s", 0.5)])
def test_cell_value_reads_the_report_units(text: str, value: float | None) -> None:
    got = cell_value(text)
    assert got == (None if value is None else pytest.approx(value))


def test_cell_class_and_markdown_tables() -> None:
    texts = ("0.363 ↗", "0.05 ⊘ (mamba2-attn)", "rising", "learned", "1.000", "± mixed",
             "0.910 ±0.020 (2 seeds)")
    assert [cell_class(t) for t in texts] == ["rising", "plateau", "rising", "learned", None, "mixed", None]
    html = to_html("## a <b>\n\n| m | t |\n|:--|--:|\n| x | 2 ms |\n\n- `code` and [csv](t.csv)\n\n_none_")
    assert "<h4>a &lt;b&gt;</h4>" in html and '<td data-v="0.002" style="text-align:right">2 ms</td>' in html
    assert '<code>code</code> and <a href="../t.csv">csv</a>' in html and "<em>none</em>" in html


def test_chart_keeps_styles_and_drops_what_a_log_axis_cannot_place() -> None:
    drawn = Drawn([DrawnPanel("p", [
        ("attention", [1, 2, 4], [1.0, 0.0, float("nan")], {"color": "C1", "marker": "s"}),
        ("_not learned", [2], [0.5], {"color": "C2", "marker": "o", "markerfacecolor": "none",
                                      "linestyle": "none"}),
        ("front", [1, 2], [1.0, 0.5], {"color": "black", "drawstyle": "steps-post"}),
        ("lr", [1, 2], [0.5, 0.6], {"color": "C0", "marker": "o", "yerr": [[0.1, 0.1], [0.2, 0.2]]})],
        "x", "y", "log", "log", None)])
    spec = chart(drawn)
    values = spec["data"]["values"]
    assert [(r["series"], r["x"]) for r in values if r["series"] == "attention"] == [("attention", 1.0)]
    view = spec["concat"][0]
    marks = [layer["mark"] for layer in view["layer"]]
    assert {"type": "line", "interpolate": "step-after", "strokeWidth": 1.5} in marks
    assert any(m.get("type") == "point" and m.get("filled") is False for m in marks)  # hollow: not learned
    assert any(m.get("type") == "rule" for m in marks)  # error bars
    color = view["layer"][0]["encoding"]["color"]
    assert color["legend"]["values"] == ["attention", "front", "lr"]  # "_" labels draw without an entry
    assert dict(zip(color["scale"]["domain"], color["scale"]["range"], strict=True))["attention"] == "#ff7f0e"
    assert next(r for r in values if r["series"] == "lr")["lo"] == pytest.approx(0.4)
    assert chart(Drawn([DrawnPanel("empty", [("a", [0], [1], {})], "x", "y", "log", "log", None)])) is None
    flat = chart(Drawn([DrawnPanel("one seed", [("lr", [1, 2], [0.5, 0.6], {"yerr": [[0, 0], [0, 0]]})],
                                   "x", "y", "log", "linear", None)]))
    assert all(layer["mark"]["type"] != "rule" for layer in flat["concat"][0]["layer"])  # no bar to draw


def test_chart_draws_the_plots_hollow_key_hollow_and_the_chance_level() -> None:
    from archbench.bench.report.plot import ACCURACY, Axis, Panel, plot

    png = plot([Panel("p", [("mamba2", [1, 2], [0.1, 0.2], {"color": "C0", "marker": "o", "hollow": True})],
                      chance=0.01)], Axis("state bytes", unit="B"), ACCURACY)
    panel = png.drawn.panels[0]
    assert (panel.xlabel, panel.xscale, panel.yscale) == ("state bytes (B)", "log2", "linear")
    spec = chart(png.drawn)
    marks = [layer["mark"] for layer in spec["concat"][0]["layer"]]
    assert any(m.get("type") == "point" and m.get("filled") is False for m in marks)
    chance = [r for r in spec["data"]["values"] if r["series"].startswith("chance")]
    assert [(r["x"], r["y"]) for r in chance] == [(1.0, 0.01), (2.0, 0.01)]  # across the panel's x range
