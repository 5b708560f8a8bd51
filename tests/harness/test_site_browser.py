"""The results site in a real browser: every page opened from the file system in headless Chromium, as
a reader would open it, with no network. A page fails on a console error or an uncaught exception, a
link or source that does not resolve to a file (or points off the machine), a chart that did not draw
or drew nothing, an empty table or an image that did not load; the pointer over a point shows its
values, a click sorts a table and a word filters it. A screenshot of each page is saved.

Marked `browser` (deselected by plain `pytest`): `pip install -e ".[browser]"` and Debian's `chromium`
(`apt-get install chromium`), then `pytest -m browser tests/harness/test_site_browser.py`. Playwright
drives that Chromium (ARCHBENCH_CHROMIUM names another); without either the tests skip, saying which.

The site is built from the committed rows (results/raw) into a temporary folder, or ARCHBENCH_SITE
names a site folder already written (`archbench report --results results` then
ARCHBENCH_SITE=results/site). Screenshots go to ARCHBENCH_SCREENSHOTS, else beside the temporary site.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from helpers import ROOT

from archbench.bench.report import write_report
from archbench.bench.report.site.pages import PAGES

pytestmark = pytest.mark.browser
VIEW = {"width": 1400, "height": 1000}
SHOT_HEIGHT = 2400  # a screenshot shows the top of a long page: what a reader sees first, and a scroll
READY_MS = 180_000  # the learning-curves page draws every run's curve


# the first table's first column of numbers (data-v), else its first column
COLUMN = """() => { const t = document.querySelector('table.sortable');
    const i = [...t.tBodies[0].rows[0].cells].findIndex(c => c.dataset.v !== undefined);
    return Math.max(i, 0); }"""
# ascending: numbers (by data-v) first and in order, then text in order; `col` the column
SORTED = """col => { const cells = [...document.querySelector('table.sortable').tBodies[0].rows]
        .map(r => r.cells[col]).filter(Boolean);
    const num = c => c.dataset.v !== undefined;
    const nums = cells.filter(num), texts = cells.filter(c => !num(c));
    return cells.every((c, i) => i === 0 || num(c) <= num(cells[i - 1]))
        && nums.every((c, i) => i === 0 || Number(nums[i - 1].dataset.v) <= Number(c.dataset.v))
        && texts.every((c, i) => i === 0 || texts[i - 1].textContent.localeCompare(
            c.textContent, undefined, {numeric: true}) <= 0); }"""


def _chromium() -> str | None:
    named = os.environ.get("ARCHBENCH_CHROMIUM")
    if named:
        return named
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ARCHBENCH_SITE")
    if given:
        return Path(given).resolve()
    results = tmp_path_factory.mktemp("site") / "results"
    shutil.copytree(ROOT / "results" / "raw", results / "raw")
    if (ROOT / "results" / "METHODS.md").is_file():
        shutil.copy(ROOT / "results" / "METHODS.md", results / "METHODS.md")
    write_report(results)
    return results / "site"


@pytest.fixture(scope="module")
def shots(site: Path) -> Path:
    folder = Path(os.environ.get("ARCHBENCH_SCREENSHOTS") or site.parent / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the browser extra: "
                                   "pip install -e '.[browser]'")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (or set ARCHBENCH_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        # --allow-file-access-from-files is not needed: the pages fetch nothing, their data is inline.
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _target(page_file: Path, ref: str) -> tuple[Path | None, str]:
    """The file a link or source names (None: off this machine) and its fragment."""
    parts = urlsplit(ref)
    if parts.scheme in ("http", "https", "ftp") or ref.startswith("//"):
        return None, ""
    path = page_file if not parts.path else (page_file.parent / unquote(parts.path)).resolve()
    return path, parts.fragment


def _ids(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    import re

    if path not in cache:
        cache[path] = set(re.findall(r'\sid="([^"]+)"', path.read_text("utf-8")))
    return cache[path]


@pytest.mark.parametrize("slug", [p.slug for p in PAGES])
def test_page_opens_without_errors_and_draws(slug: str, browser, site: Path, shots: Path) -> None:
    # `browser` first: with no Chromium the test skips before building a site
    page_file = site / f"{slug}.html"
    if not page_file.is_file():
        assert slug == "more", f"{page_file} missing: every page but 'more' is always written"
        pytest.skip("no table or figure needed the 'more' page")
    ctx = browser.new_context(viewport=VIEW, offline=True)  # offline: the page must need no network
    page = ctx.new_page()
    problems: list[str] = []
    # warnings too: Vega warns (rather than fails) on a spec it cannot honour or data it cannot place
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}: {r.failure}"))
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready='true']", state="attached", timeout=READY_MS)

    # a chart's data marks (.role-mark), not its legend's symbols: a chart with no point is empty
    charts = page.eval_on_selector_all("div.chart", """els => els.map(d => ({
        id: d.dataset.spec, state: d.dataset.state || 'none',
        marks: d.querySelectorAll('.role-mark path, .role-mark line').length}))""")
    for c in charts:
        assert c["state"] == "drawn" and c["marks"] > 0, \
            f"{slug}: chart {c['id']}: {c['state']}, {c['marks']} marks"
    tables = page.eval_on_selector_all("table", "ts => ts.map(t => t.tBodies[0]?.rows.length ?? 0)")
    assert all(n > 0 for n in tables), f"{slug}: an empty table"
    if slug == "index":
        assert charts, "the frontier page draws the recall–cost charts"

    refs = page.eval_on_selector_all("[href], [src]", "es => es.map(e => e.getAttribute('href') ?? "
                                     "e.getAttribute('src'))")
    ids: dict[Path, set[str]] = {}
    for ref in refs:
        if ref.startswith("data:"):
            continue
        target, fragment = _target(page_file, ref)
        assert target is not None, f"{slug}: {ref} points off this machine (the site must work offline)"
        assert target.is_file(), f"{slug}: {ref} -> {target} does not exist"
        if fragment and target.suffix == ".html":
            assert fragment in _ids(target, ids), f"{slug}: {ref}: no id {fragment!r} there"

    # lazy images load once scrolled to: make them load now, then each must have pixels
    page.evaluate("() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
    broken = page.eval_on_selector_all("img", "is => is.filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == [], f"{slug}: images that did not load: {broken}"

    # the page as a reader first sees it, before the clicks below sort and filter it
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.screenshot(path=str(shots / f"{slug}.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": VIEW["width"], "height": min(height, SHOT_HEIGHT)})

    if charts:  # the pointer over a point shows its values (vega-embed's tooltip)
        point = page.locator("div.chart g.mark-symbol.role-mark path").first
        point.scroll_into_view_if_needed()
        point.hover(force=True)  # force: a hover target may be transparent (a line's own points)
        tip = page.wait_for_selector("#vg-tooltip-element.visible", timeout=10_000)
        assert "series" in tip.text_content(), f"{slug}: the tooltip shows {tip.text_content()!r}"
        if slug == "index":  # one picture of the values under the pointer
            page.screenshot(path=str(shots / "index-tooltip.png"))

    if tables:  # the first table: a click sorts it, a word no row holds filters every row out
        col = page.evaluate(COLUMN)
        page.locator("table.sortable").first.locator("th button").nth(col).click()
        assert page.evaluate(SORTED, col), f"{slug}: column {col} of the first table did not sort"
        box = page.locator(".filters input[type='search']").first
        box.fill("zzz-no-row-has-this")
        assert page.locator(".filters .count").first.text_content().startswith("0 of ")
        box.fill("")

    ctx.close()
    assert problems == [], f"{slug}: " + "\n".join(problems)
