"""archbench.archs: the mixer contract, its registry, the built-in mixers, and models built from them.

    from archbench.archs import create, list_archs, resolve_model, LM
    mixer = create("mamba", d_model=64, d_state=16)   # unknown names or fields raise, listing choices
    model = LM(resolve_model("qwen3-next", depth=4, d_model=64), vocab_size=512)  # a layer pattern
"""

from __future__ import annotations

from archbench.archs.base import Mixer, State, tensor_bytes
from archbench.archs.mixer_registry import BUILTINS, MIXERS, create, get, list_archs, register
from archbench.archs.model import LM, Backbone, Block, ModelSpec, list_models, resolve_model
from archbench.archs.presets import PRESETS
from archbench.archs.registry import ConfigFieldError, Origin, UnknownNameError

__all__ = [
    "LM", "Backbone", "Block", "ModelSpec", "list_models", "resolve_model", "PRESETS", "Mixer", "State",
    "tensor_bytes", "register", "get", "create", "list_archs", "MIXERS", "BUILTINS", "Origin",
    "UnknownNameError", "ConfigFieldError",
]
