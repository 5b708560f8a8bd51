"""Faults a benchmark people cite must survive: a full disk or the file-size limit, two runs
on one results folder, an `--out` that cannot hold rows, a damaged complete last row, a plugin calling
`sys.exit()`, a Ctrl-C while torch imports, rows that do not fit the schema, a `--readme` without
markers, a plugin that meddles with torch's settings or Ctrl-C as it is imported. Each ends in one
line and the right exit status, nothing lost, nothing duplicated, no traceback.

The full-disk cases run on a real 64 KiB tmpfs where this process may mount one (root), under
RLIMIT_FSIZE in a child process (SIGXFSZ ignored, so the write fails with EFBIG), and with `os.write`
made to fall short.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from helpers import ROOT, default_stop_signals
from helpers.disk import fill
from helpers.linear_attention_fixture import LinearAttention
from helpers.runs import RESULT, scaling_cells, small_device_peaks

from archbench.archs import MIXERS
from archbench.archs.registry import Registry
from archbench.bench.cli import main
from archbench.bench.experiments import EXPERIMENTS, Experiment
from archbench.bench.experiments.scaling import Scaling
from archbench.bench.report import write_report
from archbench.bench.runs import loop, store
from archbench.bench.runs.schema import Row, read_rows
from archbench.bench.runs.store import (
    CorruptResultError,
    RowStore,
    RowWriteError,
    RunLock,
    StoreUnusableError,
)

ROW = {"kind": "test", "payload": "x" * 200}
RUN = ["run", "scaling", "--models", "attention", "--depth", "1", "--modes", "prefill", "--d-model", "16"]


def fake_scaling(monkeypatch) -> list[int]:
    """Scaling cells that return a result at once; the lengths they ran for."""
    calls: list[int] = []

    def run(cls, spec, budget_s, progress=None):
        calls.append(spec.seq_len)
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    return calls


def one_error_line(err: str) -> str:
    """The one error line of a command's stderr (a progress bar may precede it); no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def rows_read_cleanly(path: Path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line left behind either
        rows = RowStore(path).rows()
    assert not path.exists() or path.read_bytes().endswith(b"\n") or path.stat().st_size == 0
    return rows


# -- row writes are checked end to end ---------------------------------------------------------------
def disk_full_after(monkeypatch, rows: int) -> None:
    """`os.write` as on a disk with room for `rows` more writes: then half a line, then ENOSPC."""
    real_write, left = os.write, [rows]

    def write(fd, data):
        left[0] -= 1
        if left[0] >= 0:
            return real_write(fd, data)
        if left[0] == -1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a short write: the disk just filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", write)


def test_a_short_write_is_an_error_and_the_partial_row_is_cut_back(tmp_path, monkeypatch) -> None:
    rows = RowStore(tmp_path / "rows.jsonl")
    rows.append(ROW)
    disk_full_after(monkeypatch, 0)
    with pytest.raises(RowWriteError, match="No space left on device") as err:
        rows.append({**ROW, "n": 2})
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    assert rows_read_cleanly(rows.path) == [ROW]


def test_a_short_write_that_can_go_on_completes_the_row(tmp_path, monkeypatch) -> None:
    real_write = os.write
    monkeypatch.setattr(store.os, "write", lambda fd, data: real_write(fd, bytes(data[:50])))
    rows = RowStore(tmp_path / "rows.jsonl")
    rows.append(ROW)
    rows.append({**ROW, "n": 2})
    monkeypatch.undo()
    assert rows_read_cleanly(rows.path) == [ROW, {**ROW, "n": 2}]


def test_enospc_on_a_real_full_disk_keeps_every_row_written(tiny_disk) -> None:
    rows = RowStore(tiny_disk / "raw" / "rows.jsonl")
    written = 0
    with pytest.raises(RowWriteError, match="No space left on device"):
        for written in range(10_000):  # noqa: B007 - the count is the point
            rows.append({**ROW, "n": written})
    assert [r["n"] for r in rows_read_cleanly(rows.path)] == list(range(written))
    assert written > 10


