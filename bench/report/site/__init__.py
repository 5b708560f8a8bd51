"""The results site: static HTML pages that `archbench report` writes into <results>/site/, read from the
file system or GitHub Pages with no server and no network.

    site_files(out, rows, bench_prov, methods=True) -> {"site/index.html": b"...", ...}

One page per part of the story (pages.py: the recall–cost frontier first), built from what the report
already made: each table's Markdown (mdhtml.py: sortable, filterable HTML tables) and each figure's
panels (charts.py: a Vega-Lite chart with the values under the pointer; the PNG where a figure has no
panels or the charts' library is not installed, vega.py). Tables and figures link to their Markdown,
CSV and PNG files one folder up, in results/.

Deterministic like the rest of the report: no timestamps or random ids, sorted JSON, ids from file
names; two runs over the same rows write the same bytes, in any folder.

Files: index.html and one page per PAGES entry, site.css and site.js (hand-written: sorting, filtering,
drawing the charts), vega-bundle.js (the charts' library).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from importlib import resources

from archbench.bench.report.format import short_status
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.site import vega
from archbench.bench.report.site.charts import chart
from archbench.bench.report.site.mdhtml import inline, to_html
from archbench.bench.report.site.pages import FALLBACK, PAGES, Page, page_of
from archbench.bench.report.site.provenance import provenance_markdown
from archbench.bench.runs.schema import Row

FOLDER = "site"
ASSETS = ("site.css", "site.js")


def _short(caption: str) -> str:
    """A heading from a caption: without its longer asides in brackets, up to its first "; ", capitalised
    ("median prefill (forward) time per call (rows model, backend; columns n)" -> "Median prefill
    (forward) time per call")."""
    head = caption
    while True:  # innermost first, so an aside holding a shorter one goes too
        shorter = re.sub(r"\s*\([^()]{12,}\)", "", head, count=1)
        if shorter == head:
            break
        head = shorter
    head = head.split("; ")[0].rstrip(",;: ")
    if len(head) > 120:
        head = head[:120].rsplit(" ", 1)[0] + " …"
    return head[:1].upper() + head[1:]


def _anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _item(out: Outputs, name: str, caption: str, charts: bool) -> tuple[str, bool]:
    """One table or figure as HTML; and whether it is a chart (the page then needs the library)."""
    aid, link = _anchor(name), f"../{name}"
    if name.endswith(".md"):
        csv = name.removesuffix(".md") + ".csv"
        files = f'<a href="{html.escape(link)}">Markdown</a>'
        if csv in out.files:
            files += f' · <a href="../{html.escape(csv)}">CSV</a>'
        body = to_html(out.bodies.get(name, ""))
        return (f'<article class="item" id="{aid}"><h3>{inline(_short(caption))}</h3>'
                f'<p class="caption">{inline(caption)} <span class="files">({files})</span></p>\n'
                f"{body}</article>", False)
    spec = chart(out.drawn[name]) if charts and name in out.drawn else None
    if spec is None:
        figure = (f'<img src="{html.escape(link)}" alt="{html.escape(caption)}" loading="lazy">')
    else:
        data = json.dumps(spec, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        data = data.replace("<", "\\u003c")  # "</script>" inside a label must not end the script element
        figure = (f'<div class="chart" data-spec="spec-{aid}" role="img" aria-label="{html.escape(caption)}">'
                  f'</div><script type="application/json" id="spec-{aid}">{data}</script>')
    return (f'<figure class="item" id="{aid}"><h3>{inline(_short(caption))}</h3>{figure}'
            f'<figcaption>{inline(caption)} <span class="files">(<a href="{html.escape(link)}">PNG</a>)'
            f"</span></figcaption></figure>", spec is not None)


def _page(page: Page, pages: list[Page], head_html: str, groups: list[tuple[str, list[str]]],
          has_charts: bool, charts_note: str) -> bytes:
    current = ' aria-current="page"'
    nav = "".join(f'<a href="{p.slug}.html"{current if p.slug == page.slug else ""}>'
                  f"{html.escape(p.title)}</a>" for p in pages)
    toc = ""
    if len(groups) > 1:
        toc = ('<nav class="toc" aria-label="On this page"><strong>On this page</strong><ul>' +
               "".join(f'<li><a href="#g{i}">{html.escape(title)}</a></li>'
                       for i, (title, _) in enumerate(groups)) + "</ul></nav>")
    body = "\n".join(f'<section class="group" id="g{i}"><h2>{html.escape(title)}</h2>\n' + "\n".join(items) +
                     "</section>" for i, (title, items) in enumerate(groups))
    if not groups and page.slug not in ("index", "provenance"):
        body = '<p class="empty">No results of this kind yet.</p>'
    scripts = (f'<script src="{vega.BUNDLE}"></script>' if has_charts else "") + \
        '<script src="site.js"></script>'
    note = f'<p class="note">{charts_note}</p>' if charts_note and page.slug == "index" else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page.title)} — archbench results</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="site.css">
