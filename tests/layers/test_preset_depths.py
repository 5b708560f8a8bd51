"""How presets reach a model's depth (archs/presets.py): LFM2's 16-layer unit and Griffin's RRA sampled to
any depth with the attention share kept, RecurrentGemma's cycle cut at the depth, Hawk, and the
`conv+MIXER` family of Zoology's conv-then-mixer pairs, from resolve_model and from `--models`."""

from __future__ import annotations

import pytest
import torch

from archbench.archs import PRESETS, Backbone, UnknownNameError, resolve_model
from archbench.archs.presets import Preset

LFM2_ATTENTION = [2, 5, 8, 10, 12, 14]  # transformers' Lfm2Config.full_attn_idxs


def _pattern(name: str, depth: int) -> str:
    return resolve_model(name, depth, 32).pattern


def test_lfm2_at_its_own_depth_is_lfm2_and_tiles_at_multiples() -> None:
    spec = resolve_model("lfm2", 16, 32)
    assert [i for i, c in enumerate(spec.pattern) if c == "A"] == LFM2_ATTENTION
    assert {spec.mixers[c] for c in spec.pattern} == {"short_conv", "attention"}
    assert _pattern("lfm2", 32) == spec.pattern * 2


@pytest.mark.parametrize("name, rare, share", [("lfm2", "A", (6, 16)), ("griffin", "A", (1, 3))])
def test_sampled_presets_keep_the_attention_share_at_every_depth(name: str, rare: str, share) -> None:
    num, den = share
    for depth in range(1, 41):  # depth · num / den attention layers, rounded half up
        count = _pattern(name, depth).count(rare)
        assert count == (2 * depth * num + den) // (2 * den), (depth, _pattern(name, depth))


@pytest.mark.parametrize("name, depth, pattern", [
    ("lfm2", 2, "CA"), ("lfm2", 4, "CACA"), ("lfm2", 8, "CACCACAC"),  # the patterns the docs name
    ("griffin", 2, "RA"), ("griffin", 4, "RRRA"), ("griffin", 8, "RRARRARA"), ("griffin", 6, "RRARRA"),
    ("recurrentgemma", 4, "RRAR"), ("recurrentgemma", 26, "RRA" * 8 + "RR"), ("recurrentgemma", 2, "RR"),
    ("hawk", 3, "RRR"),
])
def test_documented_patterns(name: str, depth: int, pattern: str) -> None:
    assert _pattern(name, depth) == pattern


def test_griffin_and_recurrentgemma_windows_are_scaled_as_samba_s() -> None:
    """Samba's 2048 is swa's default here (1/32); Griffin's 1024 is then 32, RecurrentGemma's 2048 is 64."""
    windows = {}
    for name in ("griffin", "recurrentgemma", "samba"):
        model = Backbone(resolve_model(name, 3 if name != "samba" else 2, 32))
        windows[name] = {b.mixer.window for b in model.blocks if b.mixer.name == "swa"}
    assert windows == {"griffin": {32}, "recurrentgemma": {64}, "samba": {64}}


def test_conv_family_puts_a_short_conv_before_any_mixer() -> None:
    spec = resolve_model("conv+mamba2(d_state=8)", 4, 32)
    assert spec.name == "conv+mamba2" and spec.pattern == "CMCM"
    assert spec.mixers == {"C": "short_conv", "M": "mamba2"} and spec.configs == {"M": {"d_state": 8}}
    same = resolve_model("CM:C=short_conv,M=mamba2(d_state=8)", 4, 32)  # the pattern it is
    assert (same.pattern, same.mixers, same.configs) == (spec.pattern, spec.mixers, spec.configs)
    torch.manual_seed(0)
    model = Backbone(resolve_model("conv+based", 2, 32))
    assert [b.mixer.name for b in model.blocks] == ["short_conv", "based"]
    with pytest.raises(UnknownNameError, match="unknown mixer 'nope'"):
        resolve_model("conv+nope", 2, 32)
    with pytest.raises(ValueError, match="depth 3 is not a multiple of 2"):
        resolve_model("conv+based", 3, 32)


def test_named_presets_still_take_no_configs_in_their_name() -> None:
    with pytest.raises(ValueError, match="preset 'lfm2' takes no configs in its name"):
        resolve_model("lfm2(d_conv=2)", 16, 32)


def test_every_preset_says_how_it_reaches_a_depth() -> None:
    assert {p.fit for p in PRESETS.values()} == {"tile", "sample", "cycle"}
    assert PRESETS["jamba"].fits(16) and not PRESETS["jamba"].fits(4)  # tiled: multiples only
    assert all(PRESETS[n].fits(d) for n in ("lfm2", "griffin", "recurrentgemma") for d in (1, 2, 4, 7))
    with pytest.raises(ValueError, match="fit must be one of tile, sample, cycle"):
        Preset("MA", {"M": "mamba", "A": "attention"}, "?", fit="stretch")


def test_models_option_takes_the_new_presets_and_the_conv_family(cli, tmp_path) -> None:
    models = "lfm2,griffin,recurrentgemma,hawk,conv+based,conv+mamba2(d_state=8)"
    code, out, err = cli("run", "scaling", "--models", models, "--lens", "512", "--modes", "prefill",
                         "--dry-run", "--out", str(tmp_path))
    assert code == 0, err
    code, _, err = cli("run", "scaling", "--models", "conv+nope", "--out", str(tmp_path))
    assert code == 2 and "unknown mixer 'nope'" in err
