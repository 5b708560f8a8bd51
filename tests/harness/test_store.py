"""The JSON Lines row store (bench/runs/store.py) and provenance: round trip, torn tails, corruption,
resume keys, git state; `write_atomic`, which writes every other file."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from archbench.bench.runs.provenance import git_info, provenance
from archbench.bench.runs.store import CorruptResultError, RowStore, canonical_json, write_atomic

ROWS = [
    {"arch": "attention", "n": 128, "time_s": 0.5, "shape": [1, 2]},
    {"arch": "mamba", "n": 128, "time_s": 0.25, "extra": {"b": 1, "a": None}},
    {"arch": "mamba", "n": 256, "time_s": None, "status": "oom"},
]


def _store(tmp_path: Path, rows: list[dict] = ROWS) -> RowStore:
    store = RowStore(tmp_path / "deep" / "dir" / "rows.jsonl")  # parents made on first append
    for row in rows:
        store.append(row)
    return store


def test_round_trip(tmp_path: Path) -> None:
    assert RowStore(tmp_path / "missing.jsonl").rows() == []
    store = _store(tmp_path)
    assert store.rows() == ROWS
    assert store.path.read_text().count("\n") == len(ROWS)


def test_append_converts_numpy_and_refuses_nan(tmp_path: Path) -> None:
    store = _store(tmp_path, [{"n": np.int64(3), "t": np.float32(0.5), "v": np.arange(2)}])
    assert store.rows() == [{"n": 3, "t": 0.5, "v": [0, 1]}]
    with pytest.raises(ValueError, match="None for a missing figure"):
        store.append({"t": float("nan")})
    assert len(store.rows()) == 1  # nothing half-written


def test_truncated_last_line_warns_and_is_skipped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.path.open("ab") as f:
        f.write(b'{"arch": "rwkv", "n": 5')  # a run killed mid-write
    with pytest.warns(UserWarning, match=r"rows\.jsonl:4"):
        assert store.rows() == ROWS


def test_corrupt_middle_line_raises_with_line_number(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lines = store.path.read_text().splitlines()
    lines[1] = lines[1][:10]
    store.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptResultError, match=r"rows\.jsonl:2") as err:
        store.rows()
    assert "\n" not in str(err.value)


def test_non_object_line_is_corrupt(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.path.write_text("[1, 2]\n" + store.path.read_text())
    with pytest.raises(CorruptResultError, match=r":1"):
        store.rows()


def test_append_after_truncated_tail_stays_parseable(tmp_path: Path) -> None:
    store = _store(tmp_path, ROWS[:1])
    with store.path.open("ab") as f:
        f.write(b'{"arch": "rwk')  # killed mid-write: this cell never finished
    with pytest.warns(UserWarning, match=r"rows\.jsonl:2"):
        store.append(ROWS[1])
    store.append(ROWS[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line left anywhere
        assert store.rows() == ROWS


def test_append_after_whole_row_without_newline_keeps_it(tmp_path: Path) -> None:
    store = _store(tmp_path, ROWS[:1])
    with store.path.open("ab") as f:
        f.write(json.dumps(ROWS[1]).encode())  # e.g. a hand-edited file
    store.append(ROWS[2])
    assert store.rows() == ROWS


def test_canonical_json_is_stable() -> None:
    # JSON-stable: tuples equal lists, dict order and numpy types do not matter
    assert canonical_json({"n": np.int64(256)}) == canonical_json({"n": 256})
    assert canonical_json({"shape": (1, 2)}) == canonical_json({"shape": [1, 2]})
    assert canonical_json({"e": {"b": 1, "a": None}}) == canonical_json({"e": {"a": None, "b": 1}})


def test_numbered_rows_name_their_lines(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.path.write_text("\n" + store.path.read_text())  # a blank line is skipped but still counted
    assert [n for n, _ in store.numbered_rows()] == [2, 3, 4]


def test_provenance_keys() -> None:
    prov = provenance("cpu", "float32")
    required = {
        "git_commit", "git_dirty", "archbench_version", "python", "torch", "cuda", "numpy",
        "device", "device_name", "dtype", "cpu_count", "torch_threads", "timestamp", "load_1m", "plugins",
    }
    assert required <= prov.keys()
    assert prov["device"] == "cpu" and prov["dtype"] == "float32" and prov["device_name"]
    assert prov["timestamp"].endswith("+00:00")
    json.dumps(prov)  # storable as is


def test_git_dirty_means_the_measuring_code_changed(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "bench").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "bench" / "run.py").write_text("x = 1\n")
    (tmp_path / "results" / "rows.jsonl").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_info(tmp_path)["git_dirty"] is False
    (tmp_path / "results" / "rows.jsonl").write_text("{}\n{}\n")  # a sweep appending to committed rows
    assert git_info(tmp_path)["git_dirty"] is False
    (tmp_path / "bench" / "run.py").write_text("x = 2\n")
    assert git_info(tmp_path)["git_dirty"] is True
    git("checkout", "-q", "--", "bench")
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "newmix.py").write_text("\n")  # an uncommitted mixer changes what is measured
    assert git_info(tmp_path)["git_dirty"] is True


def test_write_atomic_replaces_the_file_a_link_names_and_keeps_its_mode(tmp_path: Path) -> None:
    real = tmp_path / "docs" / "README.md"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "README.md"
    link.symlink_to(real)
    write_atomic(link, b"new\n")
    assert link.is_symlink() and real.read_text() == "new\n" and (real.stat().st_mode & 0o777) == 0o640
    write_atomic(tmp_path / "fresh.md", b"x")
    assert (tmp_path / "fresh.md").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "README.md", "docs", "fresh.md"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
