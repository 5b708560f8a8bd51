"""The command line: bad input is one line on stderr naming the valid choices, exit status 2."""

import json

import pytest


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "scaling", "--archs", "attention,nope"], "unknown model 'nope'; valid: attention,"),
        (["run", "scaling", "--models", "MA:M=mamba,A=nope"], "unknown mixer 'nope'; valid: attention,"),
        (["run", "scaling", "--models", "MMA:M=mamba"], "letters without a mixer: A"),
        (["run", "scaling", "--models", "mamba2-attn", "--depth", "3"], "depth 3 is not a multiple of 4"),
        (["run", "scaling", "--depth", "0"], "malformed value '0' in --depth"),
        (["run", "scaling", "--mlp-ratio", "-1"], "malformed value '-1' in --mlp-ratio"),
        (["run", "scaling", "--batch", "1,2"], "--batch takes one value, got '1,2'"),
        (["run", "scaling", "--dtype", "float32,float64"], "--dtype takes one dtype"),
        (["run", "retrieval", "--lens", "96"], "has length 96; its lengths: 64, 128, 256"),
        (["run", "retrieval", "--task", "copy", "--lens", "64"], "grid of copy on cpu has length 64; its "
                                                                 "lengths: 34, 66"),
        (["run", "retrieval", "--task", "copy", "--num-kv-pairs", "4"], "task 'copy' has no such field"),
        (["run", "retrieval", "--num-kv-pairs", "40", "--lens", "64"], "task mqar cannot be built with"),
        (["run", "retrieval", "--lrs", "1e-3,abc"], "malformed learning rate 'abc' in --lrs"),
        (["run", "retrieval", "--lrs", "0"], "malformed learning rate '0' in --lrs"),
        (["run", "retrieval", "--lrs", "nan"], "malformed learning rate 'nan' in --lrs"),
        (["run", "retrieval", "--vocab-size", "0"], "malformed value '0' in --vocab-size"),
        (["run", "scaling", "--lens", "512,-4"], "malformed length '-4'"),
        (["run", "scaling", "--lens", "1.5k"], "malformed length '1.5k'"),
        (["run", "scaling", "--lens", "abc"], "malformed length 'abc'"),
        (["run", "warp"], "unknown grid 'warp'; valid: quick, scaling, retrieval, full"),
        (["list", "zz*"], "no mixer matches 'zz*'; registered: attention, "),
        (["run", "scaling", "--batch", "0"], "malformed value '0' in --batch; --batch takes one positive"),
        (["run", "scaling", "--device", "tpu"], "unknown device 'tpu'; valid: cpu, cuda"),
        (["run", "scaling", "--modes", "prefill,infer"], "unknown mode 'infer'; valid: prefill"),
        (["run", "retrieval", "--task", "sudoku"], "unknown task 'sudoku'; valid:"),
        (["run", "retrieval", "--task", "copy,mqar"], "--task takes one task"),
        (["run", "scaling", "--dtype", "int3"], "unknown dtype 'int3'; valid: float32"),
        (["check", "nope"], "unknown mixer 'nope'; valid: attention,"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, argv, expected) -> None:
    code, out, err = cli(*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else []))
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_cuda_without_a_gpu_is_a_usage_error(cli, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = cli("run", "scaling", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and "no CUDA device" in err


def test_report_on_a_corrupt_middle_line_is_exit_2_and_keeps_the_file(cli, tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    good = json.dumps({"kind": "scaling", "arch": "attention", "status": "ok"})
    text = f"{good}\n{{not json\n{good}\n"
    (raw / "rows.jsonl").write_text(text)
    code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 2 and "rows.jsonl:2" in err
    assert len(err.strip().splitlines()) == 1
    assert (raw / "rows.jsonl").read_text() == text  # nothing measured is lost


def test_report_on_a_row_of_an_unknown_kind_names_the_file_and_line(cli, tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "rows.jsonl").write_text(json.dumps({"schema": 3, "kind": "serving", "grid": None, "part": None,
                                                "spec": {},
                                                "result": None, "status": "ok", "wall_s": 1.0,
                                                "provenance": {}}) + "\n")
    code, _, err = cli("report", "--results", str(tmp_path))
    assert code == 2 and ("rows.jsonl:1: unknown row kind 'serving'; known kinds: generation, retrieval, "
                          "scaling") in err
    assert len(err.strip().splitlines()) == 1


def test_a_filter_that_empties_one_part_of_a_suite_says_so(cli, monkeypatch, tmp_path) -> None:
    from archbench.bench.runs import loop

    monkeypatch.setattr(loop, "run_cells", lambda cells, *a, **k: [])  # build the plan, measure nothing
    code, _, err = cli("run", "quick", "--lens", "96", "--out", str(tmp_path))
    assert code == 0 and "note: no cell of the quick retrieval grid of mqar on cpu has length 96" in err


def test_report_without_raw_rows_is_exit_2(cli, tmp_path) -> None:
    code, _, err = cli("report", "--results", str(tmp_path / "nowhere"))
    assert code == 2 and "run 'archbench run" in err


def test_check_prints_one_verdict_per_check(cli) -> None:
    from archbench.bench.conformance import CHECKS

    code, out, _ = cli("check", "attention")
    assert code == 0
    verdicts = [line for line in out.splitlines() if line.split()[0] in ("PASS", "FAIL", "SKIP")]
    assert len(verdicts) == len(CHECKS)


def test_list_shows_every_builtin(cli) -> None:
    code, out, _ = cli("list")
    assert code == 0
    for name in ("attention", "mamba", "mamba2", "rwkv", "mamba-attn", "mamba2-attn"):
        assert name in out  # the mixers, and the presets --models takes beside them


def test_flags_that_leave_no_cell_name_the_grid_s_models_and_modes(cli, tmp_path) -> None:
    code, _, err = cli("run", "frontier", "--models", "jamba", "--out", str(tmp_path))
    assert code == 2 and "--models jamba" in err and "its models: " in err and "mamba2" in err, err
    code, _, err = cli("run", "frontier", "--task", "none", "--modes", "train", "--out", str(tmp_path))
    assert code == 2 and "its modes: prefill, decode" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "raw").exists()


def test_list_on_an_ascii_terminal_replaces_what_it_cannot_encode(monkeypatch) -> None:
    import io
    import sys

    from archbench.bench.cli import main

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", write_through=True)  # PYTHONIOENCODING=ascii
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["list"]) == 0
    text = raw.getvalue().decode("ascii")
    assert "attention" in text and "mamba2-attn" in text


def test_archbench_s_warnings_print_as_one_line_and_others_as_python_prints_them() -> None:
    from archbench.bench import cli
    from archbench.bench.runs import store

    ours = cli._format_warning(UserWarning("skipping raw/x.jsonl: a FIFO"), UserWarning, store.__file__, 7)
    assert ours == "archbench: warning: skipping raw/x.jsonl: a FIFO\n"
    theirs = cli._format_warning(UserWarning("y"), UserWarning, "/elsewhere/lib.py", 3)
    assert theirs.startswith("/elsewhere/lib.py:3: UserWarning: y")
