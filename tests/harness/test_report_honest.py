"""Report figures that cannot mislead: the bytes/s utilisation measured against the decode bound's own
yardstick (and a note wherever a fraction passes 100%), a decode step's memory with the state / KV
cache it holds, and energy on a device without a counter said in one line, not a table of n/a."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.report import write_report
from archbench.bench.runs.schema import Row

PRE = "scaling_test-cpu-2-cpus_float32_b1_L2"
NS = (256, 1024, 4096)


def _row(model: str, mode: str, n: int, t: float, *, d_model: int = 64, device: str = "cpu",
         energy: float | None = None, bound_s: float | None = None, state: int = 1024,
         peak: int = 1000, bytes_frac_measured: float | None = None) -> dict:
    spec = ScalingSpec(model_spec(model, d_model=d_model), mode=mode, seq_len=n, batch=1, device=device,
                       dtype="float32")
    result = ScalingResult(
        backend="chunked", time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=5,
        peak_mem_bytes=peak, peak_mem_method="vmhwm", state_bytes=state, params=100, energy_j=energy,
        energy_j_per_token=energy, energy_source="rapl" if energy else None, flops=1000, tokens_per_s=1 / t,
        flops_per_s=1000 / t, bytes_per_s=None, flops_frac_measured=0.5,
        bytes_frac_measured=bytes_frac_measured, flops_frac_spec=None, bytes_frac_spec=None,
        bound_bytes=1000 if bound_s else None, bound_bandwidth=1000 / bound_s if bound_s else None,
        bound_s=bound_s)
    return Row("scaling", spec, result, "ok", PROV, 1.0).to_json()


def _report(tmp_path: Path, rows: list[dict]) -> Path:
    results = write_rows(tmp_path / "results", scaling=rows)
    write_report(results)
    return results


def _cells(md: str, heading: str) -> dict[tuple[str, str], list[str]]:
    """(mode, model) -> the cells of one table of a Markdown file (the one under `heading`, or the only
    one)."""
    part = md.split(f"## {heading}")[1].split("\n## ")[0] if heading else md
    return {(c[0], c[1]): c[3:] for line in part.splitlines() if line.startswith("| ")
            for c in [[x.strip() for x in line.strip().strip("|").split("|")]]
            if c[0] not in ("mode", ":---")}


def test_decode_bytes_utilisation_is_the_bound_over_the_time_as_in_the_decode_table(tmp_path) -> None:
    # mamba: twice its bound, whatever a streaming copy would say (stored 200% of it); attention: faster
    # than its bound at the longest n (the copy probe under more load than the step).
    rows = [_row("mamba", "decode", n, 2e-5, bound_s=1e-5, bytes_frac_measured=2.0) for n in NS]
    rows += [_row("attention", "decode", n, t, bound_s=1e-5)
             for n, t in zip(NS, (2e-5, 1e-5, 8e-6), strict=True)]
    results = _report(tmp_path, rows)
    util = (results / f"{PRE}_d64_mlp0_util.md").read_text()
    heading = "achieved bytes/s ÷ copy bandwidth measured for the step's working set"
    cells = _cells(util, heading)
    assert cells["decode", "mamba"] == ["50.0%"] * 3  # bound / time: 1 ÷ the decode table's 2.0×
    assert cells["decode", "attention"] == ["50.0%", "100.0%", "125.0% †"]
    assert "† above 100% (1 cell): the copy bandwidth is a measurement too" in util
    assert "200.0%" not in util and "÷ measured copy bandwidth" not in util  # the streaming-copy yardstick
    bound = (results / f"{PRE}_d64_mlp0_decode_bound.md").read_text()
    assert "20.0 µs (2.0×)" in bound  # the same step, the same yardstick


def test_no_note_where_no_fraction_passes_100_percent(tmp_path) -> None:
    results = _report(tmp_path, [_row("mamba", "decode", n, 2e-5, bound_s=1e-5) for n in NS])
    util = (results / f"{PRE}_d64_mlp0_util.md").read_text()
    assert "†" not in util and "above 100%" not in util


def test_decode_peak_memory_holds_the_kv_cache(tmp_path) -> None:
    # Attention's step allocates little beside its preallocated cache; mamba's state is small.
    rows = [_row("attention", "decode", n, 1e-5, state=4 * 64 * n, peak=100) for n in NS]
    rows += [_row("mamba", "decode", n, 1e-5, state=2048, peak=3000) for n in NS]
    rows += [_row("attention", "prefill", n, 1e-3, state=4 * 64 * n, peak=5000) for n in NS]
    results = _report(tmp_path, rows)
    md = (results / f"{PRE}_d64_mlp0_memory.md").read_text()
    assert "decode rows: the state / KV cache held at n + the step's transient peak" in md
    cells = _cells(md, "")
    assert cells["decode", "attention"][-1] == "1.00 MiB"  # 4 * 64 * 4096 + 100 bytes
    assert cells["decode", "mamba"] == ["4.93 KiB"] * 3  # 2048 + 3000 bytes
    assert cells["prefill", "attention"] == ["4.88 KiB"] * 3  # prefill: its peak, as measured


@pytest.mark.parametrize("device, words", [("cpu", "CPU (Test CPU (2 CPUs): RAPL"),
                                           ("cuda", "GPU (Test CPU (2 CPUs): NVML")])
def test_energy_without_a_counter_is_one_line_not_a_table(tmp_path, device: str, words: str) -> None:
    rows = [_row(m, "prefill", n, 1e-3, d_model=d, device=device) for m in ("mamba", "attention")
            for n in NS for d in (32, 64)]  # two groups (widths) on one device
    results = _report(tmp_path, rows)
    assert not list(results.glob("*_energy.*"))
    index = (results / "README.md").read_text()
    line = f"energy: no counter on this {words} not readable); no energy table"
    assert index.count(line) == 1, index
    assert "n/a" not in "".join(p.read_text() for p in results.glob("*.md") if p.name != "README.md")


def test_a_measured_energy_keeps_its_table(tmp_path) -> None:
    rows = [_row("mamba", "prefill", n, 1e-3, energy=2e-6 if n == 256 else None) for n in NS]
    results = _report(tmp_path, rows)
    assert (results / f"{PRE}_d64_mlp0_energy.md").is_file()
    assert "no counter" not in (results / "README.md").read_text()
