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
    ("--device", "cpu,cuda", "unknown device 'cpu,cuda'; choose from: cpu, cuda"),
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
