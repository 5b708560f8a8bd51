"""The generation experiment (bench/experiments/generation.py): a served batch generates the tokens
`LM.generate` does, on every decode backend and with the prefill split into calls; a batch over the
memory budget is skipped by design; the figures of a row add up; the suite sweeps batches up to the
budget, so a recurrent model goes further than attention at long context; the report's largest-batch
table reads them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from archbench.archs import LM, list_archs, resolve_model
from archbench.bench import grids
from archbench.bench.experiments import generation
from archbench.bench.experiments.generation import Generation, GenerationResult, GenerationSpec
from archbench.bench.grids import GridError, Params
from archbench.bench.report import write_report
from archbench.bench.runs.schema import Row


def lm_and_prompt(model: str, depth: int = 2, batch: int = 5, P: int = 9) -> tuple[LM, torch.Tensor]:
    torch.manual_seed(0)
    lm = LM(resolve_model(model, depth, 16), 32).double().eval()
    return lm, torch.randint(0, 32, (batch, P))


def test_served_tokens_are_generate_s_with_the_prefill_split_into_calls() -> None:
    # Five sequences in prefill calls of two (the last call holds one): each call's state is copied
    # into the batch's, including attention's position, which has no batch dimension.
    lm, prompt = lm_and_prompt("MA:M=mamba2,A=attention")
    served = generation.serve(lm, prompt, 6, "eager", prefill_batch=2, measure_memory=False)
    assert torch.equal(served.tokens, lm.generate(prompt, 6))
    assert len(served.step_s) == 5 and served.label == "eager"


def test_served_tokens_with_a_compiled_step_are_generate_s() -> None:
    lm, prompt = lm_and_prompt("attention", depth=1)  # Dynamo's trace alone: inductor in the slow test
    served = generation.serve(lm, prompt, 5, "compiled", prefill_batch=5, measure_memory=False,
                              compile_backend="eager")
    assert served.label == "compiled" and torch.equal(served.tokens, lm.generate(prompt, 5))


@pytest.mark.slow
@pytest.mark.parametrize("model", list_archs())
def test_inductor_served_tokens_are_generate_s_for_every_mixer(model: str) -> None:
    lm, prompt = lm_and_prompt(model, depth=1, batch=3)
    served = generation.serve(lm, prompt, 5, "compiled", prefill_batch=2, measure_memory=False)
    assert served.label == "compiled" and torch.equal(served.tokens, lm.generate(prompt, 5))


def test_generate_takes_a_step_hook() -> None:
    lm, prompt = lm_and_prompt("mamba2", depth=1)
    calls = []

    def step(token, states):
        calls.append(token.shape)
        return lm.decode_step(token, states)

    assert torch.equal(lm.generate(prompt, 4, step=step), lm.generate(prompt, 4)) and len(calls) == 3


def spec(model: str = "mamba2", batch: int = 2, budget: int = 1 << 30, **extra) -> GenerationSpec:
    return GenerationSpec(resolve_model(model, 2, 16), prompt_len=12, gen_len=4, batch=batch,
                          vocab_size=32, memory_budget_bytes=budget, device="cpu", dtype="float32",
                          **{"decode_backend": "eager", **extra})


def test_a_row_s_figures_add_up(copy_bandwidth_1e9) -> None:
    s = spec("attention", batch=3, prefill_tokens=24)  # prefill calls of two sequences
    r = Generation.run(s, budget_s=0.0)
    lm = generation.build_lm(s)
    assert s.prefill_batch == 2 and r.backend == "sdpa"
    assert r.state_bytes == lm.state_bytes(3, 16)  # the cache for P + G tokens, measured
    transient = max(p for p in (r.prefill_peak_bytes, r.step_peak_bytes) if p is not None) \
        if r.peak_mem_method else 0
    assert r.memory_needed_bytes == r.param_bytes + r.state_bytes + transient
    assert r.fits_budget and r.tokens_per_s == pytest.approx(3 * 3 / r.decode_s)
    assert r.e2e_tokens_per_s == pytest.approx(3 * 4 / (r.ttft_s + r.decode_s))
    assert r.bound_s == pytest.approx(r.bound_bytes / 1e9) and r.bound_bytes > r.state_bytes
    tight = Generation.run(dataclasses.replace(s, memory_budget_bytes=r.memory_needed_bytes - 1), 0.0)
    assert not tight.fits_budget


def test_a_batch_over_the_budget_is_skipped_before_anything_is_allocated() -> None:
    held = generation.held_bytes(spec(batch=4))
    lm = generation.build_lm(spec())
    assert held == sum(p.numel() * 4 for p in lm.parameters()) + lm.state_bytes(4, 16)
    assert Generation.skip_reason(spec(batch=4, budget=held)) is None
    assert Generation.skip_reason(spec(batch=4, budget=held - 1)).startswith("over the memory budget")
    assert Generation.series(spec(batch=8)) == (spec(batch=0), 8)


def test_the_suite_sweeps_batches_until_the_budget_and_recurrent_goes_further() -> None:
    # d_model 256, depth 4, P = 4k: attention holds 34 MB of KV cache per sequence, Mamba-2 0.17 MB.
    o = Params(models=["attention", "mamba2"], prompt_lens=[4096], memory_budget=512 << 20, max_batch=64)
    cells = grids.plan("generation", o).cells
    batches = {m: [c.spec.batch for c in cells if c.spec.model.name == m] for m in ("attention", "mamba2")}
    assert batches["attention"] == [1, 2, 4, 8, 16]  # 16 is the first over: kept, and skipped when run
    assert batches["mamba2"] == [1, 2, 4, 8, 16, 32, 64]  # the cap, within budget
    last = cells[len(batches["attention"]) - 1].spec
    assert Generation.skip_reason(last).startswith("over the memory budget")
    assert {(c.spec.model.depth, c.spec.model.d_model, c.spec.gen_len, c.spec.decode_backend)
            for c in cells} == \
        {(4, 256, 32, "auto")}
    with pytest.raises(GridError, match="needs a CUDA device"):
        grids.plan("generation", Params(decode_backend="cudagraph", memory_budget=1 << 30))
    one = grids.plan("generation", Params(models=["mamba2"], batch=8, memory_budget=1 << 30)).cells
    assert [c.spec.batch for c in one] == [8]


def _row(model: str, batch: int, fits: bool | None, tps: float = 100.0) -> dict:
    s = spec(model, batch=batch, budget=1 << 20)
    if fits is None:
        return Row("generation", s, None, "skipped: over the memory budget: …", {"device_name": "CPU"}, 0.0) \
            .to_json()
    r = GenerationResult(
        backend="sdpa" if model == "attention" else "chunked", ttft_s=0.1, token_latency_s=0.01,
        token_latency_p25_s=0.01, token_latency_p75_s=0.01, decode_s=0.03, tokens_per_s=tps * batch,
        e2e_tokens_per_s=tps, params=100, param_bytes=400, state_bytes=1000 * batch, prefill_peak_bytes=10,
        step_peak_bytes=5, peak_mem_method="torch_allocated", memory_needed_bytes=1410 * batch,
        fits_budget=fits, bound_bytes=500, bound_bandwidth=1e9, bound_s=5e-7, energy_j_per_token=None,
        energy_source=None, energy_window_s=None, warmup_s=1.0)
    return Row("generation", s, r, "ok", {"device_name": "CPU"}, 1.0).to_json()


def test_the_report_names_the_largest_batch_within_budget(tmp_path: Path) -> None:
    rows = [_row("attention", 1, True), _row("attention", 2, True), _row("attention", 4, None),
            _row("mamba2", 1, True), _row("mamba2", 2, True), _row("mamba2", 4, True),
            _row("mamba2", 8, False)]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "generation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = {p.name for p in write_report(tmp_path)}
    (largest,) = [n for n in written if n.endswith("_largest_batch.csv")]
    table = pd.read_csv(tmp_path / largest).set_index("model")
    assert table.loc["attention", "largest_batch"] == 2 and table.loc["mamba2", "largest_batch"] == 4
    assert table.loc["mamba2", "tokens_per_s"] == 400
    assert table.loc["attention", "stopped"] == "b=4: parameters + state over budget"
    assert table.loc["mamba2", "stopped"] == "b=8: measured memory over budget"
    by_batch = (tmp_path / largest.replace("largest_batch.csv", "by_batch.md")).read_text()
    assert "800 (over)" in by_batch and "skipped" in by_batch
    assert any(n.endswith("_throughput.png") for n in written)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cudagraph", "compiled"])
@pytest.mark.parametrize("model", ["attention", "mamba2", "MA:M=mamba2,A=attention"])
def test_served_tokens_on_cuda_are_generate_s(model: str, backend: str) -> None:
    # The captured graph replays over the batch's own state tensors, filled after capture; attention's
    # new position is copied back inside the graph.
    lm, prompt = lm_and_prompt(model, depth=2)
    lm, prompt = lm.cuda(), prompt.cuda()  # float64: no near-tie can flip an argmax between kernels
    served = generation.serve(lm, prompt, 6, backend, prefill_batch=2, measure_memory=False)
    assert served.label == backend and torch.equal(served.tokens, lm.generate(prompt, 6))


@pytest.mark.parametrize("argv, expected", [
    (["--gen-len", "1"], "--gen-len takes an integer >= 2"),
    (["--memory-budget", "lots"], "malformed --memory-budget 'lots'; give bytes such as 512M"),
    (["--memory-budget", "0"], "malformed --memory-budget '0'"),
    (["--decode-backend", "turbo"], "unknown decode backend 'turbo'; valid: auto, eager, compiled"),
    (["--decode-backend", "cudagraph"], "needs a CUDA device; choose from: auto, eager, compiled"),
    (["--prompt-len", "4k,x"], "malformed value 'x' in --prompt-len"),
    (["--max-batch", "0"], "malformed value '0' in --max-batch"),
])
def test_bad_generation_options_are_one_line_and_exit_2(cli, tmp_path, argv, expected) -> None:
    code, _, err = cli("run", "generation", *argv, "--out", str(tmp_path))
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    assert cli("run", "scaling", "--decode-backend", "cudagraph", "--out", str(tmp_path))[0] == 2


def test_memory_budget_sizes() -> None:
    from archbench.bench.cli import _size

    assert _size("512M", "cpu") == 512 << 20 and _size("2g", "cpu") == 2 << 30
    assert _size("1000", "cpu") == 1000
    assert 0 < _size("25%", "cpu") < _size("50%", "cpu")


def test_batches_after_a_failed_batch_are_skipped_naming_the_batch(tmp_path, monkeypatch) -> None:
    """A generation series runs over batches, not lengths: the skip says which batch failed."""
    from archbench.bench.runs import loop
    from archbench.bench.runs.cell import Cell
    from archbench.bench.runs.schema import is_retryable

    def run(cls, s, budget_s, progress=None):
        raise MemoryError("x")

    monkeypatch.setattr(Generation, "run", classmethod(run))
    rows = loop.run_cells([Cell("generation", spec(batch=b)) for b in (2, 4, 8)], tmp_path)
    assert [r.status for r in rows] == ["oom", "skipped: batch=2 was oom", "skipped: batch=2 was oom"]
    assert is_retryable(rows[1].status) and is_retryable("skipped: n=2 was oom")  # rows stored before
