"""Hybrid stacks: a pattern string over registered mixers, e.g. "MMMA" = three Mamba layers, then attention.

The question behind it ("RNNs are not Transformers (yet)", Wen, Dang & Lyu 2024; Zoology, Arora et al.
2023; Jamba, Lieber et al. 2024): does one attention layer in a recurrent stack close the recall gap,
at what cost in time and KV-cache bytes? Each letter of `pattern` becomes one pre-norm residual
sub-block (mixer + MLP, the same `Block` the LM uses), so a hybrid is one registered mixer that the
registry, conformance suite and benchmarks treat like any other. Because it carries its own residual
blocks (`owns_blocks`), an enclosing `Block` adds only the skip connection, and an `LM` with n_layer=1
and pattern "MA" has exactly the layers of a 2-layer pure model with its second layer swapped.

Glossary: pattern letter -> mixer name, from `mixers` ("M=mamba,A=attention,S=mamba2,R=rwkv").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archbench.archs import create, register
from archbench.archs.base import Block, Mixer


@dataclass(frozen=True)
class Config:
    pattern: str = "MA"  # one letter per sub-block, in order
    mixers: str = "M=mamba,A=attention,S=mamba2,R=rwkv"  # letter -> registered mixer name
    mlp_ratio: int = 4  # MLP width of each sub-block; 0 drops the MLPs


def parse_letters(mixers: str) -> dict[str, str]:
    """'M=mamba,A=attention' -> {'M': 'mamba', 'A': 'attention'}."""
    pairs = [item.split("=", 1) for item in mixers.split(",") if item.strip()]
    if any(len(p) != 2 or len(p[0].strip()) != 1 for p in pairs):
        raise ValueError(f"mixers must look like 'M=mamba,A=attention', got {mixers!r}")
    return {letter.strip(): name.strip() for letter, name in pairs}


@register("hybrid")
class Hybrid(Mixer):
    Config = Config
    complexity = "linear"  # overwritten per instance below: quadratic as soon as one sub-mixer is
    backends = ("per-layer",)  # each sub-mixer resolves its own backend
    owns_blocks = True

    def __init__(self, d_model: int, cfg: Config):
        super().__init__(d_model, cfg)
        letters = parse_letters(cfg.mixers)
        unknown = sorted(set(cfg.pattern) - set(letters))
        if not cfg.pattern or unknown:
            raise ValueError(f"pattern {cfg.pattern!r} uses letters without a mixer: {unknown}; "
                             f"known letters: {', '.join(f'{k}={v}' for k, v in letters.items())}")
        self.layers = nn.ModuleList(Block(create(letters[c], d_model), cfg.mlp_ratio) for c in cfg.pattern)
        if any(b.mixer.complexity == "quadratic" for b in self.layers):
            self.complexity = "quadratic"

    def set_backend(self, backend: str) -> Hybrid:
        """'auto' / 'reference' pass down to every sub-mixer; 'per-layer' leaves their choices alone."""
        super().set_backend(backend)
        if backend in ("auto", "reference"):
            for block in self.layers:
                block.mixer.set_backend(backend)
        return self

    def resolve_backend(self, device) -> str:
        return "per-layer"

    def _record_backends(self) -> None:
        self.last_backend = "+".join(f"{b.mixer.name}:{b.mixer.last_backend}" for b in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.layers:
            h = block(h)
        self._record_backends()
        return h - x  # the enclosing Block adds x back

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> list:
        return [b.mixer.init_state(batch, max_len, device, dtype) for b in self.layers]

    def step(self, x_t: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        h = x_t
        for i, block in enumerate(self.layers):
            h, state[i] = block.step(h, state[i])
        return h - x_t, state

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, list]:
        h, states = x, []
        for block in self.layers:
            h, state = block.prefill(h, max_len or x.shape[1])
            states.append(state)
        self._record_backends()
        return h - x, states

    def flops(self, seq_len: int) -> int:
        return sum(block.flops(seq_len) for block in self.layers)
