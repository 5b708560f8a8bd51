"""`archbench report`: rebuild the tables (Markdown + CSV) and plots (PNG) in results/ from stored rows.

Reads every row under <results>/raw/ (JSON Lines, bench/store.py) and every pytest-benchmark JSON
file under <results>/raw/pytest-benchmark/, and writes only into the top level of <results>/:

  scaling_<device>_<dtype>_b<batch>_d<d_model>_*  per device group: time per mode, fitted exponents,
                                                  crossovers, peak memory, state bytes, energy, utilisation
  retrieval_<device>_*                            best-lr accuracy grids and recall plots
  pytest_benchmark.{md,csv}                       pytest-benchmark runs
  README.md                                       an index of all of it, with a provenance summary

Output is deterministic (sorted rows, no timestamps, PNGs without the "Software" stamp), so running
twice changes no byte. Files an earlier run wrote that this run does not are deleted; the list lives
in <results>/.report-manifest. raw/ is never touched. Markdown shows human units and "n/a" for a
missing figure (never an invented number); CSV keeps raw SI values (seconds, bytes, joules), empty
when missing, and a failed cell's status ("oom", "timeout", "error", "skipped") in place of a value.

This module loads and normalises the rows, builds the index and the README headline, and writes
the files; the rest is split by job (each with its own glossary):
  report_format.py            number formatting, Markdown/CSV/PNG rendering, the collected output
  report_scaling.py           exponent fits, crossovers, scaling tables and plots
  report_retrieval.py         best-lr accuracy grids and plots
  report_pytest_benchmark.py  pytest-benchmark JSON files
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from archbench.bench.report_format import (
    NA,
    _markdown,
    _missing,
    _Outputs,
    _short_status,
    _slug,
    fmt_bytes,
    fmt_joules,
    fmt_pct,
    fmt_seconds,
)
from archbench.bench.report_pytest_benchmark import _pytest_benchmark
from archbench.bench.report_retrieval import RETRIEVAL_FIELDS, _retrieval
from archbench.bench.report_scaling import SCALING_FIELDS, UTIL_COLUMNS, _scaling, crossovers, fit_exponent
from archbench.bench.store import load_rows

# The report's public names, importable from here wherever they are implemented.
__all__ = ["MARK_END", "MARK_START", "crossovers", "fit_exponent", "fmt_bytes", "fmt_joules", "fmt_pct",
           "fmt_seconds", "write_report"]

MARK_START = "<!-- archbench:results:start -->"
MARK_END = "<!-- archbench:results:end -->"
MANIFEST = ".report-manifest"
NUMERIC_FIELDS = ("seq_len", "batch", "d_model", "time_median_s", "peak_mem_bytes", "state_bytes",
                  "energy_j_per_token", *UTIL_COLUMNS, "accuracy", "lr", "num_kv_pairs", "n_layer", "params",
                  "steps")


# -- row preparation -----------------------------------------------------------------------------
def _device_slugs(names: Iterable[str]) -> dict[str, str]:
    """Slug per device name; names whose slugs collide (truncation) get a stable suffix."""
    names = sorted(set(names))
    slugs = {n: _slug(n) for n in names}
    taken = list(slugs.values())
    # crc32, not hash(): hash() of a str is salted per process.
    return {n: f"{s}-{zlib.crc32(n.encode()):08x}" if taken.count(s) > 1 else s for n, s in slugs.items()}


def _normalise(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.reset_index(drop=True).copy()
    for col in ("kind", "status", "device_name", "dtype", "provenance", "arch_cfg",
                *SCALING_FIELDS, *RETRIEVAL_FIELDS):
        if col not in rows:
            rows[col] = None
    for col in NUMERIC_FIELDS:  # a stray string becomes NaN ("n/a"), not a TypeError in a comparison
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    rows["_order"] = np.arange(len(rows))  # load order: sorted files, then line order
    rows["status"] = rows["status"].map(lambda s: "unknown" if _missing(s) else str(s))
    prov_dev = rows["provenance"].map(lambda p: p.get("device_name") if isinstance(p, dict) else None)
    rows["device_name"] = [d if not _missing(d) else p if not _missing(p) else "unknown device"
                           for d, p in zip(rows["device_name"], prov_dev, strict=True)]
    rows["dtype"] = rows["dtype"].map(lambda s: "unknown" if _missing(s) else str(s))
    rows["backend"] = rows["backend"].map(lambda s: "default" if _missing(s) else str(s))
    return rows


# -- index, README markers, writing --------------------------------------------------------------
def _join(values: Iterable[Any]) -> str:
    vals = sorted({str(v) for v in values if not _missing(v)})
    return ", ".join(vals) if vals else NA


def _provenance(rows: pd.DataFrame) -> str:
    recs = []
    for dev, g in rows.groupby("device_name", sort=True):
        prov = [p if isinstance(p, dict) else {} for p in g["provenance"]]
        commits = {f"{str(p['git_commit'])[:12]}{'+dirty' if p.get('git_dirty') else ''}"
                   for p in prov if p.get("git_commit")}
        recs.append({"device": dev, "rows": str(len(g)),
                     **{k: _join(p.get(k) for p in prov) for k in ("torch", "cuda", "python")},
                     "archbench": _join(p.get("archbench_version", p.get("archbench")) for p in prov),
                     "git commits": _join(commits) if commits else "none recorded"})
    return _markdown(pd.DataFrame.from_records(recs))


def _index(out: _Outputs, rows: pd.DataFrame, bench_prov: list[str]) -> bytes:
    lines = ["# Results", "", "Generated by `archbench report` from the rows under `raw/`. Do not edit by "
             "hand; rerun `archbench report`.", ""]
    if len(rows):
        counts = rows.assign(s=rows["status"].map(_short_status)).groupby(["kind", "s"], dropna=False).size()
        summary = "; ".join(f"{kind}: " + ", ".join(f"{n} {s}" for (k, s), n in counts.items() if k == kind)
                            for kind in sorted({str(k) for k, _ in counts.index}))
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
    if len(rows) or bench_prov:
        lines += ["## Provenance", ""]
        if len(rows):
            lines += [_provenance(rows), ""]
        if bench_prov:
            lines += ["pytest-benchmark files:", "", *(f"- {p}" for p in bench_prov), ""]
    return ("\n".join(lines).rstrip("\n") + "\n").encode()


def _headline(out: _Outputs, link: str) -> str:
    if not out.headlines:
        return "_No results yet: run `archbench run SUITE`, then `archbench report --readme README.md`._"
    parts = [f"_Generated by `archbench report`; every table and plot: [{link}]({link})._"]
    parts += [f"#### {title}\n\n{table}" for title, table in out.headlines]
    return "\n\n".join(parts)


def _replace_markers(readme: Path, content: str) -> bool:
    """Put `content` between the markers, bytes outside them untouched; False if the markers are absent."""
    if not readme.is_file():
        return False
    text = readme.read_bytes().decode("utf-8")
    start = text.find(MARK_START)
    end = text.find(MARK_END, start + len(MARK_START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return False
    nl = "\r\n" if "\r\n" in text else "\n"
    new = text[: start + len(MARK_START)] + nl + content.replace("\n", nl) + nl + text[end:]
    if new != text:
        readme.write_bytes(new.encode("utf-8"))
    return True


def _write(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:  # unchanged files keep their mtime
        path.write_bytes(data)


def write_report(results_dir: Path, readme: Path | None = None) -> list[Path]:
    """Regenerate the tables, plots and index under `results_dir` from its raw/ rows.

    With `readme`, also refresh the headline tables between the archbench:results markers there.
    Returns every file this run produced (rewritten or already identical), sorted; the README last.
    """
    results_dir = Path(results_dir)
    raw = results_dir / "raw"
    rows = _normalise(load_rows(raw) if raw.is_dir() else pd.DataFrame())
    slugs = _device_slugs(rows["device_name"])
    out = _Outputs()
    _scaling(out, rows[rows["kind"] == "scaling"], slugs)
    _retrieval(out, rows[rows["kind"] == "retrieval"], slugs)
    bench_prov = _pytest_benchmark(out, raw / "pytest-benchmark")
    out.files["README.md"] = _index(out, rows, bench_prov)

    results_dir.mkdir(parents=True, exist_ok=True)
    manifest = results_dir / MANIFEST
    old = manifest.read_text("utf-8").split("\n") if manifest.is_file() else []
    for name in old:  # only plain names in results/ top level that an earlier run wrote
        stale = results_dir / name
        if name and name == stale.name and name not in ("raw", MANIFEST, *out.files) and stale.is_file():
            stale.unlink()
    for name, data in sorted(out.files.items()):
        _write(results_dir / name, data)
    _write(manifest, ("\n".join(sorted(out.files)) + "\n").encode())
    written = sorted([results_dir / n for n in out.files] + [manifest])
    if readme is not None:
        readme = Path(readme)
        index = (results_dir / "README.md").resolve()
        link = Path(os.path.relpath(index, readme.resolve().parent)).as_posix()
        if _replace_markers(readme, _headline(out, link)):
            written.append(readme)
    return written
