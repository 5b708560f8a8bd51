"""`archbench report` and its public API: tables and plots from stored rows.

    from archbench.bench.report import write_report, fmt_seconds, fit_exponent, crossovers
    write_report(Path("results"), readme=Path("README.md"))

One module per job:
  write.py             write_report: read rows, run each kind's tables, the index, SUMMARY.md, the
                       README's generated first screen
  frame.py             rows -> one DataFrame per kind, columns exactly the schema's; `require`
  scaling.py           exponent fits, crossovers, scaling tables and plots
  retrieval.py         best-lr accuracy grids, the lr sweep, plots against width, state bytes and lr
  cells.py             retrieval rows as cells: seeds averaged per lr, the best lr by mean, labels
  lengths.py           accuracy by test length (Mamba paper Table 11 layout) and by slice
  hybrid.py            the hybrid ratio/placement grid (R/A patterns of one depth)
  frontier.py          recall joined with the scaling rows of the same model: Pareto fronts per cost
  pytest_benchmark.py  pytest-benchmark JSON files
  format.py            the formatting API: fmt_seconds / fmt_bytes / fmt_joules / fmt_pct, cell_text,
                       markdown, csv_bytes
  plot.py              deterministic PNGs: panels, the legend outside them, units on the ticks
  palette.py           one colour and marker per model family, the same in every figure
  readable.py          assert_figure_readable: no legend over data, no text off the canvas or overlapping
  outputs.py           what one run writes, collected in memory
  site/                the results site (HTML pages of the same tables and figures; site/__init__.py)

A new kind's tables: a module here with a function (Outputs, frame, device slugs) -> None that reads
its columns through `frame.require`, registered in write.py's TABLES.
"""

from archbench.bench.report.format import (
    MISSING,
    NA,
    cell_raw,
    cell_text,
    csv_bytes,
    fmt_bytes,
    fmt_joules,
    fmt_pct,
    fmt_seconds,
    markdown,
)
from archbench.bench.report.scaling import crossovers, fit_exponent
from archbench.bench.report.write import (
    MARK_END,
    MARK_START,
    TABLES,
    ForeignFileError,
    ReadmeError,
    write_report,
)

__all__ = ["MARK_END", "MARK_START", "MISSING", "NA", "TABLES", "ForeignFileError", "ReadmeError", "cell_raw",
           "cell_text", "crossovers", "csv_bytes", "fit_exponent", "fmt_bytes", "fmt_joules", "fmt_pct",
           "fmt_seconds", "markdown", "write_report"]
