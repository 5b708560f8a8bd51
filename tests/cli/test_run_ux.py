"""What `archbench` tells the user: `--help` and `--version` at once (without torch), no option taken
for a prefix of another, one wording with a guess for every unknown name, a run without `--out` in a
fresh git-ignored folder (never the committed results/), and one plain line per finished cell in a log.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
from helpers.runs import RESULT

from archbench.bench.cli import build_parser
from archbench.bench.experiments.scaling import Scaling

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)
HEAVY = ("torch", "numpy", "pandas", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *([c, "--help"] for c in SUBCOMMANDS)],
                         ids=" ".join)
def test_help_and_version_import_no_torch(argv: list[str]) -> None:
    probe = ("import sys\nfrom archbench.bench.entry import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit as e:\n    assert e.code == 0, e.code\n"
             f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout[-400:]
    assert "usage: archbench" in done.stdout or done.stdout.startswith("archbench ")


def test_version_names_archbench_and_torch(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and re.match(r"archbench \d+\.\d+\S* \(torch \S+, Python 3\.\d+", out), out


def _long_options() -> list[tuple[str, str]]:
    parsers = build_parser()._subparsers._group_actions[0].choices
    return [(cmd, opt) for cmd in SUBCOMMANDS for action in parsers[cmd]._actions
            for opt in action.option_strings if opt.startswith("--") and opt != "--help"]


@pytest.mark.parametrize("command, option", _long_options(), ids="{0[0]} {0[1]}".format)
def test_a_prefix_of_an_option_is_not_that_option(cli, tmp_path, command: str, option: str) -> None:
    parsers = build_parser()._subparsers._group_actions[0].choices
    every = {o for a in parsers[command]._actions for o in a.option_strings}
    prefix = next((option[:i] for i in range(len(option) - 1, 3, -1) if option[:i] not in every), None)
    if prefix is None:
        pytest.skip(f"every prefix of {option} is an option of its own")
    positional = {"run": ["scaling"], "check": ["attention"], "profile": ["mamba2"]}.get(command, [])
    out = ["--out", str(tmp_path)] if command == "run" else []
    code, _, err = cli(command, *positional, prefix, "1", *out)
    assert code == 2 and f"unrecognized arguments: {prefix}" in err, err
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("argv, expected, guess", [
    (["run", "scaling", "--models", "atention"], "unknown model 'atention'; valid: attention, ", "attention"),
    (["run", "scaling", "--models", "MA:M=mamba,A=atention"], "unknown mixer 'atention'; valid: attention, ",
     "attention"),
    (["check", "atention"], "unknown mixer 'atention'; valid: attention, ", "attention"),
    (["run", "scaling", "--modes", "prefil"], "unknown mode 'prefil'; valid: prefill, train, decode",
     "prefill"),
    (["run", "scalng"], "unknown grid 'scalng'; valid: quick, scaling, ", "scaling"),
    (["run", "retrieval", "--task", "mqr"], "unknown task 'mqr'; valid: ", "mqar"),
    (["run", "scaling", "--dtype", "float23"], "unknown dtype 'float23'; valid: float32, ", "float32"),
])
def test_unknown_names_share_one_wording_and_guess(cli, tmp_path, argv, expected, guess) -> None:
    code, _, err = cli(*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else []))
    assert code == 2 and expected in err and err.strip().endswith(f"; did you mean {guess!r}?"), err


def test_no_guess_for_a_name_like_none_of_them(cli) -> None:
    code, _, err = cli("check", "xyzzy")
    assert code == 2 and "unknown mixer 'xyzzy'; valid:" in err and "did you mean" not in err


# -- --out -------------------------------------------------------------------------------------------
@pytest.fixture()
def quick_cells(monkeypatch, tmp_path):
    """`archbench run` in an empty working folder, each scaling cell answering at once."""
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, *a, **k: RESULT))
    monkeypatch.chdir(tmp_path)
    return ["run", "scaling", "--models", "attention", "--lens", "16,32", "--modes", "prefill", "--depth",
            "1", "--d-model", "16"]


def test_without_out_a_run_writes_a_fresh_folder_under_runs(cli, tmp_path, quick_cells) -> None:
    code, _, err = cli(*quick_cells)
    assert code == 0, err
    first = sorted((tmp_path / "runs").iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # nothing in results/, nothing else
    assert len(first) == 1 and re.fullmatch(r"scaling-\d{8}T\d{6}Z", first[0].name)
    assert list((first[0] / "raw").glob("scaling_*.jsonl")) and f"rows -> runs/{first[0].name}/raw/" in err
    assert f"archbench report --results runs/{first[0].name}" in err

    assert cli(*quick_cells)[0] == 0  # the same command again: a new folder, its cells measured again
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_an_explicit_out_is_written_as_named_results_included(cli, tmp_path, quick_cells) -> None:
    code, _, err = cli(*quick_cells, "--out", "results")
    assert code == 0, err
    assert list((tmp_path / "results" / "raw").glob("scaling_*.jsonl")) and not (tmp_path / "runs").exists()
    code, _, err = cli(*quick_cells, "--out", "results")  # and resumes there
    assert code == 0 and "nothing to do" in err


def test_retry_failed_without_out_is_refused_a_dry_run_leaves_nothing(cli, tmp_path, quick_cells) -> None:
    code, _, err = cli(*quick_cells, "--retry-failed")
    assert code == 2 and "give its folder as --out" in err
    code, out, _ = cli(*quick_cells, "--dry-run")
    assert code == 0 and "nothing run" in out and list(tmp_path.iterdir()) == []


def test_an_interrupted_default_run_names_the_out_that_resumes_it(cli, quick_cells, monkeypatch) -> None:
    from archbench.bench.runs import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_cells", interrupted)
    code, _, err = cli(*quick_cells)
    assert code == 130 and re.search(r"rerun with --out runs/scaling-\d{8}T\d{6}Z to resume", err), err


# -- one line per cell in a log ----------------------------------------------------------------------
def test_a_log_gets_one_line_per_finished_cell(cli, quick_cells) -> None:
    code, out, _ = cli(*quick_cells, "--lens", "16,32,64")  # captured: stdout is not a terminal
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert code == 0 and len(lines) == 3, out
    assert re.fullmatch(r"\[1/3\] attention ×1 prefill n=16 d=16: ok in [^,]+, median 1\.00 s; "
                        r"~\d+ s left", lines[0]), lines[0]
    assert lines[2].startswith("[3/3]") and "left" not in lines[2]  # nothing left to estimate


def test_a_terminal_gets_the_progress_bar_and_no_lines(cli, quick_cells, monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert cli(*quick_cells)[0] == 0
    assert not re.search(r"^\[\d+/\d+\]", sys.stdout.getvalue(), re.M)
