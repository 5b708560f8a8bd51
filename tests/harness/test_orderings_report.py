"""The published orderings table (bench/report/orderings.py): each claim holds, disagrees or waits on a
cell that has not learned or lacks a three-lr sweep. Small synthetic rows built through the schema."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import write_report
from archbench.bench.report.cells import best_lr, per_lr, prepare
from archbench.bench.report.frame import frame
from archbench.bench.report.orderings import ordering_rows
from archbench.bench.runs.schema import Row, read_rows
from archbench.tasks import TaskSpec

LRS = (1e-3, 3e-3, 1e-2)
PRIOR = 6.24  # ln 512: the answer prior of MQAR at V = 1024 (its 512 value tokens)


def _recall(model: str, acc: float, state: int, configs: dict | None = None, depth: int = 2,
            lrs: tuple[float, ...] = LRS, stuck: bool = False) -> list[dict]:
    """The cell at each lr: `acc` at the best lr, lower at the others; `stuck` puts its loss on the
    answer prior (the plateau) instead of well below it."""
    rows = []
    for i, lr in enumerate(lrs):
        a = acc if i == 0 else acc / 2
        spec = RetrievalSpec(model_spec(model, depth, configs=configs),
                             TaskSpec("mqar", {"seq_len": 64, "num_kv_pairs": 8, "vocab_size": 1024}),
                             TrainConfig(lr=lr), test_lens=(128,), device="cpu", dtype="float32")
        loss = PRIOR if stuck else 0.5
        result = RetrievalResult(
            backend="reference", params=1000, steps=10, examples_seen=640, train_seconds=1.0,
            state_bytes=state,
            accuracy=a, accuracy_by_len={"128": a}, test_len=128, accuracy_by_slice={}, final_loss=loss,
            stopped_early=False, curve={"examples": [320, 640], "loss": [loss, loss], "accuracy": [a, a]})
        rows.append(Row("retrieval", spec, result, "ok", PROV, 1.0).to_json())
    return rows


def _verdicts(tmp_path: Path, *cells: list[dict]) -> pd.DataFrame:
    write_rows(tmp_path, retrieval=[r for c in cells for r in c])
    best = best_lr(per_lr(prepare(frame(read_rows(tmp_path / "raw"), "retrieval"))))
    return ordering_rows(best[best["_ok"]])


def _one(rows: pd.DataFrame, claim: str, subject: str) -> str:
    got = rows[(rows["claim"] == claim) & (rows["subject"] == subject)]
    assert len(got) == 1, rows[["claim", "subject", "verdict"]]
    return got["verdict"].iloc[0]


@pytest.mark.parametrize(("small", "large", "verdict"), [(0.5, 0.95, "holds"), (0.95, 0.5, "disagrees"),
                                                          (0.93, 0.91, "holds")])  # within the tolerance
def test_accuracy_rising_with_state_is_checked_within_a_family(tmp_path: Path, small: float, large: float,
                                                               verdict: str) -> None:
    rows = _verdicts(tmp_path, _recall("mamba2", small, 1000, {"M": {"d_state": 4}}),
                     _recall("mamba2", large, 4000, {"M": {"d_state": 64}}))
    assert _one(rows, "state", "mamba2") == verdict


def test_a_cell_on_the_plateau_or_with_one_lr_leaves_the_claim_pending(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("mamba2", 0.002, 1000, {"M": {"d_state": 4}}, stuck=True),
                     _recall("mamba2", 0.95, 4000, {"M": {"d_state": 64}}),
                     _recall("deltanet", 0.99, 3000, lrs=(1e-3,)))
    state = _one(rows, "state", "mamba2")
    assert state.startswith("pending") and "d_state=4 plateau" in state
    delta = _one(rows, "delta", "deltanet vs mamba2")
    assert delta.startswith("pending") and "1 lr only" in delta


def test_delta_rule_against_mamba2_only_at_comparable_state(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("mamba2", 0.95, 1000), _recall("deltanet", 0.6, 1500),
                     _recall("kda", 0.2, 10_000))  # ten times the state: not compared
    assert _one(rows, "delta", "deltanet vs mamba2") == "disagrees"
    assert rows[rows["subject"] == "kda vs mamba2"].empty


def test_linear_attention_must_recall_least(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("linear_attention", 0.4, 1000), _recall("gla", 0.9, 1200),
                     _recall("retnet", 0.2, 1100))
    assert _one(rows, "linear", "gla vs linear_attention") == "holds"
    assert _one(rows, "linear", "retnet vs linear_attention") == "disagrees"


def test_hybrid_claims_against_its_own_stacks(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("mamba2", 0.3, 4000, depth=4),
                     _recall("attention", 0.99, 9000, depth=4),
                     _recall("MMMA:M=mamba2,A=attention", 0.97, 8000, depth=4),
                     _recall("AMMM:M=mamba2,A=attention", 0.2, 8000, depth=4),
                     _recall("MAMA:M=mamba2,A=attention", 0.9, 8000, depth=4))
    last, first = "MMMA:M=mamba2,A=attention (RRRA)", "AMMM:M=mamba2,A=attention (ARRR)"
    assert _one(rows, "one-in-4", last) == "holds"
    assert _one(rows, "floor", last) == "holds"
    assert _one(rows, "one-in-4", first) == "disagrees"
    assert _one(rows, "floor", first) == "disagrees"  # 0.2 below its recurrent stack's 0.3
    two = "MAMA:M=mamba2,A=attention (RARA)"
    assert _one(rows, "floor", two) == "holds"
    assert rows[(rows["claim"] == "one-in-4") & (rows["subject"] == two)].empty  # two in four


def test_one_in_four_does_not_apply_where_the_recurrent_stack_already_recalls(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("mamba2", 0.8, 4000, depth=4),
                     _recall("attention", 0.99, 9000, depth=4),
                     _recall("MMMA:M=mamba2,A=attention", 0.85, 8000, depth=4))
    assert _one(rows, "one-in-4", "MMMA:M=mamba2,A=attention (RRRA)").startswith("does not apply")


def test_the_report_writes_the_orderings_table(tmp_path: Path) -> None:
    write_rows(tmp_path, retrieval=_recall("mamba2", 0.5, 1000, {"M": {"d_state": 4}})
               + _recall("mamba2", 0.95, 4000, {"M": {"d_state": 64}}))
    write_report(tmp_path)
    (table,) = tmp_path.glob("retrieval_*_orderings.md")
    text = table.read_text()
    assert "1 holds" in text and "| state" in text


def test_an_ablation_at_the_same_state_is_not_a_state_size(tmp_path: Path) -> None:
    """A gate ablation holds the default's state: the state claim orders the family's own cells only."""
    rows = _verdicts(tmp_path, _recall("mamba2", 0.5, 1000, {"M": {"d_state": 4}}),
                     _recall("mamba2", 0.95, 4000), _recall("mamba2", 0.1, 4000, {"M": {"gate": "sigmoid"}}))
    state = rows[rows["claim"] == "state"]
    assert len(state) == 1 and state["verdict"].iloc[0] == "holds"
    assert "gate=sigmoid" not in state["cells"].iloc[0]


def test_a_claim_holds_while_the_other_cell_rises_when_its_leader_is_at_the_ceiling(tmp_path: Path) -> None:
    # deltanet at 0.99 (learned, three lrs) against mamba2 still on the plateau: no accuracy exceeds 1, so
    # mamba2 cannot end more than 0.05 above deltanet; at 0.9 it could, and the claim waits
    rows = _verdicts(tmp_path, _recall("deltanet", 0.99, 1000),
                     _recall("mamba2", 0.002, 1200, stuck=True),
                     _recall("kda", 0.9, 1100))
    delta = _one(rows, "delta", "deltanet vs mamba2")
    assert delta.startswith("holds:") and "mamba2 plateau" in delta
    assert _one(rows, "delta", "kda vs mamba2").startswith("pending")


def test_a_pending_leader_leaves_the_claim_pending_even_at_the_ceiling(tmp_path: Path) -> None:
    rows = _verdicts(tmp_path, _recall("deltanet", 0.99, 1000, lrs=(1e-3,)),
                     _recall("mamba2", 0.002, 1200, stuck=True))
    assert _one(rows, "delta", "deltanet vs mamba2").startswith("pending")


def test_a_pending_cell_already_above_an_eligible_leader_disagrees(tmp_path: Path) -> None:
    # mamba2 with one lr stands at 0.9 against deltanet's learned, swept 0.6 at comparable state: more lrs
    # can only raise mamba2's best, so the delta rule is already behind
    rows = _verdicts(tmp_path, _recall("deltanet", 0.6, 1000), _recall("mamba2", 0.9, 1200, lrs=(1e-3,)))
    delta = _one(rows, "delta", "deltanet vs mamba2")
    assert delta.startswith("disagrees:") and "1 lr only" in delta


def test_one_in_4_does_not_apply_once_the_recurrent_stack_already_recalls_half(tmp_path: Path) -> None:
    hybrid = "RRRX:R=mamba2,X=attention"
    rows = _verdicts(tmp_path, _recall(hybrid, 0.95, 3000, depth=4),
                     _recall("mamba2", 0.6, 2000, depth=4, lrs=(1e-3, 3e-3)),  # two lrs: pending
                     _recall("attention", 0.99, 9000, depth=4))
    verdict = _one(rows, "one-in-4", f"{hybrid} (RRRA)")
    assert verdict.startswith("does not apply") and "2 lrs only" in verdict
