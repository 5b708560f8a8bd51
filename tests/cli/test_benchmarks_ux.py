"""pytest-benchmark as its users expect: `archbench report --benchmarks PATH` reads a JSON file or a
folder of them (pytest-benchmark's own `.benchmarks/` store), and `pytest bench/` says before it runs
how many benchmarks it collected and that `--benchmark-compare` has nothing to compare against (the
warning pytest-benchmark gives is not filtered away)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def _benchmark_json(path: Path, name: str, node: str = "box") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "machine_info": {"node": node, "cpu": {"brand_raw": "Test CPU"}},
        "commit_info": {"id": "abcdef0123456789", "dirty": False},
        "benchmarks": [{"name": name, "group": "prefill n=256", "params": {"n": 256},
                        "stats": {"median": 0.0123, "min": 0.011, "max": 0.02, "rounds": 7}}]}))
    return path


def test_report_reads_benchmark_json_given_by_file_or_folder(cli, tmp_path) -> None:
    results = tmp_path / "results"
    (results / "raw").mkdir(parents=True)
    committed = _benchmark_json(results / "raw" / "pytest-benchmark" / "committed.json", "test_committed")
    own = _benchmark_json(tmp_path / "runs" / "bench.json", "test_from_json")
    store = tmp_path / ".benchmarks"  # --benchmark-autosave's layout: one folder per machine
    _benchmark_json(store / "Linux-CPython-3.12-64bit" / "0001_abc_20260101_000000.json", "test_autosaved")
    code, out, err = cli("report", "--results", str(results), "--benchmarks", str(own), "--benchmarks",
                         str(store), "--benchmarks", str(committed))
    assert code == 0, err
    table = (results / "pytest_benchmark.md").read_text()
    for name in ("test_committed", "test_from_json", "test_autosaved"):
        assert table.count(name) == 1, table  # the committed file, also given by path, counted once
    index = (results / "README.md").read_text()
    assert "`bench.json`" in index and "`0001_abc_20260101_000000.json`" in index


def test_report_without_benchmarks_reads_the_committed_folder_only(cli, tmp_path) -> None:
    results = tmp_path / "results"
    (results / "raw").mkdir(parents=True)
    _benchmark_json(results / "raw" / "pytest-benchmark" / "committed.json", "test_committed")
    _benchmark_json(tmp_path / ".benchmarks" / "m" / "0001.json", "test_elsewhere")
    assert cli("report", "--results", str(results))[0] == 0
    table = (results / "pytest_benchmark.md").read_text()
    assert "test_committed" in table and "test_elsewhere" not in table


def test_a_missing_benchmarks_path_is_one_line(cli, tmp_path) -> None:
    (tmp_path / "raw").mkdir()
    code, _, err = cli("report", "--results", str(tmp_path), "--benchmarks", str(tmp_path / "nope.json"))
    assert code == 2 and "--benchmarks" in err and "no such file or folder" in err
    assert len(err.strip().splitlines()) == 1


def test_pytest_bench_says_what_it_collected_and_that_compare_has_nothing(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "--collect-only", "-q",
         "-p", "no:cacheprovider", "-k", "test_train_step and mamba2", "--benchmark-compare",
         f"--benchmark-storage=file://{tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    assert "archbench: 2 benchmarks collected (2 in test_train_speed.py), 1 of them compiled" in out, out
    assert "A quick subset: pytest bench/ --benchmark-only -k" in out
    assert f"--benchmark-compare has nothing to compare against (no saved run in {tmp_path})" in out
    assert "Can't compare. No benchmark files in" in out  # pytest-benchmark's own warning, not filtered


def test_benchmarks_alone_make_a_report(cli, tmp_path) -> None:
    own = _benchmark_json(tmp_path / "bench.json", "test_from_json")
    code, _, err = cli("report", "--results", str(tmp_path / "report"), "--benchmarks", str(own))
    assert code == 0, err
    assert "test_from_json" in (tmp_path / "report" / "pytest_benchmark.md").read_text()
