"""The charts' JavaScript, written beside the pages so the site works offline (no CDN, no server).

Vega-Lite was chosen over plotly for the charts: a figure is a small declarative JSON spec that reads in
a diff, tooltips, zoom and one legend per figure come from the spec, and the library (Vega, Vega-Lite
and vega-embed, BSD-3-Clause) is one ~0.9 MB file where plotly.js is ~4.8 MB — the site's copy is
committed with the results. The file comes from vl-convert-python (the Vega project's own converter,
on PyPI: the `site` extra), whose `javascript_bundle()` builds the three libraries into one plain
script that defines `vegaEmbed`: a classic <script> (an ES module would be refused from file://).

Without vl-convert-python the site still renders: every figure is shown as its PNG, and the pages say
how to get the interactive charts.
"""

from __future__ import annotations

import functools
from importlib import metadata

BUNDLE = "vega-bundle.js"
INSTALL_HINT = "pip install 'archbench[site]'"


@functools.cache
def bundle() -> bytes | None:
    """The script's bytes (built once per process: building takes seconds), or None without the extra."""
    try:
        import vl_convert
    except ImportError:
        return None
    version = metadata.version("vl-convert-python")
    head = (f"/* Vega, Vega-Lite and vega-embed (BSD-3-Clause, the Vega project), bundled by "
            f"vl-convert-python {version} for the archbench results site. */\n")
    return (head + vl_convert.javascript_bundle()).encode("utf-8")


def source() -> str:
    """Which library drew the charts, for the provenance page."""
    try:
        return f"vl-convert-python {metadata.version('vl-convert-python')}"
    except metadata.PackageNotFoundError:
        return f"none (charts shown as PNG; {INSTALL_HINT})"
