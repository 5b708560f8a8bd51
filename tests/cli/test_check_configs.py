"""`archbench check NAME(fields)`: the checks at that one config, and bad fields as one-line usage errors."""

import pytest


def test_check_runs_at_the_config_written_in_the_name(cli) -> None:
    code, out, _ = cli("check", "short_conv(d_conv=4)")
    assert code == 0 and "all checks passed" in out
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert verdicts and all("short_conv(d_conv=4)" in v and "[d_conv=4]" in v for v in verdicts)
    assert not any("[defaults]" in v for v in verdicts)  # that config only, not the class's list


@pytest.mark.parametrize("name, expected", [
    ("rglru(nope=2)", "unknown config field(s) 'nope' for mixer 'rglru'; valid: expand: float"),
    ("rglru(d_conv=x)", "d_conv='x' is not of type int"),
    ("mamba3(a_activation=exp)", "a_activation must be one of heavy_tail, softplus"),
    ("RA:R=rglru,A=swa", "check takes mixers, not patterns"),
    ("nope(d_conv=2)", "unknown mixer 'nope'; valid:"),
])
def test_bad_names_are_one_line_and_exit_2(cli, name: str, expected: str) -> None:
    code, out, err = cli("check", name)
    assert code == 2 and expected in err and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
