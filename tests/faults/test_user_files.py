"""A user's files are never damaged, and archbench reads only regular files.

- Every file `archbench report` and `archbench profile` write, a `--readme` included, is replaced whole
  or not at all: on a full disk (a real one, and the file-size limit) the file keeps its old bytes,
  no temporary file is left behind, and the one-line message names the file.
- A file in the results folder that archbench did not write (not in its `.report-manifest`) is refused
  in one line, exit status 2, before anything is written; it is never replaced.
- A FIFO, a folder or a dangling link named like a file the report reads (`raw/**/*.jsonl`, the
  pytest-benchmark, peer and plan files) is skipped with a warning naming it: opening a FIFO would
  block the report forever. A run refuses it, naming it, before any cell: it could be the file the run
  appends to.
- A row holding a number JSON has no words for (NaN, Infinity, 1e400) is an error naming its file and
  line, since the writer refuses to store one; a plot whose every value is non-finite is still drawn.
- A `--out` or `--results` whose name is too long for the file system is one line, exit status 2.
- SIGTERM or SIGHUP to a local run ends it with one line naming the signal, status 128 + the signal,
  every finished row intact.
"""

from __future__ import annotations

import contextlib
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
from helpers import default_stop_signals
from helpers.disk import fill
from helpers.rows import DEVICE, model_spec, write_rows

from archbench.bench.experiments.scaling import Scaling, ScalingResult, ScalingSpec
from archbench.bench.report import MARK_END, MARK_START
from archbench.bench.report.plot import Axis, plot
from archbench.bench.runs.schema import Row, read_rows
from archbench.bench.runs.store import CorruptResultError, RowStore

RUN = ["run", "scaling", "--models", "attention", "--depth", "1", "--modes", "prefill", "--d-model", "16",
       "--lens", "16"]


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def scaling_rows(scale: float) -> list[dict]:
    """Seven lengths of two models, times multiplied by `scale`: enough for tables and plots."""
    rows = []
    for model in ("attention", "mamba"):
        for n in (64, 128, 256, 512, 1024, 2048, 4096):
            t = scale * (1e-9 * n * n if model == "attention" else 3e-7 * n)
            spec = ScalingSpec(model_spec(model), mode="prefill", seq_len=n, batch=1, device="cpu",
                               dtype="float32")
            result = ScalingResult(
                backend="x", time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=3,
                peak_mem_bytes=1000 * n, peak_mem_method="vmhwm", state_bytes=64 * n, params=100,
                energy_j=None, energy_j_per_token=None, energy_source=None, flops=1000 * n,
                tokens_per_s=n / t, flops_per_s=None, bytes_per_s=None, flops_frac_measured=None,
                bytes_frac_measured=None, flops_frac_spec=None, bytes_frac_spec=None)
            rows.append(Row("scaling", spec, result, "ok", {"device_name": DEVICE}, 1.0).to_json())
    return rows


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def readme_text(size: int) -> str:
    text = f"# My project\n\nintro\n\n{MARK_START}\nold table\n{MARK_END}\n\n## Later\n"
    line = "text after the markers that must survive\n"
    return text + line * ((size - len(text)) // len(line))


# -- files replaced whole or not at all ----------------------------------------------------------------
def test_a_readme_on_a_full_disk_keeps_its_bytes_and_the_message_names_it(tiny_disk, cli, tmp_path) -> None:
    results = write_rows(tmp_path / "results", scaling=[])
    readme = tiny_disk / "README.md"
    readme.write_text(readme_text(8150))  # two pages of tmpfs, full: the refreshed text needs a third
    before = readme.read_bytes()
    fill(tiny_disk, leave=0)
    code, _, err = cli("report", "--results", str(results), "--readme", str(readme))
    line = one_line(err)
    assert code == 1 and f"cannot write {readme}" in line and "No space left on device" in line, line
    assert readme.read_bytes() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["README.md", "filler"]  # no temporary left


FSIZE_REPORT = textwrap.dedent("""
    import resource, signal, sys
    from archbench.bench.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
""")


def report_under_file_size_limit(limit: int, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FSIZE_REPORT, str(limit), "report", *argv],
                          capture_output=True, text=True, timeout=300)


def test_a_readme_past_the_file_size_limit_keeps_its_bytes(tmp_path) -> None:
    # The limit lets every other file of the report through (the site's chart library is the largest),
    # so the README, twice that, is the one write that fails.
    probe = write_rows(tmp_path / "probe", scaling=[])
    assert report_under_file_size_limit(1 << 30, "--results", str(probe)).returncode == 0
    limit = max(p.stat().st_size for p in probe.rglob("*") if p.is_file()) + 4096
    results = write_rows(tmp_path / "results", scaling=[])
    readme = tmp_path / "README.md"
    readme.write_text(readme_text(2 * limit))
    before = readme.read_bytes()
    done = report_under_file_size_limit(limit, "--results", str(results), "--readme", str(readme))
    line = one_line(done.stderr)
    assert done.returncode == 1 and f"cannot write {readme}" in line and "File too large" in line, line
    assert readme.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "probe", "results"]


def test_report_files_past_the_file_size_limit_are_old_or_new_never_cut(tmp_path) -> None:
    results = write_rows(tmp_path / "results", scaling=scaling_rows(1.0))
    assert report_under_file_size_limit(1 << 30, "--results", str(results)).returncode == 0
    old = snapshot(results)
    write_rows(results, scaling=scaling_rows(2.0))  # every table and plot changes
    new_results = write_rows(tmp_path / "expected", scaling=scaling_rows(2.0))
    assert report_under_file_size_limit(1 << 30, "--results", str(new_results)).returncode == 0
    new = snapshot(new_results)
    assert any(len(b) > 8000 for b in old.values())  # a plot the limit below cuts
    done = report_under_file_size_limit(8000, "--results", str(results))
    line = one_line(done.stderr)
    assert done.returncode == 1 and f"cannot write {results}/" in line and "File too large" in line, line
    now = snapshot(results)
    assert set(now) == set(old), set(now) ^ set(old)  # nothing deleted, no temporary left
    assert all(now[name] in (old[name], new.get(name)) for name in now)


