"""archbench.archs: the mixer contract, its registry, the built-in mixers, and models built from them.

    from archbench.archs import create, list_archs, resolve_model, LM
    mixer = create("mamba", d_model=64, d_state=16)   # unknown names or fields raise, listing choices
    model = LM(resolve_model("qwen3-next", depth=4, d_model=64), vocab_size=512)  # a layer pattern
"""

from __future__ import annotations

from typing import Any

from archbench.archs.base import Mixer, State, tensor_bytes
from archbench.archs.registry import ConfigFieldError, Origin, Registry, UnknownNameError, build_config

BUILTINS = ("attention", "swa", "mamba", "mamba2", "mamba3", "rwkv", "rwkv7", "linear_attention", "retnet",
            "gla", "deltanet", "gated_deltanet", "kda")
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


# Models import `create` lazily, so this import comes after the registry exists.
from archbench.archs.model import LM, Backbone, Block, ModelSpec, list_models, resolve_model  # noqa: E402
from archbench.archs.presets import PRESETS  # noqa: E402

__all__ = [
    "LM", "Backbone", "Block", "ModelSpec", "list_models", "resolve_model", "PRESETS", "Mixer", "State",
    "tensor_bytes", "register", "get", "create", "list_archs", "MIXERS", "Origin", "UnknownNameError",
    "ConfigFieldError",
]
