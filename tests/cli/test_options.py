"""Every option of `archbench run` is checked before anything runs: a number out of range
(negative, zero, nan, inf, too large) or a list where one value belongs is one line on stderr naming
the option and what it takes, exit status 2, and no cell is measured (no row could then block a rerun
with a valid value)."""

import pytest

from archbench.bench.experiments.scaling import Scaling

SCALING = ["run", "scaling", "--models", "attention", "--depth", "1", "--lens", "16", "--modes", "prefill",
           "--d-model", "16"]


@pytest.mark.parametrize("option, value, expected", [
    ("--time-limit", "-1", "--time-limit takes one number of seconds > 0 and <= 1e+06"),
    ("--time-limit", "0", "--time-limit takes one number of seconds > 0"),
    ("--time-limit", "nan", "malformed value 'nan' in --time-limit"),
    ("--time-limit", "inf", "malformed value 'inf' in --time-limit"),
    ("--time-limit", "1e20", "malformed value '1e20' in --time-limit"),
    ("--time-limit", "1,2", "malformed value '1,2' in --time-limit"),
    ("--budget", "nan", "--budget takes one number of seconds >= 0 (the fewest repeats)"),
    ("--budget", "inf", "malformed value 'inf' in --budget"),
    ("--budget", "-0.5", "malformed value '-0.5' in --budget"),
    ("--budget", "1,2", "malformed value '1,2' in --budget"),
    ("--seed", "1e20", "--seed takes one integer in [0, 2**32)"),
    ("--seed", str(2**32), "malformed value '4294967296' in --seed"),
    ("--seed", "-1", "malformed value '-1' in --seed"),
    ("--seed", "1.5", "malformed value '1.5' in --seed"),
    ("--seed", "1,2", "malformed value '1,2' in --seed"),
    ("--depth", "1,2", "--depth takes one value, got '1,2'"),
    ("--depth", "-2", "malformed value '-2' in --depth"),
    ("--batch", "1,2", "--batch takes one value, got '1,2'"),
    ("--d-model", "0", "malformed value '0' in --d-model"),
    ("--dtype", "float32,float64", "--dtype takes one dtype, got 'float32,float64'"),
    ("--device", "cpu,cuda", "unknown device 'cpu,cuda'; valid: cpu, cuda"),
    ("--mlp-ratio", "1,2", "malformed value '1,2' in --mlp-ratio; --mlp-ratio takes one integer >= 0"),
    ("--lens", "16,inf", "malformed length 'inf' in --lens"),
])
def test_a_bad_number_or_a_list_is_one_line_exit_2_and_nothing_runs(cli, tmp_path, monkeypatch,
                                                                    option, value, expected) -> None:
    calls = []
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, *a, **k: calls.append(spec)))
    argv = [*SCALING, "--out", str(tmp_path)]
    if option in argv:  # replace the default given above
        i = argv.index(option)
        argv[i + 1] = value
    else:
        argv += [option, value]
    code, _, err = cli(*argv)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert calls == [] and not (tmp_path / "raw").exists()


@pytest.mark.parametrize("option, value, expected", [
    ("--lrs", "1e-3,inf", "malformed learning rate 'inf' in --lrs"),
    ("--num-kv-pairs", "4,8", "--num-kv-pairs takes one value, got '4,8'"),
    ("--vocab-size", "64,128", "--vocab-size takes one value, got '64,128'"),
    ("--task", "mqar,copy", "--task takes one task"),
])
def test_retrieval_options_refuse_lists_and_bad_numbers(cli, tmp_path, option, value, expected) -> None:
    code, _, err = cli("run", "retrieval", option, value, "--out", str(tmp_path))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_valid_values_at_the_edges_run(cli, tmp_path, monkeypatch) -> None:
    budgets = []

    def run(cls, spec, budget_s, progress=None):
        budgets.append(budget_s)
        raise MemoryError("fake")  # a row, cheaply

    monkeypatch.setattr(Scaling, "run", classmethod(run))
    code, _, err = cli(*SCALING, "--budget", "0", "--time-limit", "1e6", "--seed", str(2**32 - 1),
                       "--out", str(tmp_path))
    assert code == 0, err
    assert budgets == [0.0]


def _value_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command that takes a value, read from the parser so
    an option added later is covered too."""
    import argparse

    from archbench.bench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [(command, action.option_strings[0]) for command, parser in sub.choices.items()
            for action in parser._actions if action.option_strings and action.nargs is None
            and not isinstance(action, argparse._StoreConstAction | argparse._StoreTrueAction)]


def test_every_value_option_is_covered_below() -> None:
    options = _value_options()
    assert {("run", "--models"), ("run", "--out"), ("report", "--readme")} <= set(options)
    assert ("profile", "--d-model") in options and len(options) > 30


@pytest.mark.parametrize("command, option", _value_options())
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_value_is_refused_not_taken_for_the_default(cli, tmp_path, monkeypatch, command, option,
                                                             value) -> None:
    calls = []
    monkeypatch.setattr(Scaling, "run", classmethod(lambda cls, spec, *a, **k: calls.append(spec)))
    argv = {"run": [*SCALING, "--out", str(tmp_path)], "profile": ["profile", "mamba2"],
            "report": ["report", "--results", str(tmp_path)], "list": ["list"],
            "check": ["check", "attention"]}[command]
    argv = [a for i, a in enumerate(argv) if a != option and (i == 0 or argv[i - 1] != option)]
    monkeypatch.chdir(tmp_path)  # an empty --out or --results taken as "." would land here
    code, out, err = cli(*argv, f"{option}={value}")
    assert code == 2, (out, err)
    assert option in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert calls == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["inf", "inf%", "1e400", "-inf", "nan", "nan%", "-5G", "-5", "1e400%"])
def test_a_memory_budget_that_is_no_size_is_one_line(cli, tmp_path, value) -> None:
    code, _, err = cli("run", "generation", "--memory-budget", value, "--out", str(tmp_path))
    assert code == 2 and f"malformed --memory-budget {value!r}" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "raw").exists()


@pytest.mark.parametrize("option", ["--workers", "--max-batch", "--depth", "--batch", "--threads"])
def test_a_single_value_option_names_what_it_takes_with_its_own_example(cli, tmp_path, option) -> None:
    grid = "generation" if option == "--max-batch" else "scaling"
    argv = ["run", grid, option, "0", "--out", str(tmp_path)]
    if option == "--workers":
        argv += ["--executor", "ray"]
    code, _, err = cli(*argv)
    assert code == 2 and f"malformed value '0' in {option}; {option} takes one positive integer, e.g. " in err
    assert "4k" not in err and len(err.strip().splitlines()) == 1


def test_a_list_option_of_sizes_gives_a_list_example(cli, tmp_path) -> None:
    code, _, err = cli("run", "scaling", "--d-model", "0", "--out", str(tmp_path))
    assert code == 2 and "--d-model takes positive integers, e.g. 64,128" in err, err
    code, _, err = cli("run", "scaling", "--lens", "0", "--out", str(tmp_path))
    assert code == 2 and "--lens takes positive integers, e.g. 512,1024,4k" in err, err
