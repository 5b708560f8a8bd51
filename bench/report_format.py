"""Shared plumbing for `archbench report`: number formatting, Markdown/CSV/PNG rendering, and the
in-memory collection of everything one report run writes.

Markdown cells are human text ("17.4 µs", "n/a", "oom"); CSV cells keep raw SI values, empty when
missing, and a failed cell's short status in place of a value. PNGs are rendered without pyplot and
without the "Software" stamp, so the same rows always give the same bytes.

Glossary
  NA       "n/a": the cell ran but has no figure (e.g. no energy counter readable)
  MISSING  "-": the cell was never run
  status   "ok", or why a cell failed ("oom", "timeout", "error: ...", "skipped")
  Series   one plotted line: (label, xs, ys, matplotlib style)
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from archbench.bench.store import slug as _slug  # noqa: F401  (re-exported for the report modules)

NA = "n/a"
MISSING = "-"  # a cell that was never run (as opposed to run and failed, or run without a figure)
MODE_ORDER = ("prefill", "train", "decode")


# -- formatting ----------------------------------------------------------------------------------
def _human(v: float, steps: Sequence[tuple[float, str]]) -> str:
    scale, unit = next(((s, u) for s, u in steps if abs(v) >= s), steps[-1])
    x = v / scale
    if unit == "B":
        return f"{int(v)} B"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2  # three significant figures
    return f"{x:.{digits}f} {unit}"


def fmt_seconds(v: float) -> str:
    return _human(v, ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")))


def fmt_bytes(v: float) -> str:
    return _human(v, ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")))


def fmt_joules(v: float) -> str:
    return _human(v, ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")))


def fmt_pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _mode_rank(mode: Any) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def _sorted(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    def key(s: pd.Series) -> pd.Series:
        return s.map(lambda m: _mode_rank(m)[0]) if s.name == "mode" else s

    return df.sort_values(cols, key=key, kind="stable").reset_index(drop=True)


def _markdown(df: pd.DataFrame) -> str:
    # disable_numparse: cells are already formatted text; tabulate must not re-round "0.950".
    return df.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def _csv_value(v: Any) -> Any:
    # Six significant figures is more than any timing here resolves, and drops repr noise (0.1 + 0.2).
    if isinstance(v, float):
        return None if math.isnan(v) else int(v) if v.is_integer() else float(f"{v:.6g}")
    return v


def _csv(df: pd.DataFrame) -> bytes:
    # Built column by column as object dtype: pandas would turn an int column with a gap back into floats.
    clean = pd.DataFrame({c: pd.Series([_csv_value(v) for v in df[c]], dtype=object) for c in df.columns},
                         columns=df.columns)
    return clean.to_csv(index=False, lineterminator="\n").encode("utf-8")


# -- collected output ----------------------------------------------------------------------------
@dataclass
class _Outputs:
    """Everything one run writes, built in memory first so stale files can be told apart."""

    files: dict[str, bytes] = field(default_factory=dict)  # name in results/ -> content
    index: list[tuple[str, str, str]] = field(default_factory=list)  # (section, file name, caption)
    headlines: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown) for the README
    notes: list[str] = field(default_factory=list)

    def table(self, section: str, stem: str, caption: str, md: pd.DataFrame | str, csv: pd.DataFrame) -> str:
        """Write stem.md (formatted) and stem.csv (raw values); returns the markdown body."""
        body = md if isinstance(md, str) else _markdown(md)
        self.files[f"{stem}.md"] = f"# {caption}\n\n{section}\n\n{body}\n".encode()
        self.files[f"{stem}.csv"] = _csv(csv)
        self.index.append((section, f"{stem}.md", caption))
        return body

    def png(self, section: str, stem: str, caption: str, png: bytes) -> None:
        self.files[f"{stem}.png"] = png
        self.index.append((section, f"{stem}.png", caption))


Series = tuple[str, Sequence[float], Sequence[float], dict]  # (label, xs, ys, matplotlib style)


def _plot(panels: list[tuple[str, list[Series]]], xlabel: str, ylabel: str, xscale: str = "log",
          yscale: str = "log") -> bytes:
    """PNG bytes of one subplot per panel. Deterministic: default style, no Software stamp."""
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg used for PNG

    with mpl.style.context("default"), mpl.rc_context({"svg.hashsalt": "archbench"}):
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig = Figure(figsize=(5.2 * ncols, 3.8 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()  # squeeze=False: always a 2-D array
        for ax, (title, series) in zip(axes, panels, strict=False):
            for label, xs, ys, style in series:
                ax.plot(xs, ys, label=label, **style)
            ax.set_xscale("log", base=2) if xscale == "log2" else ax.set_xscale(xscale)
            ax.set_yscale(yscale)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            if series:
                ax.legend(fontsize=7, loc="best")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        # Fixed margins rather than tight_layout: one draw fewer per figure, same bytes every run.
        fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.98, bottom=0.55 / fig.get_figheight(),
                            top=1 - 0.35 / fig.get_figheight(), wspace=0.3, hspace=0.45)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _styles(labels: Iterable[str]) -> dict[str, dict]:
    colors = [f"C{i}" for i in range(10)]
    return {lab: {"color": colors[i % 10], "marker": "os^Dv<>ph*"[i // 10 % 10]}
            for i, lab in enumerate(sorted(set(labels)))}


# -- row labels and cell values ------------------------------------------------------------------
def _short_status(status: str) -> str:
    return status.split(":", 1)[0].strip()  # "error: CUDA failure ..." -> "error"


def _arch_labels(df: pd.DataFrame, coords: list[str]) -> pd.Series:
    """arch, plus "(key=value)" for arch_cfg fields that differ between rows at the same coordinates.

    Two configs of one mixer in one grid (e.g. hybrid patterns) would otherwise collide. Fields that
    only follow the coordinates (d_model, or n_head derived from it) do not split the label.
    """
    cfg = df["arch_cfg"].map(lambda c: c if isinstance(c, dict) else {})
    labels = df["arch"].astype(str).copy()
    for arch, sub in df.groupby("arch", sort=True):
        sub_cfg = cfg[sub.index]
        varying = []
        for k in sorted({k for c in sub_cfg for k in c}):
            vals = sub_cfg.map(lambda c, k=k: json.dumps(c.get(k), sort_keys=True))
            if (vals.groupby([sub[c].astype(str) for c in coords]).nunique() > 1).any():
                varying.append(k)
        if varying:
            labels[sub.index] = [
                f"{arch} ({', '.join(f'{k}={c.get(k)}' for k in varying)})" for c in sub_cfg
            ]
    return labels


def _cell(status: str, value: Any, fmt: Callable[[Any], str]) -> str:
    if status != "ok":
        return _short_status(status)
    return NA if _missing(value) else fmt(value)


def _raw(status: str, value: Any) -> Any:
    if status != "ok":
        return _short_status(status)
    return None if _missing(value) else value


def _cells(g: pd.DataFrame, value: str, conv: Callable[[str, Any], Any]) -> list[Any]:
    return [conv(s, v) for s, v in zip(g["status"], g[value], strict=True)]
