"""Device peaks and utilisation: the datasheet table, a tiny cached probe, the fractions."""

from __future__ import annotations

from archbench.bench.measure import peaks

MB = 1 << 20


def test_spec_peaks_table() -> None:
    assert peaks.spec_peaks("NVIDIA H100 80GB HBM3") == (989e12, 3.35e12)
    assert peaks.spec_peaks("NVIDIA H100 PCIe")[0] == 756e12  # not the SXM figure
    assert peaks.spec_peaks("NVIDIA H200") == (989e12, 4.8e12)
    assert peaks.spec_peaks("NVIDIA A100-SXM4-80GB") == (312e12, 2.0e12)
    assert peaks.spec_peaks("AMD EPYC (2 CPUs)") == (None, None)


def test_device_peaks_cpu_small_and_cached() -> None:
    cpu = peaks.device_peaks("cpu", matmul_n=64, copy_bytes=MB)
    assert cpu.measured and cpu.flops_per_s > 0 and cpu.bytes_per_s > 0
    assert cpu.spec_flops is None and cpu.spec_bytes is None and cpu.dtype == "float32"
    assert peaks.device_peaks("cpu", matmul_n=64, copy_bytes=MB) is cpu


def test_utilisation_fractions() -> None:
    fake = peaks.Peaks(1e12, 1e11, True, 4e12, None, "fake", "bfloat16")
    u = peaks.utilisation(flops=5e11, bytes_moved=None, seconds=1.0, peaks=fake)
    assert u["flops_per_s"] == 5e11 and u["flops_frac_measured"] == 0.5 and u["flops_frac_spec"] == 0.125
    assert u["bytes_per_s"] is None and u["bytes_frac_measured"] is None and u["bytes_frac_spec"] is None