FSIZE_CHILD = textwrap.dedent("""
    import resource, signal, sys
    from archbench.bench.runs.store import RowStore, RowWriteError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that the write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    store, n = RowStore(sys.argv[1]), 0
    try:
        while True:
            store.append({"kind": "test", "payload": "x" * 200, "n": n})
            n += 1
    except RowWriteError as exc:
        print(n, exc)
""")


def test_the_file_size_limit_keeps_every_row_written(tmp_path) -> None:
    path = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(path), "5000"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    n, message = done.stdout.split(" ", 1)
    assert "File too large" in message  # EFBIG
    assert [r["n"] for r in rows_read_cleanly(path)] == list(range(int(n)))
    assert 10 < int(n) and path.stat().st_size <= 5000


def test_a_sweep_stops_at_a_full_disk_with_one_line_and_keeps_its_rows(tiny_disk, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    fill(tiny_disk, leave=8192)  # room for a few rows
    lens = ",".join(str(16 + i) for i in range(40))
    code, _, err = cli(*RUN, "--lens", lens, "--out", str(tiny_disk))
    line = one_error_line(err)
    assert code == 1 and "No space left on device" in line and "rerun the same command to resume" in line
    stored = [json.loads(x)["spec"]["seq_len"] for x in read_lines(tiny_disk)]
    assert 1 <= len(stored) < 40 and calls == stored + [calls[-1]]  # the sweep stopped at the failed row
    assert len(read_rows(tiny_disk / "raw")) == len(stored)  # every row before it intact and readable


def test_a_sweep_stops_when_os_write_falls_short(tmp_path, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    disk_full_after(monkeypatch, 2)  # two rows fit
    code, _, err = cli(*RUN, "--lens", "16,32,64,128", "--out", str(tmp_path))
    line = one_error_line(err)
    assert code == 1 and "No space left on device" in line
    assert calls == [16, 32, 64] and [r.spec.seq_len for r in read_rows(tmp_path / "raw")] == [16, 32]


def test_a_disk_already_full_is_one_line_before_any_cell(tiny_disk, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    (tiny_disk / "raw").mkdir()
    fill(tiny_disk, leave=0)
    code, _, err = cli(*RUN, "--lens", "16", "--out", str(tiny_disk))
    line = one_error_line(err)
    assert code == 1 and "No space left on device" in line and calls == []


def read_lines(out: Path) -> list[str]:
    return [line for p in sorted((out / "raw").glob("*.jsonl")) for line in p.read_text().splitlines()]


# -- an --out that cannot hold rows is refused before anything runs ----------------------------------------
@pytest.mark.parametrize("make, expected", [
    (lambda out: out.write_text("a file"), "is a file, not a folder"),
    (lambda out: (out.mkdir(), (out / "raw").write_text("a file")), "raw is a file, not a folder"),
])
def test_an_out_that_is_not_a_folder_is_refused_before_any_cell(tmp_path, cli, monkeypatch, make,
                                                                expected) -> None:
    calls = fake_scaling(monkeypatch)
    out = tmp_path / "out"
    make(out)
    code, _, err = cli(*RUN, "--lens", "16", "--out", str(out))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1 and calls == []


def test_a_read_only_out_is_refused_before_any_cell(tmp_path, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through chmod: a read-only mount is what refuses root
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)],
                              capture_output=True)
        if done.returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        out.chmod(0o555)
    try:
        code, _, err = cli(*RUN, "--lens", "16", "--out", str(out))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(out)], check=False)
        out.chmod(0o755)
    assert code == 2 and "cannot write rows under" in err and "writable --out" in err
    assert len(err.strip().splitlines()) == 1 and calls == []


# -- one writer per row store ------------------------------------------------------------------------------
HOLDER = "import sys; from archbench.bench.runs.store import RunLock; RunLock(sys.argv[1]).acquire(); " \
         "print('locked', flush=True); sys.stdin.read()"


