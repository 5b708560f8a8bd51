"""A training step's FLOP bound (bench/measure/train_flops.py) and its columns in the speed table."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archbench.archs import LM, list_archs, resolve_model
from archbench.bench.measure import train_flops
from archbench.bench.measure.train_flops import matmul_peak_flops, train_step_flops
from archbench.bench.report.write import write_report
from archbench.tasks import create
from archbench.tasks.base import IGNORE

D = 16


def _lm(mixer: str = "attention", vocab: int = 64) -> LM:
    return LM(resolve_model(mixer, 2, D), vocab)


@pytest.mark.parametrize("mixer", list_archs())
def test_backbone_term_is_the_backbone_forward_per_row_times_three(mixer: str) -> None:
    model = _lm(mixer)
    per_row = model.backbone.flops(24)
    assert per_row > 0
    assert train_step_flops(model, 1, 24, 0) == 3 * per_row
    assert train_step_flops(model, 5, 24, 0) == 3 * 5 * per_row


def test_head_term_matches_torch_count_of_the_heads_forward_and_backward() -> None:
    # The ×3 convention is exact for a matmul: dL/dx and dL/dW are one matmul of its size each.
    model, m = _lm(vocab=96), 40
    h = torch.randn(m, D, requires_grad=True)  # (M, D): the gathered hidden states at scored positions
    with FlopCounterMode(display=False) as counter:
        model.head(h).sum().backward()
    head = train_step_flops(model, 3, 24, m) - train_step_flops(model, 3, 24, 0)
    assert head == counter.get_total_flops() == 3 * 2 * D * 96 * m


def test_head_term_scales_with_scored_positions_and_vocabulary() -> None:
    def head(vocab: int, scored: int) -> int:
        model = _lm(vocab=vocab)
        return train_step_flops(model, 4, 32, scored) - train_step_flops(model, 4, 32, 0)

    assert head(64, 16) == 2 * head(64, 8)
    assert head(128, 8) == 2 * head(64, 8)


def test_mqar_scores_k_positions_per_row_so_the_head_runs_on_b_times_k() -> None:
    task = create("mqar", seq_len=64, num_kv_pairs=8, vocab_size=256)
    _, y = task.make(6, np.random.default_rng(0))
    model = _lm(vocab=task.vocab_size)
    scored = int((y != IGNORE).sum())
    want = 3 * (6 * model.backbone.flops(64) + 2 * D * task.vocab_size * 6 * 8)
    assert train_step_flops(model, 6, 64, scored) == want


def test_matmul_peak_is_measured_on_the_threads_asked_and_restores_them(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(train_flops, "_matmul_flops_per_s",
                        lambda device, n, dtype: seen.append(torch.get_num_threads()) or 1e9)
    matmul_peak_flops.cache_clear()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert matmul_peak_flops(1, 64) == 1e9
        assert matmul_peak_flops(1, 64) == 1e9  # cached: measured once per thread count
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        matmul_peak_flops.cache_clear()


def _bench(mixer: str, backend: str, examples_per_s: float, bound: float | None) -> dict:
    extra = {"mixer": mixer, "backend": backend, "warmup_s": 1.0, "threads": 1,
             "examples_per_s": examples_per_s}
    if bound is not None:
        extra.update(bound_examples_per_s=bound, frac_of_bound=examples_per_s / bound)
    return {"group": "train step mqar n=64 V=1024 d=64 b=64", "name": f"test_train_step[{mixer}-{backend}]",
            "params": {"mixer": mixer, "backend": backend},
            "stats": {"median": 64 / examples_per_s, "min": 0.1, "max": 0.1, "rounds": 10},
            "extra_info": extra}


def test_speed_table_shows_the_bound_and_falls_back_to_eager_and_to_na(tmp_path) -> None:
    folder = tmp_path / "raw" / "pytest-benchmark"
    folder.mkdir(parents=True)
    old = [_bench("gla", "eager", 300.0, None), _bench("gla", "compiled", 600.0, None),  # before the bound
           _bench("rwkv", "eager", 100.0, None)]
    new = [_bench("mamba2", "eager", 200.0, 2000.0), _bench("mamba2", "compiled", 400.0, 2000.0),
           _bench("kda", "eager", 100.0, 1000.0),  # kda's compiled run is missing
           _bench("gla", "eager", 300.0, 1500.0)]  # newer than gla's compiled row, which has no bound
    (folder / "a_old.json").write_text(json.dumps({"benchmarks": old}))
    (folder / "b_new.json").write_text(json.dumps({"benchmarks": new}))
    write_report(tmp_path)
    [csv] = tmp_path.glob("train_speed_*.csv")
    t = pd.read_csv(csv).set_index("mixer")
    assert t.loc["mamba2", "bound_examples_per_s"] == 2000.0
    assert t.loc["mamba2", "compiled_frac_of_bound"] == pytest.approx(0.2)
    assert t.loc["kda", "eager_frac_of_bound"] == pytest.approx(0.1)
    assert t.loc["gla", "bound_examples_per_s"] == 1500.0 and pd.isna(t.loc["gla", "compiled_frac_of_bound"])
    assert pd.isna(t.loc["rwkv", "bound_examples_per_s"]) and t.loc["gla", "speedup"] == 2.0
    rows = {line.split("|")[1].strip(): line for line in next(tmp_path.glob("train_speed_*.md")).read_text()
            .splitlines() if line.startswith("| ")}
    assert "compiled / bound" in rows["mixer"] and "bound (examples/s)" in rows["mixer"]
    assert "| 2000 " in rows["mamba2"] and "| 0.200 " in rows["mamba2"]
    assert "0.100 (eager)" in rows["kda"] and "0.200 (eager)" in rows["gla"]
    assert rows["rwkv"].rstrip(" |").endswith("n/a")
