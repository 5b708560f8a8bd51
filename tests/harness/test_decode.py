"""The decode step as served (bench/experiments/decode.py) and scaling's decode cells: a compiled step
gives the eager step's output and state for every mixer, falls back to eager (and says so) where it
cannot compile — an unusable inductor cache folder included —, runs at a fixed context however often it
is timed; a decode row carries its bound."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from archbench.archs import Backbone, list_archs, resolve_model
from archbench.bench.experiments import decode, scaling
from archbench.bench.measure import peaks


def filled(model: str, depth: int = 2, d_model: int = 16, batch: int = 2, n: int = 21,
           dtype: torch.dtype = torch.float64) -> tuple[Backbone, torch.Tensor, list]:
    """A small backbone, one token, and the state after prefilling n tokens (non-zero: a real test)."""
    torch.manual_seed(0)
    bb = Backbone(resolve_model(model, depth, d_model)).to(dtype).eval()
    with torch.no_grad():
        _, states = bb.prefill(torch.randn(batch, n, d_model, dtype=dtype), max_len=n + 4)
    return bb, torch.randn(batch, d_model, dtype=dtype), states


def compiled_matches_eager(model: str, compile_backend: str, depth: int = 2, batch: int = 2) -> None:
    bb, x, states = filled(model, depth, batch=batch)
    leaves, tree = decode.flatten(states)
    fn = decode.functional(bb.step, tree)
    mine = [leaf.clone() for leaf in leaves]
    compiled, label = decode.compile_fn(fn, (x, *[leaf.clone() for leaf in leaves]), backend=compile_backend)
    assert label == "compiled"
    with decode.serving():
        y, new = compiled(x, *mine)
        y_ref, new_ref = fn(x, *leaves)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    for got, kept, ref, kept_ref in zip(new, mine, new_ref, leaves, strict=True):
        torch.testing.assert_close(kept if got is None else got, kept_ref if ref is None else ref,
                                   rtol=1e-9, atol=1e-10)


def test_compiled_attention_step_matches_eager_fast() -> None:
    # Dynamo's trace without inductor (a second, not tens): the flat wrapper, fullgraph capture and the
    # state it hands back are what is checked; inductor itself in the slow test below. Attention writes
    # its cache in place and returns a new position: both kinds of state tensor.
    compiled_matches_eager("attention", "eager", depth=1)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("model", list_archs())
def test_inductor_step_matches_eager_for_every_mixer(model: str, batch: int) -> None:
    # Batch 1 is the served case: its one-row matmuls are rewritten as multiply-and-sum (decode.py,
    # item 5) and rotary turns real (ops/rope.py); batch 2 keeps the matmuls.
    compiled_matches_eager(model, "inductor", depth=1, batch=batch)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mamba2", "attention", "retnet"])
def test_a_directly_called_graph_matches_eager(model: str) -> None:
    """The scaling experiment's timed step calls inductor's graph without Dynamo (decode.py, item 7): the
    same output, and the same in-place state updates, as the eager step."""
    bb, x, states = filled(model, depth=1, batch=1)
    leaves, tree = decode.flatten(states)
    fn = decode.functional(bb.step, tree)
    mine = [leaf.clone() for leaf in leaves]
    call, label = decode.compile_call(fn, (x, *mine))
    assert label == "compiled"
    for leaf, start in zip(mine, leaves, strict=True):  # the warm-up stepped `mine`: start again
        leaf.copy_(start)
    with torch.no_grad():
        out = call()
        ref = [leaf.clone() for leaf in leaves]
        y_ref, new_ref = fn(x, *ref)
    torch.testing.assert_close(out[0], y_ref, rtol=1e-9, atol=1e-10)
    for got, want, made in zip(mine, ref, new_ref, strict=True):
        if made is None:  # updated in place by the step (a recurrent state, a KV cache)
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_a_step_that_cannot_compile_runs_eager_and_says_why() -> None:
    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    bb, x, states = filled("mamba2", depth=1)
    leaves, tree = decode.flatten(states)
    fn = decode.functional(bb.step, tree)
    run, label = decode.compile_fn(fn, (x, *leaves), backend=broken)
    assert run is fn and label.startswith("eager (compile failed: ") and "no C++ compiler here" in label


def test_an_unusable_inductor_cache_folder_falls_back_to_eager_naming_it(tmp_path) -> None:
    blocker = tmp_path / "a-file"  # a file where the cache folder's parent should be: no folder fits
    blocker.write_text("")
    cause = f"NotADirectoryError: TORCHINDUCTOR_CACHE_DIR={blocker}/cache: Not a directory"
    out = tmp_path / "out"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(blocker / "cache")}  # read once per process
    argv = [sys.executable, "-m", "archbench.bench.cli", "run", "scaling", "--models", "gla,mamba2",
            "--d-model", "16", "--depth", "1", "--lens", "32", "--budget", "0.01", "--modes", "decode",
            "--out", str(out)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for path in (out / "raw").glob("*.jsonl") for line in path.open()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["result"]["backend"].split("+", 1)[1] for r in rows} == {f"eager (compile failed: {cause})"}
    train = "from archbench.bench.experiments.train import TrainLoss; print(TrainLoss(None, True).note)"
    done = subprocess.run([sys.executable, "-c", train], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == f"+train eager (compile failed: {cause})", done.stderr[-2000:]


def test_a_time_limit_while_compiling_is_not_a_compile_failure() -> None:
    class CellTimeout(Exception):  # as the run loop's alarm raises it (bench/runs/cell.py)
        pass

    def slow(gm, example_inputs):
        raise CellTimeout("exceeded 120 s")

    bb, x, states = filled("mamba2", depth=1)
    leaves, tree = decode.flatten(states)
    with pytest.raises(CellTimeout):
        decode.compile_fn(decode.functional(bb.step, tree), (x, *leaves), backend=slow)


def test_resolve_names_the_choices() -> None:
    assert decode.resolve("auto", "cpu") == "compiled" and decode.resolve("eager", "cpu") == "eager"
    with pytest.raises(ValueError, match="needs a CUDA device; choose from: auto, eager, compiled"):
        decode.resolve("cudagraph", "cpu")
    with pytest.raises(ValueError, match="choose from: auto, eager, compiled, cudagraph"):
        decode.resolve("fast", "cpu")


def test_state_traffic_counts_what_a_step_reads_and_changes() -> None:
    bb, x, states = filled("attention", depth=1, batch=2)
    leaves, tree = decode.flatten(states)
    read, written = decode.state_traffic(decode.functional(bb.step, tree), x, leaves)
    k = states[0]["k"]  # (B, H, max_len, hd)
    assert read == sum(leaf.numel() * leaf.element_size() for leaf in leaves)
    # One new key and value per sequence, and the position (8 bytes): the cache's other slots are read only.
    assert written == 2 * k.shape[0] * k.shape[1] * k.shape[3] * k.element_size() + 8
    bb, x, states = filled("gla", depth=1)
    leaves, tree = decode.flatten(states)
    read, written = decode.state_traffic(decode.functional(bb.step, tree), x, leaves)
    assert written == read  # a recurrent state is rewritten whole


def spec(model: str = "mamba2", **extra) -> scaling.ScalingSpec:
    return scaling.ScalingSpec(resolve_model(model, 1, 16), mode="decode", seq_len=12, batch=1, device="cpu",
                               dtype="float32", **extra)


def test_a_timed_compiled_decode_step_stays_at_context_n(monkeypatch) -> None:
    # Attention returns its next position as a new tensor; repeats must not write it back (the cache
    # holds n + 1 slots, so a drifting position would fail by the second call).
    monkeypatch.setattr(decode, "compile_fn", lambda fn, args, **kw: (fn, "compiled"))  # no inductor here
    dec = scaling.decode_call(scaling.build_backbone(spec("attention")), spec("attention", compile_step=True))
    for _ in range(3):
        dec.call()
    assert dec.path == "compiled" and int(dec.state[0]["pos"]) == 12


def test_a_decode_row_carries_its_bound(monkeypatch, copy_bandwidth_1e9) -> None:
    monkeypatch.setattr(scaling.peaks, "device_peaks", lambda device: peaks.Peaks(
        None, None, False, None, None, "cpu", "float32"))
    s = spec()
    r = scaling.Scaling.run(s, budget_s=0.0)
    bb = scaling.build_backbone(s)
    params = sum(p.numel() * p.element_size() for p in bb.parameters())
    state = bb.state_bytes(1, 13)  # the cache of n + 1 tokens, read whole; a recurrent state: rewritten
    assert r.backend == "chunked" and r.bound_bytes == params + 2 * state
    assert r.bound_bandwidth == 1e9 and r.bound_s == pytest.approx(r.bound_bytes / 1e9)
    assert dataclasses.replace(s, compile_step=True) != s  # a compiled cell is a cell of its own


def test_copy_bandwidth_is_measured_once_per_working_set_size(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(peaks, "_copy_bytes_per_s", lambda device, nbytes: calls.append(nbytes) or 5e10)
    peaks._copy_bandwidth.cache_clear()
    try:
        assert peaks.copy_bandwidth("cpu", 3 << 20) == (5e10, 4 << 20)  # rounded up to a power of two
        assert peaks.copy_bandwidth("cpu", 4 << 20) == (5e10, 4 << 20)  # the same size: not measured again
        assert peaks.copy_bandwidth("cpu", 10)[1] == peaks.WORKING_SET_MIN
    finally:
        peaks._copy_bandwidth.cache_clear()
    threads = 2 if torch.get_num_threads() > 1 else 1  # all threads and one thread, once each
    assert calls[:threads] == [2 << 20] * threads and len(calls) == 2 * threads
