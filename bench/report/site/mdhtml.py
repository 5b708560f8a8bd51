"""The report's Markdown as HTML, for the results site: only what the report writes (`##` headings, pipe
tables, paragraphs, `- ` lists, `code`, _a whole line in italics_, [links](file)), so no Markdown
library is needed and nothing is guessed.

Every table becomes sortable: a cell whose text starts with a number gets `data-v`, the number in SI
units ("17.4 µs" -> 1.74e-05, "3.00 MiB" -> 3145728, "0.910 ±0.020" -> 0.91), which site.js sorts by;
other cells sort as text. A cell carrying a learning-curve class or its mark (bench/report/learning.py)
gets the class's CSS class, so "did not learn" reads at a glance.

    cell_value("1,071") == 1071.0      cell_value("n/a") is None      cell_value("mamba2") is None
"""

from __future__ import annotations

import html
import re

from archbench.bench.report.learning import MARK

# unit -> factor to SI (seconds, bytes, joules, plain numbers); "k" is the learning table's thousands
UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "h": 3600.0, "B": 1.0, "KiB": 2.0**10,
         "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40, "nJ": 1e-9, "µJ": 1e-6, "mJ": 1e-3, "J": 1.0,
         "%": 0.01, "k": 1e3, "×": 1.0}
# a mantissa is required before an exponent, so a commit hash such as "e195570" is not read as 0e195570
_NUMBER = re.compile(r"^([-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)(\s*)(\S*)")
# a class as the learning table spells it, or the mark the accuracy tables append to a figure
_CLASS_OF_MARK = {mark.strip(): cls for cls, mark in MARK.items() if mark.strip()}
_CLASSES = {"learned", "flat", "rising", "plateau", "no curve", "± mixed"}
WRAP = 80  # characters: a longer cell wraps


def cell_value(text: str) -> float | None:
    """The number a cell starts with, in SI units; None for text, "n/a", "-", a failed cell's status."""
    m = _NUMBER.match(text.strip())
    if not m:
        return None
    number, gap, unit = float(m.group(1).replace(",", "")), m.group(2), m.group(3).rstrip(",;")
    if not gap and unit and unit not in UNITS and unit[0].isalnum():
        return None  # letters glued to the digits: a word or a hash ("4a1f09c", "3d"), not a figure
    return number * UNITS.get(unit, 1.0)


def cell_class(text: str) -> str | None:
    """The learning-curve class a cell shows (as a word, or as a mark standing apart after its figure:
    "0.071 ⊘ (qwen3-next)"), else None."""
    t = text.strip()
    if t in _CLASSES:
        return t.removeprefix("± ").replace(" ", "-")
    cls = next((_CLASS_OF_MARK[w] for w in t.split()[1:] if w in _CLASS_OF_MARK), None)
    return cls.replace(" ", "-") if cls else None


def inline(text: str, link_prefix: str = "../") -> str:
    """Escaped HTML of one line of text: `code` and [label](target); a relative target is a file
    beside the Markdown in results/, one folder up from the site."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue

        def link(m: re.Match) -> str:
            label, target = m.group(1), m.group(2)
            if not re.match(r"^[a-z]+:", target) and not target.startswith("#"):
                target = link_prefix + target
            return f'<a href="{html.escape(target)}">{label}</a>'

        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, html.escape(part, quote=False)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    aligns = ["right" if c.strip().endswith(":") and not c.strip().startswith(":") else ""
              for c in _cells(lines[1])] if len(lines) > 1 else []
    ths = "".join(f'<th scope="col">{inline(h)}</th>' for h in head)
    body = []
    for row in rows:
        tds = []
        for i, c in enumerate(row):
            attrs = []
            value = cell_value(c)
            if value is not None:
                attrs.append(f'data-v="{value:.9g}"')
            classes = [f"c-{cls}" for cls in [cell_class(c)] if cls]
            if len(c) > WRAP:  # a long list (commits, a front's steps) wraps rather than widen the table
                classes.append("wrap")
            if classes:
                attrs.append(f'class="{" ".join(classes)}"')
            if i < len(aligns) and aligns[i]:
                attrs.append(f'style="text-align:{aligns[i]}"')
            tds.append(f"<td{' ' + ' '.join(attrs) if attrs else ''}>{inline(c)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (f'<div class="table"><table class="sortable"><thead><tr>{ths}</tr></thead>'
            f"<tbody>\n{chr(10).join(body)}\n</tbody></table></div>")


def to_html(markdown: str, heading: int = 4) -> str:
    """HTML of a report body; `## x` becomes <h{heading}> (the item it belongs to has the heading above)."""
    out: list[str] = []
    lines = markdown.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            h = min(6, heading + max(0, level - 2))
            out.append(f"<h{h}>{inline(line.lstrip('#').strip())}</h{h}>")
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("|", "#", "- ")):
                para.append(lines[i].strip())
                i += 1
            text = " ".join(para)
            if len(text) > 2 and text.startswith("_") and text.endswith("_"):
                out.append(f"<p><em>{inline(text[1:-1])}</em></p>")
            else:
                out.append(f"<p>{inline(text)}</p>")
    return "\n".join(out)
