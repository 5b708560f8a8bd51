"""The registry of mixers: the built-in ones (archs/mixers/) and plugins (entry point group
`archbench.archs`), by name. A leaf: it imports only the generic registry and the Mixer contract, so the
model code and the mixers import it directly, and nothing imports back into the package to reach it.
"""

from __future__ import annotations

from typing import Any

from archbench.archs.base import Mixer
from archbench.archs.registry import Registry, build_config

BUILTINS = ("attention", "swa", "mamba", "mamba2", "mamba3", "rwkv", "rwkv7", "linear_attention", "retnet",
            "gla", "deltanet", "gated_deltanet", "kda", "short_conv", "rglru", "hgrn2", "gated_deltaproduct",
            "mlstm", "based")
MIXERS = Registry("mixer", "archbench.archs", (f"archbench.archs.mixers.{m}" for m in BUILTINS))
register = MIXERS.register


def get(name: str) -> type[Mixer]:
    return MIXERS.get(name)


def list_archs(pattern: str = "*") -> list[str]:
    """Registered mixer names matching a shell-style wildcard, built-ins and plugins alike."""
    return MIXERS.names(pattern)


def create(name: str, d_model: int, **config_overrides: Any) -> Mixer:
    """A mixer of width `d_model`; `config_overrides` are fields of that mixer's `Config`."""
    cls = get(name)
    return cls(d_model, build_config(cls.Config, f"architecture {name!r}", config_overrides))
