"""Models as layer patterns: resolution of names, presets and patterns, and the Backbone's two modes."""

import pytest
import torch

from archbench.archs import PRESETS, Backbone, ModelSpec, UnknownNameError, list_models, resolve_model
from archbench.archs.model import Block


def test_pure_stack_is_a_pattern_of_one_letter():
    spec = resolve_model("mamba2", depth=3, d_model=32)
    assert spec.pattern == "MMM" and spec.mixers == {"M": "mamba2"} and spec.depth == 3


def test_preset_tiles_its_unit_and_mixer_configs_reach_every_layer_of_that_mixer():
    spec = resolve_model("mamba-attn", depth=4, d_model=32, mixer_configs={"attention": {"d_conv": 4}})
    assert spec.pattern == "MAMA" and spec.configs == {"A": {"d_conv": 4}}
    model = Backbone(spec)
    convs = [b.mixer.cfg.d_conv for b in model.blocks if b.mixer.name == "attention"]
    assert convs == [4, 4]  # the v1 hybrid dropped its sub-mixers' configs


def test_explicit_pattern_and_json_round_trip():
    spec = resolve_model("MMA:M=rwkv,A=attention", depth=6, d_model=32, mlp_ratio=2)
    assert spec.pattern == "MMAMMA" and spec.mlp_ratio == 2
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("name, depth, message", [
    ("transformer", 2, "unknown model 'transformer'; valid: attention"),
    ("jamba", 4, "depth 4 is not a multiple of 8"),
    ("MMA:M=mamba", 3, "letters without a mixer: A"),
    ("MA:M=mamba,A=nope", 2, "unknown mixer 'nope'"),
])
def test_bad_models_say_what_exists(name, depth, message):
    with pytest.raises((UnknownNameError, ValueError), match=message):
        resolve_model(name, depth=depth, d_model=32)


def test_presets_cite_a_source_and_list_only_when_their_mixers_exist():
    assert all(p.source for p in PRESETS.values())
    listed = set(list_models())
    assert "mamba-attn" in listed and "attention" in listed
    from archbench.archs import list_archs

    for name, preset in PRESETS.items():
        assert (name in listed) == (set(preset.mixers.values()) <= set(list_archs()))


def test_hybrid_backbone_step_matches_forward_and_names_each_backend():
    torch.manual_seed(0)
    model = Backbone(resolve_model("MA:M=mamba2,A=attention", depth=2, d_model=32, mlp_ratio=2)).double()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    y = model(x)
    assert model.last_backend == "mamba2:chunked+attention:sdpa"
    prefix, states = model.prefill(x[:, :6], max_len=11)
    steps = []
    for t in range(6, 11):
        y_t, states = model.step(x[:, t], states)
        steps.append(y_t)
    torch.testing.assert_close(torch.cat([prefix, torch.stack(steps, 1)], 1), y)
    assert model.complexity == "quadratic" and model.state_bytes(1, 64) < model.state_bytes(1, 128)


def test_block_adds_the_residual_once():
    class Zero(torch.nn.Module):
        d_model = 8

        def forward(self, x):
            return torch.zeros_like(x)

    block = Block(Zero(), mlp_ratio=0)
    x = torch.randn(1, 3, 8)
    assert torch.equal(block(x), x)
