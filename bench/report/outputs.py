"""Everything one report run writes, collected in memory first (so files an earlier run wrote and this
one does not can be told apart and removed), with the index entries, the headline tables of
SUMMARY.md, the README's first screen, and what the results site shows of each table and figure (its
Markdown body, what a plot drew)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from archbench.bench.report.format import csv_bytes, markdown
from archbench.bench.report.plot import Drawn, PlotPng


@dataclass
class Outputs:
    files: dict[str, bytes] = field(default_factory=dict)  # name in results/ -> content
    index: list[tuple[str, str, str]] = field(default_factory=list)  # (section, file name, caption)
    headlines: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown) for SUMMARY.md
    frontier: list[tuple[str, str]] = field(default_factory=list)  # the recall–cost fronts, first in SUMMARY
    # the README's first screen, one per device: ((figures of cells on a front, all figures) behind it,
    # title, PNG name, markdown table); the README shows the one with the most
    headline: list[tuple[tuple[int, int], str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)  # table file name -> its Markdown body
    drawn: dict[str, Drawn] = field(default_factory=dict)  # figure file name -> what its plot drew

    def table(self, section: str, stem: str, caption: str, md: pd.DataFrame | str, csv: pd.DataFrame) -> str:
        """Write stem.md (formatted) and stem.csv (raw values); returns the markdown body."""
        body = md if isinstance(md, str) else markdown(md)
        self.files[f"{stem}.md"] = f"# {caption}\n\n{section}\n\n{body}\n".encode()
        self.files[f"{stem}.csv"] = csv_bytes(csv)
        self.index.append((section, f"{stem}.md", caption))
        self.bodies[f"{stem}.md"] = body
        return body

    def png(self, section: str, stem: str, caption: str, png: bytes) -> None:
        self.files[f"{stem}.png"] = bytes(png)
        if isinstance(png, PlotPng):  # a figure drawn some other way is shown on the site as its PNG
            self.drawn[f"{stem}.png"] = png.drawn
        self.index.append((section, f"{stem}.png", caption))
