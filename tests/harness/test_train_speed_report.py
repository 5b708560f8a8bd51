"""The training-speed table `archbench report` makes from bench/test_train_speed.py's JSON."""

import json

import pandas as pd

from archbench.bench.report.write import write_report


def _bench(mixer: str, backend: str, median: float, warmup: float) -> dict:
    return {"group": "train step mqar n=64 V=1024 d=64 b=64", "name": f"test_train_step[{mixer}-{backend}]",
            "params": {"mixer": mixer, "backend": backend},
            "stats": {"median": median, "min": median, "max": median, "rounds": 10},
            "extra_info": {"mixer": mixer, "backend": backend, "warmup_s": warmup, "threads": 1,
                           "examples_per_s": round(64 / median, 1)}}


def test_eager_and_compiled_side_by_side_with_their_ratio_and_no_invented_figure(tmp_path) -> None:
    folder = tmp_path / "raw" / "pytest-benchmark"
    folder.mkdir(parents=True)
    benches = [_bench("mamba2", "eager", 0.4, 1.0), _bench("mamba2", "compiled", 0.2, 30.0),
               _bench("kda", "eager", 0.8, 1.0)]  # kda's compiled run is missing
    (folder / "train_speed.json").write_text(json.dumps({"benchmarks": benches}))
    write_report(tmp_path)
    [csv] = tmp_path.glob("train_speed_*.csv")
    t = pd.read_csv(csv).set_index("mixer")
    assert t.loc["mamba2", "speedup"] == 2.0
    assert t.loc["mamba2", "compile_warmup_s"] == 30.0
    assert pd.isna(t.loc["kda", "compiled_examples_per_s"]) and pd.isna(t.loc["kda", "speedup"])
    md = next(tmp_path.glob("train_speed_*.md")).read_text()
    assert "2.00×" in md and "n/a" in md
