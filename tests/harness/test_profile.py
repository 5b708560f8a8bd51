"""`archbench profile` (bench/experiments/decode_profile.py, bench/measure/profile.py): a decode step's
top ops beside its bound, printed and written under --out; bad input is one line and exit status 2."""

from __future__ import annotations

import json

import pytest

from archbench.bench.measure.profile import OUTSIDE, op_profile


@pytest.mark.parametrize("argv, expected", [
    (["profile", "nope"], "unknown model 'nope'"),
    (["profile", "mamba2,attention"], "profile takes one model"),
    (["profile", "mamba2", "--n", "0"], "malformed value '0' in --n"),
    (["profile", "mamba2", "--decode-backend", "fast"], "unknown decode backend 'fast'; valid: auto"),
    (["profile", "mamba2", "--decode-backend", "cudagraph", "--device", "cpu"], "needs a CUDA device"),
    (["profile", "mamba2-attn", "--depth", "3"], "depth 3 is not a multiple of 4"),
])
def test_bad_input_is_one_line_and_exit_2(cli, argv: list[str], expected: str) -> None:
    code, _, err = cli(*argv)
    assert code == 2 and expected in err and err.count("\n") == 1


def test_profile_prints_and_writes_the_top_ops_beside_the_bound(cli, tmp_path, copy_bandwidth_1e9) -> None:
    code, out, _ = cli("profile", "mamba2", "--n", "8", "--depth", "1", "--d-model", "16", "--device", "cpu",
                       "--decode-backend", "eager", "--reps", "3", "--out", str(tmp_path))
    assert code == 0
    md = tmp_path / "profile_mamba2_eager_L1_d16_b1_n8.md"
    record = json.loads((tmp_path / "profile_mamba2_eager_L1_d16_b1_n8.json").read_text())
    assert md.read_text() in out and "| op | where |" in out
    assert record["path"] == "eager" and record["bound_bandwidth"] == 1e9
    assert record["bound_s"] == pytest.approx(record["bound_bytes"] / 1e9)
    names = [op["name"] for op in record["ops"]]
    assert "aten::mm" in names or "aten::linear" in names  # the step's projections were recorded
    assert OUTSIDE in names


def test_op_profile_counts_calls_per_call_of_fn() -> None:
    import torch

    a = torch.randn(8, 8)
    ops, wall = op_profile(lambda: (a @ a).relu(), "cpu", reps=4, warmup=1)
    by_name = {op.name: op for op in ops}
    assert by_name["aten::mm"].calls == 1 and by_name["aten::relu"].calls == 1
    assert wall > 0 and ops == sorted(ops, key=lambda op: op.self_s, reverse=True)
    assert sum(op.share for op in ops) == pytest.approx(1, abs=0.05)  # self times + outside = the wall


def test_profile_files_stay_in_out_whatever_the_model_name(cli, tmp_path, copy_bandwidth_1e9) -> None:
    """Pattern letters may be any character but ':', ',' and '=': a '/' or '.' among them must not
    make a path that leaves --out (or names a folder that is not there)."""
    out = tmp_path / "a" / "b"
    code, _, err = cli("profile", "/../..:/=mamba2,.=attention", "--n", "8", "--depth", "6", "--d-model",
                       "16", "--device", "cpu", "--decode-backend", "eager", "--reps", "2", "--out", str(out))
    assert code == 0, err
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.parent for p in written] == [out, out] and {p.suffix for p in written} == {".md", ".json"}
    assert all(p.name.startswith("profile_") and "/" not in p.name[8:] for p in written)
