"""`archbench report`: rebuild the tables (Markdown + CSV) and plots (PNG) in results/ from stored rows.

Reads every row under <results>/raw/ (typed rows, bench/runs/schema.py: a row that does not fit the
schema stops the report with its file and line) and every pytest-benchmark JSON file under
<results>/raw/pytest-benchmark/ and in `benchmarks` (files or folders, `--benchmarks`), and writes only
into the top level of <results>/:

  scaling_<device>_<dtype>_b<batch>_L<depth>_d<d_model>_mlp<ratio>_*   per group of one shape: time per
                      mode, fitted exponents, crossovers, peak memory, state bytes, energy, utilisation
  retrieval_<device>_*      best-lr accuracy grids (mean over seeds), the lr sweep, recall plots,
                            accuracy by test length and slice, the hybrid ratio/placement grid
  frontier_<device>_<dtype>_*  recall joined with the scaling rows of the same model: one chart and one
                            table of the Pareto front per cost measure (bench/report/frontier.py)
  frontier_<device>_grid    the frontier grid by part: cells stored, the time they took and the load
                            then, an estimate for the rest (bench/report/grid.py)
  generation_<device>_*     per group of one shape, P, G and budget: the largest batch within the
                            budget, tokens/s per batch, throughput and memory against batch
  pytest_benchmark.{md,csv} pytest-benchmark runs
  peer_<file>               a peer project's own training run on archbench's data (raw/peer/*.json)
                            beside archbench's runs of the same recipe (bench/report/peer.py)
  SUMMARY.md                the headline: the recall–cost figure and table, the fronts, and one
                            headline table per group (prefill time, exponents, decode, MQAR accuracy,
                            the largest batch within a memory budget), each linking its full table
  README.md                 an index of all of it, with a provenance summary
  site/                     the results site: HTML pages of the same tables (sortable, filterable)
                            and figures (interactive charts), opened from the file system
                            (bench/report/site/)

Output is deterministic (sorted rows, no timestamps, PNGs without the "Software" stamp), so running
twice changes no byte. Files an earlier run wrote that this run does not are deleted; the list lives
in <results>/.report-manifest. raw/ is never touched, nor a file in site/ the report did not write
(the browser test's screenshots). Markdown shows human units and "n/a" for a
missing figure (never an invented number); CSV keeps raw SI values (seconds, bytes, joules), empty
when missing, and a failed cell's status ("oom", "timeout", "error", "skipped") in place of a value.

Only archbench's own files are ever replaced: a file in the way that the manifest does not list (a
README.md of the user's in a folder given as --results) stops the report before it writes anything
(`ForeignFileError`), unless it already holds exactly what would be written. Every file, the README
of --readme included, is replaced whole or not at all (`write_atomic`: a temporary file, fsync,
rename), so a full disk leaves each one as it was; the error names the file.

Each experiment kind's tables live in one module (`TABLES`); a registered kind without one (a plugin's)
is counted in the index and named in a note, never dropped silently. A row of a kind or schema this
archbench does not know stops the report with its file, line and kind (bench/runs/schema.py): its
cells cannot be read, so no table could say what it holds.

`--readme PATH` must name a file holding both archbench:results markers; otherwise the report stops
before writing anything (`ReadmeError`), rather than refresh nothing without a word. Between them goes
a small first screen: the headline recall–cost figure, one short table (each family at its defaults,
recall and cost at the headline task point) and the links to SUMMARY.md and the index — the rest of the
generated tables live in results/, never in the README.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from archbench.bench.report.cells import prepare
from archbench.bench.report.format import NA, is_missing, markdown, short_status, slug
from archbench.bench.report.frame import frame
from archbench.bench.report.frontier import frontier_tables
from archbench.bench.report.generation import generation_tables
from archbench.bench.report.grid import grid_tables
from archbench.bench.report.outputs import Outputs
from archbench.bench.report.peer import peer_tables
from archbench.bench.report.pytest_benchmark import pytest_benchmark_tables
from archbench.bench.report.retrieval import retrieval_tables
from archbench.bench.report.scaling import scaling_tables
from archbench.bench.report.site import FOLDER as SITE
from archbench.bench.report.site import site_files
from archbench.bench.runs.schema import Row, read_rows
from archbench.bench.runs.store import write_atomic

MARK_START = "<!-- archbench:results:start -->"
MARK_END = "<!-- archbench:results:end -->"
MANIFEST = ".report-manifest"
SUMMARY = "SUMMARY.md"


class ReadmeError(ValueError):
    """The README to refresh is missing, unreadable or has no archbench:results markers."""


class ForeignFileError(ValueError):
    """A file the report would replace was not written by archbench (not in the manifest)."""

# experiment kind -> the function writing its tables: (outputs, that kind's frame, device slugs)
TABLES: dict[str, Callable[[Outputs, pd.DataFrame, dict[str, str]], None]] = {
    "scaling": scaling_tables,
    "retrieval": retrieval_tables,
    "generation": generation_tables,
}


def _device_slugs(names: Iterable[str]) -> dict[str, str]:
    """Slug per device name; names whose slugs collide (truncation) get a stable suffix."""
    names = sorted(set(names))
    slugs = {n: slug(n) for n in names}
    taken = list(slugs.values())
    # crc32, not hash(): hash() of a str is salted per process.
    return {n: f"{s}-{zlib.crc32(n.encode()):08x}" if taken.count(s) > 1 else s for n, s in slugs.items()}


# -- index, README markers, writing --------------------------------------------------------------
def _join(values: Iterable[Any]) -> str:
    vals = sorted({str(v) for v in values if not is_missing(v)})
    return ", ".join(vals) if vals else NA


def _provenance(rows: list[Row]) -> str:
    recs = []
    for dev in sorted({r.device_name for r in rows}):
        prov = [r.provenance for r in rows if r.device_name == dev]
        commits = {f"{str(p['git_commit'])[:12]}{'+dirty' if p.get('git_dirty') else ''}"
                   for p in prov if p.get("git_commit")}
        recs.append({"device": dev, "rows": str(len(prov)),
                     **{k: _join(p.get(k) for p in prov) for k in ("torch", "cuda", "python")},
                     "archbench": _join(p.get("archbench_version", p.get("archbench")) for p in prov),
                     "git commits": _join(commits) if commits else "none recorded"})
    return markdown(pd.DataFrame.from_records(recs))


def _index(out: Outputs, rows: list[Row], bench_prov: list[str]) -> bytes:
    lines = ["# Results", "", "Generated by `archbench report` from the rows under `raw/`. Do not edit by "
             "hand; rerun `archbench report`.", "",
             f"The headline figure and tables: [{SUMMARY}]({SUMMARY}). Browse everything as a site: "
             f"[{SITE}/index.html]({SITE}/index.html) (open it in a browser; no server needed).", ""]
    if rows:
        counts = Counter((r.kind, short_status(r.status)) for r in rows)
        summary = "; ".join(f"{kind}: " + ", ".join(f"{n} {s}" for (k, s), n in sorted(counts.items())
                                                   if k == kind)
                            for kind in sorted({r.kind for r in rows}))
        lines += [f"{len(rows)} rows ({summary}).", ""]
    elif not out.index:
        lines += ["No result rows yet: run `archbench run SUITE`, then `archbench report`.", ""]
    lines += [*(f"Note: {n}" for n in out.notes), *([""] if out.notes else [])]
    sections = list(dict.fromkeys(s for s, _, _ in out.index))  # in the order they were generated
    for sec in sections:
        lines += [f"## {sec}", ""]
        for s, name, caption in out.index:
            if s == sec:
                csv = name.removesuffix(".md") + ".csv"
                extra = f" ([csv]({csv}))" if name.endswith(".md") and csv in out.files else ""
                lines.append(f"- [{name}]({name}){extra} — {caption}")
        lines.append("")
    if rows or bench_prov:
        lines += ["## Provenance", ""]
        if rows:
            lines += [_provenance(rows), ""]
        if bench_prov:
            lines += ["pytest-benchmark files:", "", *(f"- {p}" for p in bench_prov), ""]
    return ("\n".join(lines).rstrip("\n") + "\n").encode()


def _summary(out: Outputs) -> bytes:
    """SUMMARY.md: the headline figure and table, the recall–cost fronts, then every headline table."""
    lines = ["# Headline results", "", "Generated by `archbench report` from the rows under `raw/`; every "
             "table and plot is listed in [README.md](README.md). Each section's full tables (every model, "
             "every length) are there too.", ""]
    if not (out.headline or out.frontier or out.headlines):
        lines += ["No result rows yet: run `archbench run SUITE`, then `archbench report`.", ""]
    for _, title, png, table in sorted(out.headline, key=lambda h: h[1]):
        lines += [f"## {title}", "", f"![recall against cost, {title}]({png})", "", table, "",
                  f"_{HEADLINE_NOTE}_", ""]
    for heading, body in [*out.frontier, *out.headlines]:
        lines += [f"## {heading}", "", body, ""]
    return ("\n".join(lines).rstrip("\n") + "\n").encode()


HEADLINE_NOTE = ("recall: held-out accuracy at the best of the lrs swept, mean over seeds; cost measured on "
                 "the same model at batch 1. Marks: ▭ flat above chance, ↗ still rising, ⊘ on the "
                 "answer-prior plateau (did not learn at its lr and budget), ± seeds of different classes; "
                 "unmarked: learned")


def _readme_block(out: Outputs, link: str) -> str:
    """The README's generated first screen: the headline figure and its table, with where the rest is."""
    where = (f"every table and plot: [{link}/README.md]({link}/README.md); the headline tables: "
             f"[{link}/{SUMMARY}]({link}/{SUMMARY})")
    if not out.headline:
        return ("_No headline yet: it needs retrieval rows and scaling rows of the same models (`archbench "
                f"run frontier`), then `archbench report --readme README.md`. Generated so far: {where}._")
    _, title, png, table = max(out.headline, key=lambda h: (h[0], h[1]))
    return (f"![Recall against state bytes and decode time per token, {title}]({link}/{png})\n\n"
            f"**{title}** (generated by `archbench report`):\n\n{table}\n\n_{HEADLINE_NOTE}. More: {where}._")


