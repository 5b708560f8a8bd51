"""Provenance: where a row came from — the code (git commit, dirty or not), versions, the machine.

Every row carries it, so a table can say which commit and torch measured it, and timings from two
machines never mix (the report groups them by `device_name`; recall, which is not the machine's, is
pooled over the machines of a device kind and each row still names its own: schema `place`).
`hostname` names the node that ran the cell: under the Ray executor each row's provenance is taken on
the worker that ran it, so a sweep over a cluster of unlike nodes records each row's own device and
host.
"""

from __future__ import annotations

import importlib
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy
import torch

from archbench.bench.measure import cpu_peak_method, device_name


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# What a row's figures depend on, relative to the checkout's top level.
CODE_PATHS = ("archs", "tasks", "bench", "pyproject.toml")


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """`{"git_commit", "git_dirty"}` of the checkout holding this package; None if there is none.

    The checkout must be the package's own (its top level holds bench/), so an install inside some
    other repository (a venv in a project) is not mistaken for archbench's commit. Dirty means the
    code that measures differs from the commit (CODE_PATHS): a sweep into the committed results/, or
    an edited README, would otherwise mark every row. A new untracked file there (a mixer) counts.
    """
    repo = repo or Path(__file__).resolve().parents[2]
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != repo.resolve():
        return {"git_commit": None, "git_dirty": None}
    status = _git(repo, "status", "--porcelain", "--", *CODE_PATHS)
    return {
        "git_commit": _git(repo, "rev-parse", "HEAD"),  # None before the first commit
        "git_dirty": None if status is None else bool(status),
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _plugin_versions() -> dict[str, dict[str, str]]:
    plugins = {}
    registries = (("archs", "archbench.archs", "MIXERS"), ("tasks", "archbench.tasks", "TASKS"),
                  ("experiments", "archbench.bench.experiments", "EXPERIMENTS"))
    for kind, module, name in registries:
        try:
            registry = getattr(importlib.import_module(module), name)
            plugins[kind] = registry.plugin_versions()
        except (ImportError, AttributeError):  # that registry is not built yet
            pass
    return plugins


def provenance(device: str, dtype: str) -> dict[str, Any]:
    """Everything needed to tell where a row came from and to rerun it: code, versions, machine."""
    return {
        **git_info(),
        "archbench_version": _version("archbench"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(dtype),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_peak_method": cpu_peak_method(),
        "plugins": _plugin_versions(),
        **moment(),
    }


def moment() -> dict[str, Any]:
    """The fields of a provenance that change from row to row: when the row was written, and the
    machine's 1-minute load average then (None where the OS has none), so a timing is read beside
    what else ran. A sweep takes the rest of its provenance once and these per row."""
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_1m": load}
