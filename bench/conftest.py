"""pytest hooks for the benchmark files (`pytest bench/ --benchmark-only`), said before anything runs:

- how many benchmarks were collected, from which file, how many compile in their warm-up, and how to
  run a quick subset (`-k`): the whole set is every scaling model × mode × n plus every mixer's train
  step eager and compiled, and each warms up (torch.compile for the compiled ones) before its timed
  rounds, which makes the full run long;
- `--benchmark-compare` with no saved run to compare against: pytest-benchmark warns about it only in
  the warnings summary at the end, after the whole run, and exits 0.

Not shipped in the wheel (build_hooks.py), as the benchmark files are not.
"""

from __future__ import annotations

from collections import Counter

import pytest

QUICK = "pytest bench/ --benchmark-only -k 'mamba2 and prefill and 256 and not attn'"


def _benchmarks(items: list[pytest.Item]) -> list[pytest.Item]:
    return [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]


def _compiles(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("backend") == "compiled" or bool(params.get("compile"))


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    bench = getattr(config, "_benchmarksession", None)  # pytest-benchmark's state for this session
    items = _benchmarks(session.items)
    if reporter is None or not items or (bench is not None and bench.disabled):
        return
    files = Counter(i.path.name for i in items)
    compiled = sum(map(_compiles, items))
    per_file = ", ".join(f"{n} in {name}" for name, n in sorted(files.items()))
    of_them = f", {compiled} of them compiled (torch.compile) in their warm-up" if compiled else ""
    reporter.write_line(
        f"archbench: {len(items)} benchmark{'s' if len(items) > 1 else ''} collected ({per_file}){of_them}; "
        f"each warms up before its timed rounds, so the whole set runs long (README: Benchmarks). "
        f"A quick subset: {QUICK}", yellow=True, bold=True)
    if bench is not None and bench.compare and not bench.compared_mapping:
        reporter.write_line(
            f"archbench: --benchmark-compare has nothing to compare against (no saved run in "
            f"{bench.storage}); save one first with --benchmark-autosave or --benchmark-save=NAME",
            red=True, bold=True)