</head>
<body>
<header class="top"><a class="brand" href="index.html">archbench results</a>
<nav class="pages">{nav}</nav></header>
<main>
<h1>{html.escape(page.title)}</h1>
<p class="intro">{html.escape(page.intro)}</p>
{note}{head_html}{toc}
{body}
</main>
<footer>Generated by <code>archbench report</code> from the rows under <code>results/raw/</code>; do not edit
by hand. Every table and figure is also a file in <a href="../README.md">results/</a> (Markdown, CSV, PNG).
</footer>
{scripts}
</body>
</html>
""".encode()


def _summary(rows: list[Row]) -> str:
    if not rows:
        return ("<p>No result rows yet: run <code>archbench run SUITE</code>, then "
                "<code>archbench report</code>.</p>")
    counts = Counter((r.kind, short_status(r.status)) for r in rows)
    kinds = "; ".join(f"{kind}: " + ", ".join(f"{n} {s}" for (k, s), n in sorted(counts.items()) if k == kind)
                      for kind in sorted({r.kind for r in rows}))
    return f"<p>{len(rows)} stored rows ({html.escape(kinds)}).</p>"


def site_files(out: Outputs, rows: list[Row], bench_prov: list[str],
               methods: bool = False) -> dict[str, bytes]:
    """Every file of the site, by its path under the results folder ("site/index.html", ...).
    `methods`: whether results/METHODS.md exists (the provenance page links it)."""
    lib = vega.bundle()
    charts_note = "" if lib is not None else (
        f"Figures are shown as PNG: the interactive charts need vl-convert-python (<code>"
        f"{html.escape(vega.INSTALL_HINT)}</code>), then <code>archbench report</code> again.")
    placed: dict[str, list[tuple[str, str, str]]] = {}
    for section, name, caption in out.index:
        placed.setdefault(page_of(name), []).append((section, name, caption))
    pages = [p for p in PAGES if p.slug != FALLBACK or placed.get(FALLBACK)]
    files: dict[str, bytes] = {}
    for page in pages:
        groups: dict[str, list[str]] = {}
        any_chart = False
        # a section's figures first, then its tables: the picture, then the exact values behind it
        mine = placed.get(page.slug, [])
        order = {section: i for i, section in reversed(list(enumerate(s for s, _, _ in mine)))}
        mine = sorted(mine, key=lambda item: (order[item[0]], not item[1].endswith(".png")))
        for section, name, caption in mine:
            item, is_chart = _item(out, name, caption, lib is not None)
            groups.setdefault(section, []).append(item)
            any_chart |= is_chart
        head = ""
        if page.slug == "index":
            head = _summary(rows)
            head += "".join(f'<p class="note">Note: {inline(n)}</p>' for n in out.notes)
            if out.frontier:
                head += '<section class="headline"><h2>Headline</h2>' + "".join(
                    f"<h3>{inline(title)}</h3>{to_html(body)}" for title, body in out.frontier) + "</section>"
        if page.slug == "provenance":
            head = to_html(provenance_markdown(rows), heading=2)
            if bench_prov:
                head += "<h2>pytest-benchmark files</h2><ul>" + "".join(f"<li>{inline(p)}</li>"
                                                                          for p in bench_prov) + "</ul>"
            head += (f"<h2>This site</h2><p>Charts: {html.escape(vega.source())}. Tables sort by a click on "
                     "a column's header and filter by the box above them.</p>")
            if methods:
                head += '<p>How each figure is measured: <a href="../METHODS.md">results/METHODS.md</a>.</p>'
        files[f"{FOLDER}/{page.slug}.html"] = _page(page, pages, head, list(groups.items()), any_chart,
                                                    charts_note)
    for asset in ASSETS:
        files[f"{FOLDER}/{asset}"] = resources.files(__package__).joinpath(asset).read_bytes()
    if lib is not None:
        files[f"{FOLDER}/{vega.BUNDLE}"] = lib
    return files
