"""A peer project's own run (results/raw/peer/*.json) is drawn beside archbench's runs of the same task
point, recipe and lr — and only those (bench/report/peer.py)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import write_report
from archbench.bench.runs.schema import Row
from archbench.tasks import TaskSpec

TASK = {"seq_len": 64, "num_kv_pairs": 8, "vocab_size": 256}


def _row(recipe: str, lr: float, acc: float) -> dict:
    train = TrainConfig.for_recipe(recipe, lr=lr, max_examples=200, n_train=100, n_test=50)
    spec = RetrievalSpec(model_spec("attention"), TaskSpec("mqar", TASK), train, test_lens=(128,),
                         device="cpu", dtype="float32")
    curve = {"examples": [100, 200], "loss": [4.0, 3.0], "accuracy": [acc / 2, acc]}
    result = RetrievalResult(backend="sdpa", params=1, state_bytes=1, steps=3, examples_seen=200,
                             train_seconds=1.0, accuracy=acc, accuracy_by_len={"128": acc}, test_len=128,
                             accuracy_by_slice={}, final_loss=3.0, stopped_early=False, curve=curve)
    return Row("retrieval", spec, result, "ok", PROV, 1.0).to_json()


def test_peer_run_is_drawn_beside_the_matching_archbench_run(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "peer").mkdir(parents=True)
    rows = [_row("zoology", 2e-3, 0.125), _row("zoology", 1e-2, 0.5), _row("archbench", 2e-3, 0.9)]
    write_rows(tmp_path, retrieval=rows)
    mha = {"sequence_mixer": {"name": "zoology.mixers.attention.MHA"}}
    peer = [{"source": "HazyResearch/zoology abc123", "config": {"task": {"name": "mqar", **TASK},
                                                                  "trainer": {"learning_rate": 2e-3},
                                                                  "model_config": mha},
             "epochs": [{"epoch": 1, "examples": 100, "train_loss": 4.1, "valid_accuracy": 0.1},
                        {"epoch": 2, "examples": 200, "train_loss": 3.2, "valid_accuracy": 0.13}]}]
    (raw / "peer" / "zoo.json").write_text(json.dumps(peer))
    write_report(tmp_path)
    md = (tmp_path / "peer_zoo.md").read_text()
    assert "HazyResearch/zoology (its trainer)" in md and "0.130" in md
    ours = [line for line in md.splitlines() if line.startswith("| archbench")]
    # the zoology-recipe run at the peer's lr only: not lr 1e-2, not the archbench recipe
    assert len(ours) == 2 and all("0.125" in line or "0.062" in line for line in ours)
    assert (tmp_path / "peer_zoo.png").read_bytes().startswith(b"\x89PNG")