def test_a_second_run_on_the_same_out_is_refused_naming_the_first(tmp_path, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli(*RUN, "--lens", "16,32", "--out", str(tmp_path))
        assert code == 2 and f"another archbench run (pid {holder.pid}) is writing rows to" in err
        assert len(err.strip().splitlines()) == 1 and calls == []
        with pytest.raises(StoreUnusableError, match=f"pid {holder.pid}"):  # the loop itself refuses too
            loop.run_cells(scaling_cells((16,)), tmp_path)
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, no stale lock file blocks the next run
        holder.wait()
    assert main([*RUN, "--lens", "16,32", "--out", str(tmp_path)]) == 0
    assert calls == [16, 32] and len(read_lines(tmp_path)) == 2  # each cell once


def test_the_lock_is_held_for_the_whole_run(tmp_path, monkeypatch) -> None:
    seen = []

    def run(cls, spec, budget_s, progress=None):  # while a cell runs, the store is taken
        with pytest.raises(StoreUnusableError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
        seen.append(spec.seq_len)
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    loop.run_cells(scaling_cells((16, 32)), tmp_path)
    assert seen == [16, 32]
    RunLock(tmp_path).acquire().release()  # and released after it


# -- every row read is validated ---------------------------------------------------------------------------
def test_a_complete_but_damaged_last_row_is_an_error_not_a_torn_write(tmp_path, cli, monkeypatch) -> None:
    calls = fake_scaling(monkeypatch)
    assert cli(*RUN, "--lens", "16,32", "--out", str(tmp_path))[0] == 0
    (path,) = (tmp_path / "raw").glob("*.jsonl")
    text = path.read_text().splitlines()
    damaged = "\n".join([text[0], text[1][:-7]]) + "\n"  # whole line, newline included: not torn
    path.write_text(damaged)
    with pytest.raises(CorruptResultError, match=r"\.jsonl:2"):
        RowStore(path).rows()
    for argv in ([*RUN, "--lens", "16,32,64", "--out", str(tmp_path)],
                 ["report", "--results", str(tmp_path)]):
        code, _, err = cli(*argv)
        assert code == 2 and ".jsonl:2" in err and len(err.strip().splitlines()) == 1, err
    assert path.read_text() == damaged and calls == [16, 32]  # nothing appended after it, nothing run


def test_a_torn_last_line_without_newline_is_still_an_interrupted_write(tmp_path, monkeypatch) -> None:
    fake_scaling(monkeypatch)
    loop.run_cells(scaling_cells((16,)), tmp_path)
    (path,) = (tmp_path / "raw").glob("*.jsonl")
    with path.open("ab") as f:
        f.write(b'{"schema": 3, "kind": "scal')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        rows = loop.run_cells(scaling_cells((16, 32)), tmp_path)
    assert [r.spec.seq_len for r in rows] == [32] and len(read_rows(path)) == 2


@pytest.mark.parametrize("edit, expected", [
    (lambda o: o.pop("grid"), "row keys"),
    (lambda o: o.update(status=3), "status = 3 is not str"),
    (lambda o: o.update(wall_s="1s"), "wall_s = '1s' is not"),
    (lambda o: o.update(provenance=[]), "provenance = [] is not an object"),
    (lambda o: o["spec"].update(seq_len=[16]), "seq_len = [16] is not int"),
    (lambda o: o.update(schema=99), "row schema 99"),
    (lambda o: o.pop("kind"), "row keys"),
])
def test_a_json_row_that_does_not_fit_is_one_line_in_run_and_report(tmp_path, cli, monkeypatch, edit,
                                                                    expected) -> None:
    calls = fake_scaling(monkeypatch)
    assert cli(*RUN, "--lens", "16", "--out", str(tmp_path))[0] == 0
    (path,) = (tmp_path / "raw").glob("*.jsonl")
    row = json.loads(path.read_text())
    edit(row)
    path.write_text(path.read_text() + json.dumps(row) + "\n")
    for argv in ([*RUN, "--lens", "16,32", "--out", str(tmp_path)], ["report", "--results", str(tmp_path)]):
        code, _, err = cli(*argv)
        assert code == 2 and ".jsonl:2: " in err and expected in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert calls == [16]


# -- longer lengths only ---------------------------------------------------------------------------------
def test_a_failure_skips_longer_lengths_only_whatever_the_order_of_the_cells(tmp_path, monkeypatch) -> None:
    calls: list[int] = []

    def run(cls, spec, budget_s, progress=None):
        calls.append(spec.seq_len)
        if spec.seq_len == 64:
            raise MemoryError("x")
        return RESULT

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    rows = loop.run_cells(scaling_cells((64, 128, 16, 32)), tmp_path)  # the long failure is met first
    assert [(r.spec.seq_len, r.status) for r in rows] == \
        [(64, "oom"), (128, "skipped: n=64 was oom"), (16, "ok"), (32, "ok")]
    assert calls == [64, 16, 32]
    again = loop.run_cells(scaling_cells((8, 16, 32, 64, 128, 256)), tmp_path)  # a resume with more lengths
    assert [(r.spec.seq_len, r.status) for r in again] == [(8, "ok"), (256, "skipped: n=64 was oom")]


# -- sys.exit() from a plugin ------------------------------------------------------------------------------
class ExitingMixer(LinearAttention):
    def forward(self, x):
        sys.exit("this plugin bails out")


def test_sys_exit_in_a_mixer_s_forward_is_an_error_row_and_the_sweep_goes_on(tmp_path, monkeypatch) -> None:
    small_device_peaks(monkeypatch)
    with MIXERS.registered("test_exits", ExitingMixer):
        rows = loop.run_cells(scaling_cells((16,), model="test_exits") + scaling_cells((16,)), tmp_path,
                              budget_s=0.01)
    assert [r.status for r in rows] == ["error: SystemExit: this plugin bails out", "ok"]
    assert [r.status for r in read_rows(tmp_path / "raw")] == [r.status for r in rows]


class FakeEntryPoint:
    """What importlib.metadata hands the loader, enough of it: a plugin whose import raises `exc`."""

    def __init__(self, name: str, exc: BaseException):
        self.name, self.value, self.dist, self.exc = name, f"{name}_module", None, exc

    def load(self):
        raise self.exc


def test_sys_exit_at_plugin_import_warns_and_is_skipped(monkeypatch) -> None:
    import archbench.archs.registry as registry

    eps = [FakeEntryPoint("exits", SystemExit(3)), FakeEntryPoint("raises", ImportError("no lib"))]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    things = Registry("thing", "test.things")
    with pytest.warns(RuntimeWarning) as caught:
        assert things.names() == []
    assert [str(w.message) for w in caught] == [
        "archbench: skipping thing plugin 'exits' (exits_module): SystemExit: 3",
        "archbench: skipping thing plugin 'raises' (raises_module): ImportError: no lib"]
    eps[:] = [FakeEntryPoint("interrupted", KeyboardInterrupt())]
    with pytest.raises(KeyboardInterrupt):  # the user's Ctrl-C is not a broken plugin
        Registry("thing", "test.things").names()


class MeddlingEntryPoint(FakeEntryPoint):
    """A plugin that sets one torch thread and ignores Ctrl-C as it is imported, and registers a class."""

    def load(self):
        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return type("Meddler", (), {})


def test_a_plugin_that_changes_torch_or_ctrl_c_at_import_has_them_put_back(monkeypatch) -> None:
    import archbench.archs.registry as registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [MeddlingEntryPoint("meddler", None)])
    threads, handler = torch.get_num_threads(), signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(2)
    try:
        with pytest.warns(RuntimeWarning, match=r"plugin 'meddler' \(meddler_module\) changed torch threads "
                          r"\(torch.set_num_threads\) 2 -> 1; SIGINT handler default_int_handler -> SIG_IGN "
                          "as it was imported; put back"):
            assert Registry("thing", "test.things").names() == ["meddler"]  # still loaded
        assert torch.get_num_threads() == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGINT, handler)


