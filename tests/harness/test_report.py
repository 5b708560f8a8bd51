"""`archbench report`: exponent fits, crossovers, generated files, idempotence, README markers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.rows import DEVICE, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import (
    MARK_END,
    MARK_START,
    ReadmeError,
    crossovers,
    fit_exponent,
    fmt_pct,
    write_report,
)
from archbench.bench.runs.schema import Row
from archbench.bench.runs.store import CorruptResultError
from archbench.tasks import TaskSpec

NS = [64, 128, 256, 512, 1024, 2048, 4096]


# -- fit_exponent ----------------------------------------------------------------------------------
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_fit_exponent_recovers_power(power: float) -> None:
    slope, n_from, n_to, points = fit_exponent(NS, [3e-7 * n**power for n in NS])
    assert slope == pytest.approx(power, abs=1e-9)
    assert (n_from, n_to, points) == (512, 4096, 4)  # the largest half of 7 lengths


def test_fit_exponent_ignores_lower_half() -> None:
    # A flat overhead floor at short n (launch cost) must not drag the quadratic exponent down.
    ts = [1e-3, 1e-3, 1e-3] + [1e-9 * n**2 for n in NS[3:]]
    slope, *_ = fit_exponent(NS, ts)
    assert slope == pytest.approx(2.0, abs=1e-9)
    # ... while a fit over every point would have been far off.
    assert np.polyfit(np.log(NS), np.log(ts), 1)[0] < 1.5


def test_fit_exponent_uses_the_largest_half_but_at_least_three_points() -> None:
    assert fit_exponent(NS[:4], [n**2 for n in NS[:4]])[1:] == (NS[1], NS[3], 3)  # 4 lengths: top 3
    assert fit_exponent(NS[:5], [n**2 for n in NS[:5]])[3] == 3
    assert fit_exponent(NS[:2], [n**2 for n in NS[:2]]) is None
    assert fit_exponent([], []) is None


def test_fit_exponent_order_and_bad_points() -> None:
    ns = list(reversed(NS)) + [8192]
    ts = [n * 1e-6 for n in reversed(NS)] + [float("nan")]  # an unusable time is dropped, not fitted
    slope, n_from, n_to, _ = fit_exponent(ns, ts)
    assert slope == pytest.approx(1.0) and (n_from, n_to) == (512, 4096)


def test_percentages_keep_two_figures_below_one_percent() -> None:
    assert [fmt_pct(v) for v in (0.25, 0.01, 3.14e-4, 0.0)] == ["25.0%", "1.0%", "0.031%", "0.0%"]


# -- crossovers ------------------------------------------------------------------------------------
def _series(model: str, ts: list[float], mode: str = "prefill", backend: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"mode": mode, "model": model, "backend": backend, "seq_len": NS,
                         "time_median_s": ts})


def test_crossover_quadratic_vs_linear() -> None:
    c1, c2 = 1e-9, 3e-7  # c1 n^2 = c2 n  at  n = c2 / c1 = 300
    df = pd.concat([_series("attention", [c1 * n**2 for n in NS]), _series("mamba", [c2 * n for n in NS])])
    cx = crossovers(df)
    assert len(cx) == 1
    row = cx.iloc[0]
    assert row["crossover_n"] == pytest.approx(300, rel=0.1)
    assert (row["faster_below"], row["faster_above"]) == ("attention", "mamba")
    assert (row["model_a"], row["model_b"]) == ("attention", "mamba")


def test_crossover_none_in_range_and_fastest_backend() -> None:
    slow_backend = _series("mamba", [1.0 * n for n in NS], backend="reference")
    fast_backend = _series("mamba", [1e-3 * n for n in NS], backend="chunked")
    attention = _series("attention", [1e-2 * n for n in NS])
    cx = crossovers(pd.concat([slow_backend, fast_backend, attention]))
    # Each model counts with its fastest backend: chunked mamba is always faster, so no swap.
    assert len(cx) == 1 and np.isnan(cx.iloc[0]["crossover_n"])
    assert cx.iloc[0]["faster_below"] == "mamba"


# -- write_report ----------------------------------------------------------------------------------
def _provenance() -> dict:
    return {"git_commit": "0123456789abcdef", "git_dirty": False, "archbench_version": "0.1.0",
            "python": "3.12.0", "torch": "2.13.0", "cuda": None, "numpy": "2.4.6", "device_name": DEVICE,
            "cpu_count": 2, "torch_threads": 2, "timestamp": "2025-01-01T00:00:00+00:00", "plugins": {}}


def _scaling_row(model: str, backend: str, mode: str, n: int, t: float | None, status: str = "ok",
                 energy: float | None = None, configs: dict | None = None) -> dict:
    spec = ScalingSpec(model_spec(model, configs=configs), mode=mode, seq_len=n, batch=1, device="cpu",
                       dtype="float32")
    result = None if status != "ok" else ScalingResult(
        backend=backend, time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=5,
        peak_mem_bytes=1000 * n, peak_mem_method="vmhwm",
        state_bytes=4 * 64 * (n if model == "attention" else 16), params=100, energy_j=energy,
        energy_j_per_token=energy, energy_source="rapl" if energy is not None else None, flops=1000 * n,
        tokens_per_s=n / t, flops_per_s=1000 * n / t, bytes_per_s=None, flops_frac_measured=0.25,
        bytes_frac_measured=None, flops_frac_spec=None, bytes_frac_spec=None)
    return Row("scaling", spec, result, status, _provenance(), 1.0).to_json()


def _retrieval_row(model: str, d_model: int, lr: float, acc: float, vocab: int | None = None) -> dict:
    task_cfg = {"seq_len": 64, "num_kv_pairs": 4, **({"vocab_size": vocab} if vocab else {})}
    spec = RetrievalSpec(model_spec(model, d_model=d_model), TaskSpec("mqar", task_cfg), TrainConfig(lr=lr),
                         test_lens=(128,), device="cpu", dtype="float32")
    result = RetrievalResult(
        backend="reference", params=1000 * d_model, steps=100, examples_seen=6400, train_seconds=1.0,
        state_bytes=4 * d_model * (64 if model == "attention" else 16), accuracy=acc,
        accuracy_by_len={"64": acc, "128": acc / 2}, test_len=128, accuracy_by_slice={}, final_loss=0.5,
        stopped_early=False)
    return Row("retrieval", spec, result, "ok", _provenance(), 2.0).to_json()


def _rows() -> tuple[list[dict], list[dict]]:
    rows = []
    for mode in ("prefill", "decode"):
        for n in NS:
            rows.append(_scaling_row("attention", "sdpa", mode, n, 1e-9 * n**2 + 1e-6, energy=None))
            # One energy figure per mode for mamba, the rest null: null must print as "n/a", never a number.
            rows.append(_scaling_row("mamba", "chunked", mode, n, 3e-7 * n, energy=2e-6 if n == 64 else None))
    rows.append(_scaling_row("attention", "sdpa", "prefill", 8192, None, status="oom"))
    rows.append(_scaling_row("mamba", "chunked", "prefill", 8192, None, status="error: boom"))
    for conv in (0, 4):  # two configs of one model: two table rows, not a collision
        for n in NS[:2]:
            rows.append(_scaling_row("mamba-attn", "mixed", "prefill", n, 1e-6 * (conv + 1) * n,
                                     configs={"A": {"d_conv": conv}} if conv else {}))
    retrieval = [_retrieval_row(a, d, lr, acc) for a, d, lr, acc in [
        ("attention", 64, 1e-3, 0.5), ("attention", 64, 3e-3, 0.98), ("attention", 128, 1e-3, 1.0),
        ("mamba", 64, 1e-3, 0.31), ("mamba", 64, 3e-3, 0.2), ("mamba", 128, 1e-3, 0.62)]]
    return rows, retrieval


README_BEFORE = "# Project\r\n\r\nintro text\r\n"
README_AFTER = "\r\n## Later\r\nmore text, no trailing newline"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """One report over a small synthetic raw dir (and a README with markers), shared by the tests that
    only read it: rendering the plots is the slow part."""
    tmp = tmp_path_factory.mktemp("report")
    scaling, retrieval = _rows()
    results = write_rows(tmp / "results", scaling=scaling, retrieval=retrieval)
    bench = results / "raw" / "pytest-benchmark"
    bench.mkdir()
    (bench / "0001_run.json").write_text(json.dumps({
        "machine_info": {"node": "box", "cpu": {"brand_raw": "Test CPU"}},
        "commit_info": {"id": "abcdef0123456789", "dirty": True},
        "benchmarks": [{"name": "test_prefill[attention-128]", "group": "prefill",
                        "params": {"arch": "attention", "n": 128},
                        "stats": {"median": 0.0123, "min": 0.011, "max": 0.02, "rounds": 7},
                        "extra_info": {"backend": "sdpa", "state_bytes": 4096}}],
    }))
    readme = tmp / "README.md"
    readme.write_bytes(f"{README_BEFORE}{MARK_START}\r\nold table\r\n{MARK_END}{README_AFTER}".encode())
    return results, readme, write_report(results, readme=readme)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_report_files_and_cells(report: tuple[Path, Path, list[Path]]) -> None:
    results, _, written = report
    names = {p.name for p in written}
    pre, ret = "scaling_test-cpu-2-cpus_float32_b1_L2_d64_mlp0", "retrieval_cpu"
    stems = ("time_prefill", "time_decode", "exponents", "crossovers", "memory", "state", "energy", "util")
    for stem in stems:
        assert {f"{pre}_{stem}.md", f"{pre}_{stem}.csv"} <= names, stem
    for png in ("time_prefill", "time_decode", "memory", "energy"):
        assert (results / f"{pre}_{png}.png").read_bytes().startswith(b"\x89PNG")
    mqar = f"{ret}_mqar-v-8192"  # MQAR at its default vocabulary: the rows set none
    assert {f"{ret}_accuracy.md", f"{mqar}_acc_vs_dmodel.png", f"{mqar}_acc_vs_state.png",
            f"{mqar}_acc_vs_len.png", "pytest_benchmark.md", "pytest_benchmark.csv", "README.md"} <= names
    # in results/ or its site/, never inside raw/; the last is the README
    assert all(p.parent in (results, results / "site") for p in written[:-1])

    time_md = (results / f"{pre}_time_prefill.md").read_text()
    row = {line.split("|")[1].strip(): line for line in time_md.splitlines() if line.startswith("| ")}
    assert row["attention"].rstrip(" |").endswith("oom")
    assert row["mamba"].rstrip(" |").endswith("error")
    assert "17.4 µs" in row["attention"]  # 1e-9 * 128^2 + 1e-6 s
    assert "mamba-attn" in row and "mamba-attn attention.d_conv=4" in row  # only what it sets
    assert "depth 2 · d_model 64 · mlp_ratio 0" in time_md  # every model of a table has one shape, said

    energy = (results / f"{pre}_energy.md").read_text()
    cells = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[4:-1]]
             for line in energy.splitlines() if line.startswith("| ")}
    assert cells["prefill", "attention"] == ["n/a"] * 7 + ["oom"]  # no energy counter, then out of memory
    assert cells["prefill", "mamba"] == ["2.00 µJ"] + ["n/a"] * 6 + ["error"]  # one measured cell
    assert energy.count("J") == energy.count("2.00 µJ") == 2
    # Only the measured cells (mamba at n=64, one per mode) carry a number; no other figure appears.
    values = pd.read_csv(results / f"{pre}_energy.csv").drop(columns=["mode", "model", "backend"]).to_numpy()
    assert sum(isinstance(v, float) and not np.isnan(v) for v in values.ravel()) == 2

    fit = pd.read_csv(results / f"{pre}_exponents.csv").set_index(["mode", "model"])["exponent"]
    assert fit["prefill", "mamba"] == pytest.approx(1.0, abs=1e-6)
    assert fit["prefill", "attention"] == pytest.approx(2.0, abs=0.05)
    assert np.isnan(fit["prefill", "mamba-attn attention.d_conv=4"])  # two lengths: no fit, none invented

    util = (results / f"{pre}_util.md").read_text()  # the utilisation the cells measured, not "n/a"
    assert util.count("25.0%") == 2 * 7 * 2 + 2 * 2  # every ok cell of attention, mamba and mamba-attn
    assert "n/a in every cell: achieved FLOP/s ÷ measured" not in util

    cx = pd.read_csv(results / f"{pre}_crossovers.csv").set_index(["mode", "model_a", "model_b"])
    assert cx.loc[("prefill", "attention", "mamba"), "crossover_n"] == pytest.approx(300, rel=0.1)

    acc_md = (results / f"{ret}_accuracy.md").read_text()
    acc = {line.split("|")[1].strip(): line for line in acc_md.splitlines() if line.startswith("| ")}
    assert "0.980" in acc["attention"] and "0.500" not in acc["attention"]  # the best lr is kept
    assert "0.310" in acc["mamba"]

    bench = (results / "pytest_benchmark.md").read_text()
    assert "test_prefill[attention-128]" in bench and "12.3 ms" in bench and "sdpa" in bench

    index = (results / "README.md").read_text()
    for p in written[:-1]:
        if p.name not in ("README.md", ".report-manifest") and p.parent == results:
            assert f"]({p.name})" in index
    assert "](site/index.html)" in index  # the site's files are its own pages' business
    assert "2.13.0" in index and "0123456789ab" in index and "abcdef012345+dirty" in index


def test_readme_markers_replaced_rest_untouched(report: tuple[Path, Path, list[Path]]) -> None:
    _, readme, written = report
    assert written[-1] == readme
    text = readme.read_bytes().decode()
    assert text.startswith(README_BEFORE + MARK_START) and text.endswith(MARK_END + README_AFTER)
    inner = text[len(README_BEFORE) + len(MARK_START): -len(MARK_END + README_AFTER)]
    assert "old table" not in inner
    # the README keeps only its first screen; the headline tables are in results/SUMMARY.md
    assert "Prefill time" not in inner
    assert "](results/README.md)" in inner and "](results/SUMMARY.md)" in inner
    summary = (report[0] / "SUMMARY.md").read_text()
    assert "Prefill time" in summary and "Fitted exponents" in summary and "MQAR V=8192 accuracy" in summary


def test_write_report_twice_is_byte_identical(report: tuple[Path, Path, list[Path]]) -> None:
    results, readme, written = report
    first, readme_once = _snapshot(results), readme.read_bytes()
    assert write_report(results, readme=readme) == written
    assert _snapshot(results) == first  # PNGs included, byte for byte
    assert readme.read_bytes() == readme_once


def test_stale_files_removed_raw_and_foreign_files_kept(tmp_path: Path) -> None:
    rows, _ = _rows()
    results = write_rows(tmp_path, scaling=rows, retrieval=[])
    write_report(results)
    assert list(results.glob("*_time_decode.*"))
    # Drop the decode rows: the decode files the previous run wrote must go; raw/ and others' files stay.
    raw = results / "raw" / "scaling.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows if r["spec"]["mode"] != "decode"))
    (results / "notes.txt").write_text("mine")
    write_report(results)
    assert not list(results.glob("*_time_decode.*"))
    assert (results / "notes.txt").read_text() == "mine"
    assert (results / "raw" / "retrieval.jsonl").exists()


def test_empty_raw_dir_and_readme_without_markers(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    readme = tmp_path / "OTHER.md"
    readme.write_bytes(b"# nothing to replace\n")
    with pytest.raises(ReadmeError, match="has no <!-- archbench:results:start -->"):  # not a silent no-op
        write_report(tmp_path, readme=readme)
    assert readme.read_bytes() == b"# nothing to replace\n" and not (tmp_path / "README.md").exists()
    written = write_report(tmp_path)
    top = {p.name for p in written if p.parent == tmp_path}
    assert top == {"README.md", "SUMMARY.md", ".report-manifest"}
    assert (tmp_path / "site" / "index.html").is_file()  # the site says there is nothing yet
    assert "No result rows yet" in (tmp_path / "README.md").read_text()
    assert "No result rows yet" in (tmp_path / "SUMMARY.md").read_text()


def test_corrupt_pytest_benchmark_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "raw" / "pytest-benchmark").mkdir(parents=True)
    (tmp_path / "raw" / "pytest-benchmark" / "bad.json").write_text("{not json")
    with pytest.raises(CorruptResultError, match="bad.json"):
        write_report(tmp_path)


def test_mqar_vocabularies_are_ordered_numerically(tmp_path: Path) -> None:
    rows = [_retrieval_row("attention", 64, 1e-3, acc, vocab)
            for vocab, acc in ((8192, 0.5), (128, 0.7), (64, 0.9))]
    results = write_rows(tmp_path / "results", scaling=[], retrieval=rows)
    write_report(results)
    text = (results / "SUMMARY.md").read_text()
    positions = [text.index(f"MQAR V={v} accuracy") for v in (64, 128, 8192)]
    assert positions == sorted(positions)
