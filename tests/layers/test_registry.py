"""The registry: duplicates raise, unknown names and config fields give errors naming the valid ones."""

from dataclasses import dataclass

import pytest

from archbench.archs import ConfigFieldError, UnknownNameError, create, get, list_archs, register
from archbench.archs.base import Mixer
from archbench.archs.registry import Registry

BUILTINS = {"attention", "mamba", "mamba2", "rwkv"}


def test_builtins_registered() -> None:
    assert BUILTINS <= set(list_archs())
    assert list_archs("mamba*") == ["mamba", "mamba2", "mamba3"]


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown mixer 'xl'; valid: .*attention"):
        get("xl")


def test_unknown_config_field_is_named() -> None:
    with pytest.raises(ConfigFieldError, match="'d_stat'.*valid: .*d_state"):
        create("mamba", 32, d_stat=8)


def test_config_override_applies() -> None:
    assert create("attention", 64, head_dim=32).n_head == 2


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register("attention")
        class Impostor(Mixer):  # noqa: F841
            pass


def test_registry_is_reusable_for_other_kinds() -> None:
    reg = Registry("widget", "archbench.nonexistent_group")

    @reg.register("w")
    @dataclass
    class W:
        pass

    assert reg.names() == ["w"] and str(reg.origin("w")) == "built-in"
    with pytest.raises(UnknownNameError, match="unknown widget 'v'; valid: w"):
        reg.get("v")