# -- Ctrl-C while torch imports ----------------------------------------------------------------------------
def console_entry() -> str:
    """The `archbench` console script's target, from pyproject.toml (what pip installs)."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["archbench"]


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_ctrl_c_during_start_up_is_exit_130_without_a_traceback(delay: float) -> None:
    module, func = console_entry().split(":")
    script = f"import sys; from {module} import {func}; sys.exit({func}())"  # what the console script does
    proc = subprocess.Popen([sys.executable, "-c", script, "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_stop_signals)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "archbench: interrupted"


# -- report --readme ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("readme, expected", [
    (None, "no such file"),
    ("# A README without markers\n", "has no <!-- archbench:results:start --> ... "),
])
def test_report_readme_that_cannot_be_refreshed_is_one_line_exit_2(tmp_path, cli, readme, expected) -> None:
    (tmp_path / "raw").mkdir()
    path = tmp_path / "README.md"
    if readme is not None:
        path.write_text(readme)
    code, _, err = cli("report", "--results", str(tmp_path), "--readme", str(path))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / ".report-manifest").exists()  # refused before writing anything


def test_errno_of_a_failed_write_is_named(tmp_path, monkeypatch) -> None:
    def write(fd, data):
        raise OSError(errno.EIO, "Input/output error")

    rows = RowStore(tmp_path / "rows.jsonl")
    rows.append(ROW)
    monkeypatch.setattr(store.os, "write", write)
    with pytest.raises(RowWriteError, match="Input/output error; the .* bytes of rows before it are intact"):
        rows.append(ROW)
    monkeypatch.undo()
    assert rows_read_cleanly(rows.path) == [ROW]


# -- rows of a kind the report has no tables for -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    n: int


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    value: float


class Probe(Experiment):
    Spec, Result = ProbeSpec, ProbeResult


def test_a_kind_without_tables_is_counted_and_noted_in_the_index(tmp_path) -> None:
    (tmp_path / "raw").mkdir()
    prov = {"device_name": "Test CPU"}
    with EXPERIMENTS.registered("test_probe", Probe):  # a plugin's kind: readable, but no tables here
        rows = [Row("test_probe", ProbeSpec(1), ProbeResult(0.5), "ok", prov, 1.0),
                Row("test_probe", ProbeSpec(2), None, "oom", prov, 1.0)]
        (tmp_path / "raw" / "probe.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
        write_report(tmp_path)
    index = (tmp_path / "README.md").read_text()
    assert "2 rows (test_probe: 1 ok, 1 oom)." in index and "nan:" not in index
    assert "Note: 2 row(s) of kind 'test_probe': bench/report/ has no tables for this kind yet." in index


def test_a_row_of_an_unknown_kind_stops_the_report_naming_file_line_and_kind(tmp_path, cli) -> None:
    (tmp_path / "raw").mkdir()
    with EXPERIMENTS.registered("test_probe", Probe):
        row = Row("test_probe", ProbeSpec(1), ProbeResult(0.5), "ok", {}, 1.0).to_json()
    (tmp_path / "raw" / "probe.jsonl").write_text(json.dumps(row) + "\n")  # written where it was installed
    code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 2 and "probe.jsonl:1: unknown row kind 'test_probe'; known kinds:" in err
    assert "(a plugin not installed here?)" in err and len(err.strip().splitlines()) == 1


def test_a_report_on_a_full_disk_is_one_line_naming_the_file(tmp_path, cli, monkeypatch) -> None:
    (tmp_path / "raw").mkdir()

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", full)
    code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 1 and f"cannot write {tmp_path}/" in err and "No space left on device" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temporary file left behind