def test_a_results_file_archbench_did_not_write_is_refused_not_replaced(cli, tmp_path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "README.md").write_text("my notes\n")
    code, _, err = cli("report", "--results", str(tmp_path))
    line = one_line(err)
    assert code == 2 and str(tmp_path / "README.md") in line and ".report-manifest" in line, line
    assert (tmp_path / "README.md").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "raw"]  # nothing written
    (tmp_path / "README.md").rename(tmp_path / "NOTES.md")
    assert cli("report", "--results", str(tmp_path))[0] == 0
    assert cli("report", "--results", str(tmp_path))[0] == 0  # its own files, from its manifest: replaced
    assert (tmp_path / "NOTES.md").read_text() == "my notes\n"


# -- only regular files are read ---------------------------------------------------------------------------
@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: a FIFO opened for reading blocks until a writer comes."""
    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def not_regular(raw: Path) -> list[Path]:
    """A FIFO, a folder and a dangling link where the report looks for files, beside one good row."""
    write_rows(raw.parent, scaling=scaling_rows(1.0)[:1])
    made = [raw / "fifo.jsonl", raw / "deep" / "fifo.jsonl", raw / "pytest-benchmark" / "fifo.json",
            raw / "peer" / "fifo.json", raw / "plans" / "fifo.json"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
    (raw / "folder.jsonl").mkdir()
    (raw / "dangling.jsonl").symlink_to(raw / "nowhere")
    return [*made, raw / "folder.jsonl", raw / "dangling.jsonl"]


def test_the_report_skips_what_is_not_a_regular_file_with_a_warning(cli, tmp_path) -> None:
    skipped = not_regular(tmp_path / "raw")
    with deadline(120), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 0, err
    said = "\n".join(str(w.message) for w in caught)
    for path in skipped:
        assert f"skipping {path}" in said, said
    assert "1 rows (scaling: 1 ok)" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("make", ["fifo", "folder", "dangling"])
def test_a_run_refuses_what_is_not_a_regular_file_before_any_cell(cli, tmp_path, monkeypatch, make) -> None:
    calls = []
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, *a, **k: calls.append(spec)))
    path = tmp_path / "raw" / "sub" / "scaling_x.jsonl"
    path.parent.mkdir(parents=True)
    make_it = {"fifo": os.mkfifo, "folder": Path.mkdir, "dangling": lambda p: p.symlink_to(p.parent / "gone")}
    make_it[make](path)
    with deadline(120):
        code, _, err = cli(*RUN, "--out", str(tmp_path))
    line = one_line(err)
    assert code == 2 and str(path) in line and "not a regular file" in line, line
    assert calls == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_a_row_with_a_number_json_cannot_hold_is_an_error_naming_file_and_line(cli, tmp_path,
                                                                                number) -> None:
    rows = scaling_rows(1.0)
    lines = [json.dumps(r) for r in rows]
    lines[3] = json.dumps({**rows[3], "result": {**rows[3]["result"], "time_median_s": 0}}).replace(
        '"time_median_s": 0', f'"time_median_s": {number}')
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "scaling.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptResultError, match=f"scaling.jsonl:4: .*{number.lstrip('-')}"):
        RowStore(raw / "scaling.jsonl").rows()
    code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 2 and "scaling.jsonl:4" in one_line(err)


def test_a_plot_of_only_non_finite_values_is_still_drawn() -> None:
    inf, nan = float("inf"), float("nan")
    png = plot([("prefill", [("mamba", [64, 128], [inf, inf], {}), ("x", [64, 128], [nan, nan], {})])],
               Axis("n", unit="n"), Axis("time", unit="s"))
    assert png.startswith(b"\x89PNG")


# -- names the file system refuses -------------------------------------------------------------------------
def test_a_name_too_long_for_the_file_system_is_one_line(cli, tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, *a, **k: calls.append(spec)))
    long = tmp_path / ("x" * 300)
    code, _, err = cli(*RUN, "--out", str(long))
    assert code == 2 and "File name too long" in one_line(err) and calls == []
    code, _, err = cli("report", "--results", str(long))
    assert code == 2 and "File name too long" in one_line(err)


# -- SIGTERM and SIGHUP ---------------------------------------------------------------------------------
SLOW_RUN = textwrap.dedent("""
    import sys, time
    from archbench.bench.cli import main
    from archbench.bench.experiments.scaling import Scaling
    from helpers.runs import RESULT

    def run(cls, spec, budget_s, progress=None):
        time.sleep(0.2 if spec.seq_len == 16 else 60)  # the second cell is still running when stopped
        return RESULT

    Scaling.run = classmethod(run)
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_local_run_stopped_by_a_signal_says_so_and_keeps_its_rows(tmp_path, signum) -> None:
    argv = [*RUN[:-1], "16,32,64", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_stop_signals)
    rows = tmp_path / "raw"
    stop = time.time() + 240
    while time.time() < stop and not any(p.read_text().count("\n") for p in rows.glob("*.jsonl")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"stopped by {name}" in err.strip().splitlines()[-1], err
    assert [r.spec.seq_len for r in read_rows(rows)] == [16]