def _marked(readme: Path, mark_start: str = MARK_START, mark_end: str = MARK_END) -> tuple[str, int, int]:
    """The README's text and where its start and end markers are; ReadmeError if it has none."""
    if not readme.is_file():
        raise ReadmeError(f"--readme {readme}: no such file; give the README whose results tables to refresh")
    try:
        text = readme.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadmeError(f"--readme {readme}: cannot read it as UTF-8 text ({exc})") from None
    start = text.find(mark_start)
    end = text.find(mark_end, start + len(mark_start)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ReadmeError(f"--readme {readme} has no {mark_start} ... {mark_end} markers; put both lines "
                          "where the results tables go")
    return text, start, end


def _replace_markers(readme: Path, content: str, mark_start: str = MARK_START,
                     mark_end: str = MARK_END) -> None:
    """Put `content` between the markers, bytes outside them untouched."""
    text, start, end = _marked(readme, mark_start, mark_end)
    nl = "\r\n" if "\r\n" in text else "\n"
    new = text[: start + len(mark_start)] + nl + content.replace("\n", nl) + nl + text[end:]
    if new != text:
        write_atomic(readme, new.encode("utf-8"))


def _same(path: Path, data: bytes) -> bool:
    """Whether `path` is a regular file holding `data` (not opened otherwise: a FIFO would block)."""
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def _write(path: Path, data: bytes) -> None:
    if not _same(path, data):  # unchanged files keep their mtime
        write_atomic(path, data)  # a full disk leaves the old file; the error names this one


def _ours(name: str) -> bool:
    """Whether a manifest line names a file the report may replace or delete: a plain name in the
    results folder, or one in its site folder — never raw/, never a path that climbs out."""
    parts = name.split("/")
    plain = all(p and p not in (".", "..") and "\\" not in p for p in parts)
    return plain and (len(parts) == 1 or (len(parts) == 2 and parts[0] == SITE))


def _foreign(results_dir: Path, files: dict[str, bytes], owned: set[str]) -> None:
    """Refuse, before anything is written, to replace a file archbench did not write."""
    theirs = [results_dir / name for name, data in sorted(files.items()) if name not in owned
              and os.path.lexists(results_dir / name) and not _same(results_dir / name, data)]
    if theirs:
        more = f" (and {', '.join(p.name for p in theirs[1:])})" if len(theirs) > 1 else ""
        raise ForeignFileError(f"{theirs[0]}{more} was not written by archbench report (not listed in "
                               f"{results_dir / MANIFEST}); it is left as it is: move it away or give "
                               "another --results")


def write_report(results_dir: Path, readme: Path | None = None,
                 benchmarks: Iterable[Path] = ()) -> list[Path]:
    """Regenerate the tables, plots and index under `results_dir` from its raw/ rows.

    With `readme`, also refresh the first screen between the archbench:results markers there; with
    `benchmarks`, also read those pytest-benchmark JSON files (or every one under those folders).
    Returns every file this run produced (rewritten or already identical), sorted; the README last.
    """
    results_dir = Path(results_dir)
    if readme is not None:
        _marked(Path(readme))  # a README that cannot be refreshed stops the report before it writes
    raw = results_dir / "raw"
    rows = read_rows(raw) if raw.is_dir() else []
    slugs = _device_slugs(name for r in rows for name in (r.device_name, r.place))
    out = Outputs()
    frames = {kind: frame(rows, kind) for kind in sorted({r.kind for r in rows}) if kind in TABLES}
    for kind in sorted({r.kind for r in rows}):
        if kind in TABLES:
            TABLES[kind](out, frames[kind], slugs)
        else:
            n = sum(r.kind == kind for r in rows)
            out.notes.append(f"{n} row(s) of kind {kind!r}: bench/report/ has no tables for this kind yet.")
    if "retrieval" in frames and "scaling" in frames:  # the one table that joins two kinds
        frontier_tables(out, frames["retrieval"], frames["scaling"], slugs)
    grid_tables(out, frames, slugs, raw)
    peer_tables(out, prepare(frames["retrieval"]) if "retrieval" in frames else pd.DataFrame(), raw / "peer")
    bench_prov = pytest_benchmark_tables(out, raw / "pytest-benchmark", benchmarks)
    out.files[SUMMARY] = _summary(out)
    out.files["README.md"] = _index(out, rows, bench_prov)
    out.files.update(site_files(out, rows, bench_prov, methods=(results_dir / "METHODS.md").is_file()))

    manifest = results_dir / MANIFEST
    old = manifest.read_text("utf-8").split("\n") if manifest.is_file() else []
    _foreign(results_dir, out.files, set(old))
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in old:  # only files in results/ (or its site/) that an earlier run wrote
        stale = results_dir / name
        if _ours(name) and name not in ("raw", MANIFEST, *out.files) and stale.is_file():
            stale.unlink()
    for name, data in sorted(out.files.items()):
        (results_dir / name).parent.mkdir(exist_ok=True)  # site/, made when its first file is written
        _write(results_dir / name, data)
    _write(manifest, ("\n".join(sorted(out.files)) + "\n").encode())
    written = sorted([results_dir / n for n in out.files] + [manifest])
    if readme is not None:
        readme = Path(readme)
        link = Path(os.path.relpath(results_dir.resolve(), readme.resolve().parent)).as_posix()
        _replace_markers(readme, _readme_block(out, link))
        written.append(readme)
    return written
