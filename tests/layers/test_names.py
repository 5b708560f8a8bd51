"""Model names with mixer configs (archs/names.py): parsed into the spec, checked by the Config's field
types, refused in one line by the CLI, and shown in tables as the overrides alone."""

from __future__ import annotations

import json

import pytest

from archbench.archs import ConfigFieldError, resolve_model
from archbench.archs.names import override_label, split_models


def test_split_keeps_patterns_and_parenthesised_configs_whole() -> None:
    names = "attention,mamba2(d_state=8,expand=2),MMA:M=mamba2(d_state=4),A=attention,qwen3-next"
    assert split_models(names) == ["attention", "mamba2(d_state=8,expand=2)",
                                   "MMA:M=mamba2(d_state=4),A=attention", "qwen3-next"]


def test_configs_in_a_name_land_in_the_spec_typed_and_override_suite_defaults() -> None:
    spec = resolve_model("mamba2(d_state=32,dt_max=0.05)", 2, 64)
    assert (spec.name, spec.configs) == ("mamba2", {"M": {"d_state": 32, "dt_max": 0.05}})
    gdn = resolve_model("gated_deltanet(output_gate=none)", 2, 64)
    assert gdn.configs == {"M": {"output_gate": "none"}}
    hybrid = resolve_model("MMMA:M=mamba2(d_state=8),A=attention(d_conv=4)", 4, 64,
                           mixer_configs={"attention": {"d_conv": 0}, "mamba2": {"expand": 1}})
    assert hybrid.name == "MMMA:M=mamba2,A=attention"
    assert hybrid.configs == {"M": {"expand": 1, "d_state": 8}, "A": {"d_conv": 4}}  # the name wins


@pytest.mark.parametrize("name, says", [
    ("mamba2(d_stat=3)", "valid: d_state: int"),
    ("mamba2(d_state=x)", "d_state='x' is not of type int"),
    ("qwen3-next(d_conv=4)", "takes no configs"),
    ("MMA:M=mamba2,A=attention,B=mamba(d_state=4)", "no letter B"),
    ("mamba2(d_state)", "field=value"),
])
def test_bad_configs_are_refused_naming_the_fields(name, says) -> None:
    with pytest.raises((ValueError, ConfigFieldError), match=says.replace("(", r"\(")):
        resolve_model(name, 4 if "qwen" in name else 3 if ":" in name else 2, 64)


def test_the_cli_runs_configured_models_and_refuses_a_bad_field_in_one_line(tmp_path, cli) -> None:
    args = ["run", "scaling", "--lens", "64", "--modes", "prefill", "--d-model", "16", "--depth", "2",
            "--budget", "0.05", "--out", str(tmp_path)]
    code, out, _ = cli(*args, "--models", "mamba2(d_state=32),gated_deltanet(output_gate=none)")
    assert code == 0
    rows = [json.loads(line) for f in (tmp_path / "raw").glob("*.jsonl")
            for line in f.read_text().splitlines()]
    assert sorted(json.dumps(r["spec"]["model"]["configs"]) for r in rows) == \
        ['{"M": {"d_state": 32}}', '{"M": {"output_gate": "none"}}']
    assert "mamba2 d_state=32" in out and "gated_deltanet output_gate=none" in out
    code, _, err = cli(*args, "--models", "mamba2(d_stat=32)")
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and "d_state: int" in err[0]


def test_labels_show_only_overrides_short() -> None:
    assert override_label("mamba2", {"M": "mamba2"}, {"M": {"d_state": 32}}) == "mamba2 d_state=32"
    assert override_label("mamba2", {"M": "mamba2"}, {}) == "mamba2"
    assert override_label("samba", {"M": "mamba", "S": "swa"}, {"S": {"window": 8}}) == "samba swa.window=8"
