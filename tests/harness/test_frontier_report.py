"""`archbench report` on frontier-suite rows: seeds averaged per lr, state-size variants kept apart,
the hybrid ratio/placement grid, accuracy by test length, and the recall–cost frontier (its Pareto
front, and no cost invented for a model that lacks one). Small synthetic rows built through the schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from helpers.rows import PROV, model_spec, write_rows

from archbench.bench.experiments.retrieval import RetrievalResult, RetrievalSpec
from archbench.bench.experiments.scaling import ScalingResult, ScalingSpec
from archbench.bench.experiments.train import TrainConfig
from archbench.bench.report import MARK_END, MARK_START, frontier, write_report
from archbench.bench.report.frontier import pareto_front
from archbench.bench.runs.schema import Row
from archbench.tasks import TaskSpec

DEV = "test-cpu-2-cpus"  # helpers.rows.DEVICE as the file names spell it
RET = "retrieval_cpu"  # recall tables pool every CPU that trained cells (schema `place`)
D8, D32 = {"M": {"d_state": 8}}, {"M": {"d_state": 32}}
M8, M32 = "mamba2 d_state=8", "mamba2 d_state=32"


def _recall(model: str, lr: float, acc: float, seed: int = 0, configs: dict | None = None, depth: int = 2,
            vocab: int = 1024, state: int = 1000, recipe: str = "archbench", prov: dict = PROV,
            budget: int | None = None) -> dict:
    spec = RetrievalSpec(model_spec(model, depth, configs=configs),
                         TaskSpec("mqar", {"seq_len": 64, "num_kv_pairs": 4, "vocab_size": vocab}),
                         dataclasses.replace(TrainConfig.for_recipe(recipe), lr=lr, seed=seed,
                                             **({"max_examples": budget} if budget else {})),
                         test_lens=(128, 256), device="cpu", dtype="float32", seed=seed)
    result = RetrievalResult(
        backend="reference", params=1000, steps=10, examples_seen=640, train_seconds=1.0, state_bytes=state,
        # n=64 only in `accuracy`, as in the frontier's rows (scored at 2n, 4n, … beyond it)
        accuracy=acc, accuracy_by_len={"128": acc / 2, "256": acc / 4}, test_len=256,
        accuracy_by_slice={"depth 0.0-0.5": acc, "depth 0.5-1.0": acc}, final_loss=0.5, stopped_early=False,
        # a flat curve well below the answer prior's loss: learned at >= 0.9, else flat (capacity-limited)
        curve={"examples": [320, 640], "loss": [0.5, 0.5], "accuracy": [acc, acc]})
    return Row("retrieval", spec, result, "ok", prov, 1.0).to_json()


def _cost(model: str, mode: str, n: int, t: float | None, state: int, configs: dict | None = None,
          status: str = "ok") -> dict:
    spec = ScalingSpec(model_spec(model, 2, configs=configs), mode=mode, seq_len=n, batch=1, device="cpu",
                       dtype="float32")
    result = None if status != "ok" else ScalingResult(
        backend="chunked", time_median_s=t, time_min_s=t, time_max_s=t, time_p25_s=t, time_p75_s=t, reps=3,
        peak_mem_bytes=None, peak_mem_method=None, state_bytes=state, params=1000, energy_j=None,
        energy_j_per_token=None, energy_source=None, flops=1000, tokens_per_s=1 / t, flops_per_s=None,
        bytes_per_s=None, flops_frac_measured=None, bytes_frac_measured=None, flops_frac_spec=None,
        bytes_frac_spec=None)
    return Row("scaling", spec, result, status, PROV, 1.0).to_json()


def _rows() -> tuple[list[dict], list[dict]]:
    recall = [
        # mamba2 at d_state 8: the best single run is lr 1e-3 (1.0), the best mean lr 3e-3 (0.8 ± 0.05).
        _recall("mamba2", 1e-3, 1.0, 0, D8), _recall("mamba2", 1e-3, 0.2, 1, D8),
        _recall("mamba2", 3e-3, 0.85, 0, D8), _recall("mamba2", 3e-3, 0.75, 1, D8),
        # ... and at d_state 32, same task point: a cell of its own, not a third seed of the one above.
        _recall("mamba2", 1e-3, 0.9, 0, D32, state=4000), _recall("mamba2", 3e-3, 0.5, 0, D32, state=4000),
        _recall("attention", 1e-3, 0.98, state=900_000), _recall("attention", 1e-3, 0.5, vocab=8192),
        _recall("mamba", 1e-3, 0.5, state=2000), _recall("gated_deltanet", 1e-3, 0.95, state=3000),
        # Depth 4: the ratio/placement grid.
        _recall("mamba2", 1e-3, 0.3, depth=4), _recall("attention", 1e-3, 1.0, depth=4),
        _recall("AMMM:M=mamba2,A=attention", 1e-3, 0.9, depth=4),
        _recall("MMMA:M=mamba2,A=attention", 1e-3, 0.95, depth=4),
        _recall("mamba2-attn", 1e-3, 0.97, depth=4),  # preset: MMAM
        _recall("MMMS:M=mamba2,S=swa", 1e-3, 0.6, depth=4),
    ]
    cost = [
        _cost("attention", "decode", 4096, 1e-3, 4 << 20),
        _cost("attention", "decode", 16384, 4e-3, 16 << 20),
        _cost("attention", "prefill", 4096, 0.1, 4 << 20),
        _cost("mamba2", "decode", 4096, 2e-4, 1000, D8), _cost("mamba2", "decode", 16384, 2e-4, 1000, D8),
        _cost("mamba2", "decode", 4096, 3e-4, 4000, D32),
        _cost("mamba2", "decode", 16384, None, 0, D32, status="oom"),
        _cost("mamba", "decode", 4096, 5e-4, 2000), _cost("mamba", "decode", 16384, 5e-4, 2000),
        # gated_deltanet: no scaling rows at all.
    ]
    return recall, cost


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("frontier")
    recall, cost = _rows()
    results = write_rows(tmp / "results", retrieval=recall, scaling=cost)
    readme = tmp / "README.md"
    readme.write_text(f"# P\n{MARK_START}\n{MARK_END}\n## More\n")
    with pytest.MonkeyPatch.context() as mp:  # these rows sweep one or two lrs; the sweep rule: its own test
        mp.setattr(frontier, "MIN_LRS", 1)
        write_report(results, readme=readme)
    return results, readme.read_text()


def _md_rows(text: str) -> dict[str, list[str]]:
    """First cell -> the row's cells, for every table row of a Markdown file (later sections win)."""
    return {cells[0]: cells for line in text.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_seeds_are_averaged_and_the_best_lr_is_the_best_mean(report) -> None:
    results, _ = report
    acc = pd.read_csv(results / f"{RET}_accuracy.csv")
    row = acc[(acc["model"] == M8)].iloc[0]
    # The best single run (lr 1e-3, seed 0: 1.0) is not the cell's figure: the best mean over seeds is.
    assert row["accuracy"] == pytest.approx(0.8) and row["best_lr"] == pytest.approx(3e-3)
    assert (row["acc_min"], row["acc_max"], row["seeds"]) == (pytest.approx(0.75), pytest.approx(0.85), 2)
    md = (results / f"{RET}_accuracy.md").read_text()
    assert "half their min–max range" in md.splitlines()[0]
    assert "0.800 ±0.050 (2 seeds)" in _md_rows(md)[M8][3]
    sweep = pd.read_csv(results / f"{RET}_lr_sweep.csv")
    low = sweep[(sweep["model"] == M8) & (sweep["lr"] == 1e-3)].iloc[0]
    assert low["accuracy"] == pytest.approx(0.6) and low["seeds"] == 2 and not low["best"]
    assert _md_rows((results / f"{RET}_lr_sweep.md").read_text())[M8][4:] == \
        ["0.600 ±0.400 (2 seeds) ±", "0.800 ±0.050 (2 seeds) ▭", "0.003, highest"]
    # ±: one seed learned, one not; "highest": the cell did not learn at the top of its sweep
    assert (results / f"{RET}_mqar-v-1024_acc_vs_lr.png").read_bytes().startswith(b"\x89PNG")


def test_state_size_variants_and_vocabularies_stay_separate_cells(report) -> None:
    results, _ = report
    acc = pd.read_csv(results / f"{RET}_accuracy.csv")
    v1024 = acc[(acc["vocab_size"] == 1024) & (acc["depth"] == 2)].set_index("model")
    assert v1024.loc[M8, "state_bytes"] == 1000 and v1024.loc[M32, "state_bytes"] == 4000
    assert v1024.loc[M32, "accuracy"] == pytest.approx(0.9) and v1024.loc[M32, "seeds"] == 1
    assert (v1024["family"] == "mamba2").sum() == 2
    attention = acc[(acc["model"] == "attention") & (acc["depth"] == 2)].set_index("vocab_size")["accuracy"]
    assert attention.to_dict() == {1024: pytest.approx(0.98), 8192: pytest.approx(0.5)}


def test_pareto_front_keeps_only_undominated_points() -> None:
    cost, recall = [1.0, 2.0, 3.0, 2.5, 2.0, 1.0], [0.5, 0.7, 0.9, 0.6, 0.7, 0.4]
    # (2.5, 0.6) is beaten by (2.0, 0.7); (1.0, 0.4) by (1.0, 0.5) at equal cost; equal points both stay.
    assert pareto_front(cost, recall) == [True, True, True, False, True, False]
    assert pareto_front([], []) == []


def test_frontier_front_leaves_out_dominated_models(report) -> None:
    results, _ = report
    pts = pd.read_csv(results / f"frontier_{DEV}_float32_decode_4k.csv")
    pts = pts[(pts["task"] == "mqar V=1024") & (pts["depth"] == 2)].set_index("model")
    # mamba: decode 5e-4 s at recall 0.5, beaten by mamba2 d_state=32 (3e-4 s, 0.9).
    assert pts["on_front"].to_dict() == {"attention": True, M8: True, M32: True, "mamba": False,
                                         "gated_deltanet": pts.loc["gated_deltanet", "on_front"]}
    assert pd.isna(pts.loc["gated_deltanet", "on_front"])  # no cost: neither on nor off the front
    md = (results / f"frontier_{DEV}_float32_decode_4k.md").read_text()
    section = md.split("## mqar V=1024")[1].split("##")[0]
    front = [c[0] for line in section.splitlines() if line.startswith("| ")
             for c in [[x.strip() for x in line.strip("|").split("|")]]][1:]  # below the header
    assert front == [f"{M8} L=2", f"{M32} L=2", "attention L=2"]  # cheapest first; no mamba
    assert (results / f"frontier_{DEV}_float32_decode_4k.png").read_bytes().startswith(b"\x89PNG")


def test_a_missing_cost_is_never_invented(report) -> None:
    results, readme = report
    pts = pd.read_csv(results / f"frontier_{DEV}_float32_decode_16k.csv")
    pts = pts[(pts["task"] == "mqar V=1024") & (pts["depth"] == 2)].set_index("model")
    assert pd.isna(pts.loc[M32, "time_median_s"]) and pts.loc[M32, "cost_backend_or_reason"] == "oom"
    assert pd.isna(pts.loc["gated_deltanet", "time_median_s"])
    assert pts.loc["gated_deltanet", "cost_backend_or_reason"] == "not measured"
    md = (results / f"frontier_{DEV}_float32_decode_16k.md").read_text()
    assert f"{M32} L=2 (oom)" in md and "gated_deltanet L=2 (not measured)" in md
    costs = _md_rows((results / f"frontier_{DEV}_float32_costs.md").read_text())
    # every measure some model has (no model has prefill at 16k or energy), none guessed (after recall, lrs)
    assert costs["gated_deltanet L=2"][3:] == ["n/a"] * 4
    # state bytes at 16k, decode at 4k and 16k
    assert costs["attention L=2"][3:6] == ["16.0 MiB", "1.00 ms", "4.00 ms"]
    assert costs["mamba L=2"][4] == "500 µs" and costs["mamba L=2"][6] == "n/a"  # decode 4k; no prefill row
    # No energy counter anywhere: no energy chart or table at all, and no joule figure in the headline.
    assert not list(results.glob("frontier_*_decode_j_*"))
    assert "energy per token" not in (results / f"frontier_{DEV}_float32_costs.md").read_text()
    assert (results / "README.md").read_text().count("energy: no counter on this CPU") == 1  # said once
    assert " J" not in readme and "µJ" not in readme
    assert "µJ" not in (results / "SUMMARY.md").read_text()


def test_hybrid_grid_by_ratio_and_placement(report) -> None:
    results, _ = report
    md = (results / f"{RET}_hybrid.md").read_text()
    section = md.split("depth 4")[1]
    header = next(line for line in section.splitlines() if line.startswith("| recurrent"))
    assert [c.strip() for c in header.strip("|").split("|")][2:] == ["RRRR", "ARRR", "RRAR", "RRRA", "AAAA"]
    rows = {tuple(cells[:2]): cells[2:] for line in section.splitlines() if line.startswith("| mamba2")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    assert rows["mamba2", "attention"] == ["0.300 ▭", "0.900", "0.970 (mamba2-attn)", "0.950", "1.000"]
    assert rows["mamba2", "swa"] == ["0.300 ▭", "-", "-", "0.600 ▭", "-"]  # no pure swa stack: none invented
    assert "`mamba2-attn`: MMAM (M=mamba2, A=attention) → RRAR" in section
    assert "depth 2" not in md  # no hybrid at depth 2: no grid there


def test_accuracy_by_test_length_marks_the_training_length(report) -> None:
    results, _ = report
    md = (results / f"{RET}_acc_by_len.md").read_text()
    assert "| 64 (train) | 128 | 256 |" in md.replace("   ", " ").replace("  ", " ")
    csv = pd.read_csv(results / f"{RET}_acc_by_len.csv")
    m8 = csv[(csv["model"] == M8)].set_index("test_len")["accuracy"]  # best lr's seeds: (0.85 + 0.75) / 2
    assert m8.to_dict() == {64: pytest.approx(0.8), 128: pytest.approx(0.4), 256: pytest.approx(0.2)}
    assert "depth 0.0-0.5" in (results / f"{RET}_acc_by_slice.md").read_text()


def test_readme_first_screen_and_summary(report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results, readme = report
    block = readme.split(MARK_START)[1].split(MARK_END)[0]
    # The headline figure, written by the report, and one short table: each pure family at its defaults.
    image = f"results/frontier_{DEV}_float32_headline.png"
    assert f"]({image})" in block and (results.parent / image).read_bytes().startswith(b"\x89PNG")
    rows = _md_rows(block)
    assert rows["model"][1:] == ["recall", "state bytes at n=16k", "decode time per token at context 16k"]
    assert rows["attention L=2"][1:] == ["0.98", "16.0 MiB", "4.00 ms"]
    assert rows["gated_deltanet L=2"][1:] == ["0.95", "n/a", "n/a"]  # no cost measured: none invented
    assert "mamba2-attn" not in block and "AMMM" not in block  # hybrids and variants: SUMMARY.md's
    assert "V=8192" not in block  # one task point: the one with the most measured models
    assert "](results/SUMMARY.md)" in block and "](results/README.md)" in block
    assert "Prefill time" not in block and "MQAR V=1024 accuracy" not in block  # the tables stay in results/
    summary = (results / "SUMMARY.md").read_text()
    front = f"{M8} L=2 0.80 @ 200 µs → {M32} L=2 0.90 @ 300 µs → attention L=2 0.98 @ 1.00 ms"
    assert front in summary and "MQAR V=1024 accuracy" in summary
    assert f"](frontier_{DEV}_float32_headline.png)" in summary
    # Without a frontier (no scaling row of a recall model) the block says what it needs.
    recall, cost = _rows()
    results = write_rows(tmp_path / "results", retrieval=recall[6:7], scaling=[])
    other = tmp_path / "README.md"
    other.write_text(f"{MARK_START}\n{MARK_END}\n")
    write_report(results, readme=other)
    assert "No headline yet" in other.read_text() and "archbench run frontier" in other.read_text()



def test_only_cells_that_learned_at_the_best_of_three_lrs_stand_on_a_front(tmp_path: Path) -> None:
    """A cell on the answer-prior plateau, a still-rising one and a one-lr one are named under the table
    with why, never put on the front, however cheap (the report's own MIN_LRS, no monkeypatch)."""
    def run(model: str, lr: float, acc: float, loss: list[float], accs: list[float], state: int) -> dict:
        row = _recall(model, lr, acc, state=state)
        row["result"]["curve"] = {"examples": [160, 320, 480, 640], "loss": loss, "accuracy": accs}
        return row

    plateau, learned = [6.2, 6.2, 6.2, 6.2], [2.0, 1.0, 0.3, 0.1]
    lrs = (1e-3, 3e-3, 1e-2)
    recall = [run("attention", lr, 0.98, learned, [0.2, 0.6, 0.9, 0.98], 900_000) for lr in lrs]
    recall += [run("mamba2", lr, 0.002, plateau, [0.002] * 4, 1000) for lr in lrs]
    recall += [run("mamba", lr, 0.4, [5.0, 4.0, 3.0, 2.0], [0.1, 0.2, 0.3, 0.4], 2000) for lr in lrs]
    recall += [run("gated_deltanet", 1e-3, 0.95, learned, [0.2, 0.6, 0.9, 0.95], 3000)]
    cost = [_cost("attention", "decode", 4096, 1e-3, 4 << 20), _cost("mamba2", "decode", 4096, 2e-4, 1000),
            _cost("mamba", "decode", 4096, 5e-4, 2000), _cost("gated_deltanet", "decode", 4096, 3e-4, 3000)]
    results = write_rows(tmp_path / "results", retrieval=recall, scaling=cost)
    write_report(results)
    pts = pd.read_csv(results / f"frontier_{DEV}_float32_decode_4k.csv").set_index("model")
    assert pts["on_front"].fillna(False).to_dict() == {"attention": True, "mamba2": False, "mamba": False,
                                                        "gated_deltanet": False}
    assert pts["learn_class"].to_dict() == {"attention": "learned", "mamba2": "plateau", "mamba": "rising",
                                            "gated_deltanet": "learned"}
    md = (results / f"frontier_{DEV}_float32_decode_4k.md").read_text()
    assert "gated_deltanet (1 lr only)" in md and "mamba2 (plateau 0.002)" in md
    assert "mamba (rising 0.400)" in md


def test_the_headline_sets_the_families_side_by_side_under_the_recipe_most_of_them_share(tmp_path) -> None:
    """An older record at the same task point (attention swept over three lrs under archbench's recipe)
    does not displace the recipe every family ran under; and recall trained on another CPU joins this
    machine's costs (schema `place`), with the table of who trained what."""
    other = {**PROV, "device_name": "Another CPU (2 CPUs)"}
    recall = [_recall("attention", lr, 0.99, state=900_000) for lr in (1e-3, 3e-3, 1e-2)]
    recall += [_recall(m, 1e-3, acc, state=s, recipe="zoology", prov=other)
               for m, acc, s in (("attention", 0.97, 900_000), ("mamba2", 0.9, 1000), ("mamba", 0.5, 2000))]
    cost = [_cost(m, "decode", 16384, t, s)
            for m, t, s in (("attention", 4e-3, 16 << 20), ("mamba2", 2e-4, 1000), ("mamba", 5e-4, 2000))]
    results = write_rows(tmp_path / "results", retrieval=recall, scaling=cost)
    readme = tmp_path / "README.md"
    readme.write_text(f"{MARK_START}\n{MARK_END}\n")
    write_report(results, readme=readme)
    rows = _md_rows(readme.read_text().split(MARK_START)[1].split(MARK_END)[0])
    assert [m for m in rows if m != "model"] == ["attention · zoology recipe", "mamba2 · zoology recipe",
                                                 "mamba · zoology recipe"]
    machines = pd.read_csv(results / f"{RET}_machines.csv").set_index("machine")["rows"].to_dict()
    assert machines == {"Another CPU (2 CPUs)": 3, PROV["device_name"]: 3}


def test_where_a_point_holds_two_budgets_every_model_there_is_tagged_with_its_own() -> None:
    """An older 40k-example record beside a grid at 80k: the grid's models all read "· 80k examples",
    including one the record never ran, so one grid's cells stay one group (orderings, headline)."""
    from archbench.bench.report.cells import prepare
    from archbench.bench.report.frame import frame

    rows = [Row.from_json(r) for r in (_recall("mamba2", 1e-3, 0.1, budget=40_000),
                                       _recall("mamba2", 1e-3, 0.9, budget=80_000),
                                       _recall("deltanet", 1e-3, 0.9, budget=80_000))]
    labels = sorted(prepare(frame(rows, "retrieval"))["model"])
    assert labels == ["deltanet · 80k examples", "mamba2 · 40k examples", "mamba2 · 80k examples"]
