"""Shared by the run-loop, executor, fault, measurement and end-to-end tests: tiny scaling cells, a
result for a stand-in `run` to return, a training config that takes a couple of optimizer steps, the
device's peaks measured on a small problem, and a callable that counts its calls."""

from __future__ import annotations

import dataclasses

import pytest

from archbench.archs import resolve_model
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.measure import peaks
from archbench.bench.runs.cell import Cell

# A few optimizer steps and a handful of held-out rows: the loop runs for real, in well under a second.
TINY_TRAIN = TrainConfig(batch_size=8, max_examples=16, n_train=16, eval_every=16, n_eval=8, n_test=8)

# A result a stand-in scaling `run` returns: the loop only needs its type, not real figures.
RESULT = ScalingResult(**{f.name: 1 for f in dataclasses.fields(ScalingResult)} |
                       {"backend": "fake", "peak_mem_method": None, "energy_source": None,
                        "backend_trials_s": None, "resolved_configs": None})


def scaling_cells(lens=(16, 32, 64), model="attention", mode="prefill") -> list[Cell]:
    """One scaling cell per length: depth 1, d_model 32, batch 1, float32 on CPU."""
    spec = resolve_model(model, 1, 32)
    return [Cell("scaling", ScalingSpec(spec, mode=mode, seq_len=n, batch=1, device="cpu",
                                        dtype="float32")) for n in lens]


def small_device_peaks(mp: pytest.MonkeyPatch) -> None:
    """The device's peaks measured for real, on a small matmul and copy (the suite's take seconds)."""
    measure_peaks = peaks.device_peaks
    mp.setattr(peaks, "device_peaks", lambda device: measure_peaks(device, 256, 1 << 20))


class Counter:
    """A callable to measure that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
