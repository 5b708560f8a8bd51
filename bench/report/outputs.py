"""Everything one report run writes, collected in memory first (so files an earlier run wrote and this
one does not can be told apart and removed), with the index entries, the headline tables of
SUMMARY.md and the README's first screen."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from archbench.bench.report.format import csv_bytes, markdown


@dataclass
class Outputs:
    files: dict[str, bytes] = field(default_factory=dict)  # name in results/ -> content
    index: list[tuple[str, str, str]] = field(default_factory=list)  # (section, file name, caption)
    headlines: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown) for SUMMARY.md
    frontier: list[tuple[str, str]] = field(default_factory=list)  # the recall–cost fronts, first in SUMMARY
    # the README's first screen, one per device: (figures behind it, title, PNG name, markdown table)
    headline: list[tuple[int, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, section: str, stem: str, caption: str, md: pd.DataFrame | str, csv: pd.DataFrame) -> str:
        """Write stem.md (formatted) and stem.csv (raw values); returns the markdown body."""
        body = md if isinstance(md, str) else markdown(md)
        self.files[f"{stem}.md"] = f"# {caption}\n\n{section}\n\n{body}\n".encode()
        self.files[f"{stem}.csv"] = csv_bytes(csv)
        self.index.append((section, f"{stem}.md", caption))
        return body

    def png(self, section: str, stem: str, caption: str, png: bytes) -> None:
        self.files[f"{stem}.png"] = png
        self.index.append((section, f"{stem}.png", caption))
