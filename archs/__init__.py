"""archbench.archs: the mixer contract, its registry, and the built-in mixers.

    from archbench.archs import create, list_archs
    mixer = create("mamba", d_model=64, d_state=16)   # unknown names or fields raise, listing choices
"""

from __future__ import annotations

from typing import Any

from archbench.archs.base import LM, Block, Mixer, State, tensor_bytes
from archbench.archs.registry import ConfigFieldError, Origin, Registry, UnknownNameError, build_config

BUILTINS = ("attention", "mamba", "mamba2", "rwkv", "hybrid", "swa", "rwkv7", "mamba3")
MIXERS = Registry("architecture", "archbench.archs", (f"archbench.archs.{m}" for m in BUILTINS))
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


__all__ = [
    "LM", "Block", "Mixer", "State", "tensor_bytes", "register", "get", "create", "list_archs",
    "MIXERS", "Origin", "UnknownNameError", "ConfigFieldError",
]
