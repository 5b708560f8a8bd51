"""The output gate's learned bias (`gate_bias`): absent by default, so the published layers are unchanged;
when set, the gate starts open for every token, and no initialisation resets it."""

import pytest
import torch

from archbench.archs import create
from archbench.bench.experiments.recipes import zoology_init

GATED = ("mamba2", "gated_deltanet")


def _bias(layer: torch.nn.Module) -> torch.nn.Parameter | None:
    return getattr(layer, "z_bias", None) if hasattr(layer, "z_bias") else getattr(layer, "g_bias", None)


@pytest.mark.parametrize("name", GATED)
def test_default_layer_has_no_gate_bias(name):
    assert _bias(create(name, 32)) is None


@pytest.mark.parametrize("name", GATED)
def test_gate_bias_is_a_parameter_at_its_value_that_moves_the_output(name):
    torch.manual_seed(0)
    plain = create(name, 32)
    biased = create(name, 32, gate_bias=1.5)
    missing, unexpected = biased.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and len(missing) == 1  # the one new parameter, nothing else differs
    bias = _bias(biased)
    assert bias.requires_grad and torch.equal(bias.detach(), torch.full_like(bias, 1.5))
    x = torch.randn(2, 9, 32)
    assert not torch.allclose(plain(x), biased(x))


@pytest.mark.parametrize("name", GATED)
def test_zoology_init_keeps_the_gate_bias(name):
    layer = create(name, 32, gate_bias=1.0)
    zoology_init(layer, n_layers=2)
    assert torch.equal(_bias(layer).detach(), torch.ones_like(_bias(layer)))


@pytest.mark.parametrize("name", GATED)
def test_gate_bias_must_be_finite(name):
    with pytest.raises(ValueError, match="gate_bias"):
        create(name, 32, gate_bias=float("nan"))


def test_gated_deltanet_refuses_a_bias_without_a_gate():
    with pytest.raises(ValueError, match="output gate"):
        create("gated_deltanet", 32, gate_bias=1.0, output_gate="none")
