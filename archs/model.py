"""Models as layer patterns: the Block, the Backbone (a stack of Blocks) and the LM around it.

Every experiment measures a *model* of a stated depth, width and MLP ratio, never a bare mixer, so a
hybrid is always compared with pure stacks of the same shape. A model is a pattern over registered
mixers, one letter per layer:

    resolve_model("mamba2", depth=4, d_model=256)                  # "MMMM", M=mamba2
    resolve_model("qwen3-next", depth=8, d_model=256)              # a preset: "GGGA" tiled to 8 layers
    resolve_model("conv+based", depth=4, d_model=256)              # "CMCM", C=short_conv, M=based
    resolve_model("MMMA:M=mamba2,A=attention", depth=4, d_model=256)  # an explicit pattern

The residual lives in one place, `Block` (pre-norm: x + mixer(norm(x)), then x + mlp(norm(x))).

Glossary: B batch, T sequence length, D d_model; pattern letter -> mixer from `ModelSpec.mixers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archbench.archs.base import Mixer, State
from archbench.archs.mixer_registry import create, get, list_archs
from archbench.archs.names import coerce, parse_name
from archbench.archs.presets import CONV_FAMILY, PRESETS, Preset, lookup
from archbench.archs.registry import UnknownNameError, unknown_name

# The forms a model name takes beyond the registered names, for the message an unknown one gets.
MODEL_HINT = (f" (or {CONV_FAMILY}MIXER, or a pattern such as 'MMMA:M=mamba2,A=attention'; a mixer's Config "
              "fields in parentheses, 'mamba2(d_state=32)')")


@dataclass(frozen=True)
class ModelSpec:
    """A stack of `len(pattern)` residual blocks over registered mixers; JSON round-trips."""

    name: str  # the mixer for a pure stack, a preset name, or "MMMA:M=mamba2,A=attention"
    pattern: str  # one letter per layer, in order
    mixers: dict[str, str]  # letter -> registered mixer name
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # letter -> Config overrides
    d_model: int = 64
    mlp_ratio: int = 0  # 0: mixer-only blocks (Zoology's recall models); 4: the usual Transformer MLP

    @property
    def depth(self) -> int:
        return len(self.pattern)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)

    def describe(self) -> str:
        """One line for tables: 'mamba2 ×4' or 'qwen3-next GGGA (G=gated_deltanet, A=attention)'."""
        if len(self.mixers) == 1:
            return f"{self.name} ×{self.depth}"
        letters = ", ".join(f"{k}={v}" for k, v in self.mixers.items())
        return f"{self.name} {self.pattern} ({letters})"


def parse_pattern(text: str) -> tuple[str, dict[str, str]]:
    """'MMMA:M=mamba2,A=attention' -> ('MMMA', {'M': 'mamba2', 'A': 'attention'})."""
    unit, _, letters = text.partition(":")
    pairs = [item.split("=", 1) for item in letters.split(",") if item.strip()]
    if not unit or any(len(p) != 2 or len(p[0].strip()) != 1 for p in pairs):
        raise ValueError(f"a pattern looks like 'MMMA:M=mamba2,A=attention', got {text!r}")
    mixers = {k.strip(): v.strip() for k, v in pairs}
    unknown = sorted(set(unit) - set(mixers))
    if unknown:
        raise ValueError(f"pattern {unit!r} uses letters without a mixer: {', '.join(unknown)} ({text!r})")
    return unit, {k: mixers[k] for k in dict.fromkeys(unit)}  # letters in order of first use


def list_models(pattern: str = "*") -> list[str]:
    """Registered mixers and the presets whose mixers are all registered, matching a wildcard."""
    import fnmatch


    mixers = list_archs()
    presets = [n for n, p in PRESETS.items() if set(p.mixers.values()) <= set(mixers)]
    return sorted(n for n in mixers + presets if fnmatch.fnmatch(n, pattern))


def resolve_model(name: str, depth: int, d_model: int, mlp_ratio: int = 0,
                  mixer_configs: dict[str, dict[str, Any]] | None = None) -> ModelSpec:
    """The model called `name` at this depth and width.

    `name` is a registered mixer (a pure stack of `depth` layers), a preset (its unit pattern brought to
    `depth` as the preset says: archs/presets.py), `conv+MIXER` (Zoology's conv-then-mixer pair, tiled),
    or an explicit 'PATTERN:L=mixer,...' (tiled); a mixer in it may carry Config fields,
    'mamba2(d_state=32)' or 'conv+mamba2(d_state=32)' (archs/names.py). `mixer_configs` maps a mixer
    name to Config overrides applied wherever that mixer appears, over the preset's own per-letter
    configs; fields written in the name override both. The spec's name is `name` without its configs:
    the configs live in `configs`.
    """

    if depth < 1 or d_model < 1 or mlp_ratio < 0:
        raise ValueError(f"need depth >= 1, d_model >= 1, mlp_ratio >= 0; got {depth}, {d_model}, "
                         f"{mlp_ratio}")
    name, named = parse_name(name)
    if named and name in PRESETS:
        letters = ",".join(f"{k}={v}" for k, v in PRESETS[name].mixers.items())
        raise ValueError(f"preset {name!r} takes no configs in its name; write its pattern with them, e.g. "
                         f"'{PRESETS[name].unit}:{letters}' with 'L=mixer(field=value)'")
    preset = None if ":" in name else lookup(name)
    if ":" in name:
        unit, mixers = parse_pattern(name)
        configs: dict[str, dict] = {}
    elif preset is not None:
        unit, mixers, configs = preset.unit, dict(preset.mixers), dict(preset.configs)
    elif name in list_archs():
        unit, mixers, configs = "M", {"M": name}, {}
    else:
        raise UnknownNameError(unknown_name("model", name, list_models(), MODEL_HINT))
    shape = preset or Preset(unit, mixers, source="")  # a pattern or a pure stack tiles its unit
    if not shape.fits(depth):
        raise ValueError(f"model {name!r} repeats a unit of {len(unit)} layers ({unit}); depth {depth} "
                         f"is not a multiple of {len(unit)}")
    for mixer in mixers.values():
        get(mixer)  # unknown mixers fail here, naming the registered ones
    unused = sorted(set(named) - set(mixers))
    if unused:
        raise ValueError(f"model {name!r} has no letter {', '.join(unused)} to configure")
    typed = {k: coerce(get(mixers[k]).Config, f"mixer {mixers[k]!r}", raw) for k, raw in named.items()}
    overrides = mixer_configs or {}
    merged = {k: {**configs.get(k, {}), **overrides.get(m, {}), **typed.get(k, {})}
              for k, m in mixers.items()}
    return ModelSpec(name=name, pattern=shape.pattern(depth), mixers=mixers,
                     configs={k: v for k, v in merged.items() if v}, d_model=d_model, mlp_ratio=mlp_ratio)


class MLP(nn.Module):
    """Position-wise feed-forward: D -> ratio*D -> D with GELU."""

    def __init__(self, d_model: int, ratio: int = 4):
        super().__init__()
        self.up = nn.Linear(d_model, ratio * d_model)
        self.down = nn.Linear(ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x)))

    def flops(self, seq_len: int) -> int:
        return 2 * seq_len * 2 * self.up.in_features * self.up.out_features


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + mlp(norm(x)) (mlp_ratio 0 drops the MLP)."""

    def __init__(self, mixer: Mixer, mlp_ratio: int = 0):
        super().__init__()
        d = mixer.d_model
        self.mixer = mixer
        self.norm1 = nn.RMSNorm(d)
        self.mlp = MLP(d, mlp_ratio) if mlp_ratio else None
        self.norm2 = nn.RMSNorm(d) if self.mlp is not None else None

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x + self.mixer(self.norm1(x)))

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y_t, state = self.mixer.step(self.norm1(x_t), state)
        return self._mlp(x_t + y_t), state

    def prefill(self, x: torch.Tensor, max_len: int) -> tuple[torch.Tensor, State]:
        y, state = self.mixer.prefill(self.norm1(x), max_len)
        return self._mlp(x + y), state

    def flops(self, seq_len: int) -> int:
        return self.mixer.flops(seq_len) + (self.mlp.flops(seq_len) if self.mlp is not None else 0)


class Backbone(nn.Module):
    """The blocks of a `ModelSpec`: (B, T, D) -> (B, T, D), with the same two modes as a mixer."""

    def __init__(self, spec: ModelSpec):

        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleList(
            Block(create(spec.mixers[c], spec.d_model, **spec.configs.get(c, {})), spec.mlp_ratio)
            for c in spec.pattern)

    @property
    def mixers(self) -> Iterable[Mixer]:
        return (b.mixer for b in self.blocks)

    @property
    def complexity(self) -> str:
        return "quadratic" if any(m.complexity == "quadratic" for m in self.mixers) else "linear"

    @property
    def supports_step(self) -> bool:
        return all(m.supports_step for m in self.mixers)

    def backend_choices(self, device: torch.device | str) -> list[str]:
        """Backends one `set_backend` can choose: a pure stack's usable ones; a mix picks per layer."""
        classes = {type(m) for m in self.mixers}
        return classes.pop().available_backends(device) if len(classes) == 1 else ["auto"]

    def set_backend(self, backend: str) -> Backbone:
        """'auto' / 'reference' reach every layer; a named backend the layers that have it."""
        if backend in ("auto", "reference"):
            targets = list(self.mixers)
        else:
            targets = [m for m in self.mixers if backend in m.backends]
            if not targets:
                known = sorted({b for m in self.mixers for b in m.backends})
                raise ValueError(f"no layer of {self.spec.name} has backend {backend!r}; choose from: auto, "
                                 f"reference, {', '.join(known)}")
        for m in targets:
            m.set_backend(backend)
        return self

    @property
    def last_backend(self) -> str:
        """Which path each mixer ran last: 'chunked' for a pure stack, 'mamba2:chunked+attention:sdpa'."""
        used: dict[str, dict[str, None]] = {}
        for m in self.mixers:
            backend = m.last_backend or m.resolve_backend(next(m.parameters()).device)
            used.setdefault(m.name, {})[backend] = None  # dicts keep first-use order
        parts = {name: ",".join(b) for name, b in used.items()}
        if len(parts) == 1:
            return next(iter(parts.values()))
        return "+".join(f"{n}:{b}" for n, b in parts.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, list[State]]:
        states = []
        for block in self.blocks:
            x, state = block.prefill(x, max_len or x.shape[1])
            states.append(state)
        return x, states

    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> list[State]:
        return [m.init_state(batch, max_len, device, dtype) for m in self.mixers]

    def step(self, x_t: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        for i, block in enumerate(self.blocks):
            x_t, states[i] = block.step(x_t, states[i])
        return x_t, states

    def state_bytes(self, batch: int, seq_len: int) -> int:
        return sum(m.state_bytes(batch, seq_len) for m in self.mixers)

    def flops(self, seq_len: int) -> int:
        return sum(block.flops(seq_len) for block in self.blocks)


class LM(nn.Module):
    """Token embedding, a `Backbone`, final norm and output head.

    `tie_head` shares the head's matrix with the embedding (GPT-2, Zoology); `embed_dropout` drops
    embedding features while training (Zoology's `embed_dropout`); both are training-recipe choices.
    """

    def __init__(self, spec: ModelSpec, vocab_size: int, tie_head: bool = False, embed_dropout: float = 0.0):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(vocab_size, spec.d_model)
        self.drop = nn.Dropout(embed_dropout) if embed_dropout > 0 else nn.Identity()
        self.backbone = Backbone(spec)
        self.norm = nn.RMSNorm(spec.d_model)
        self.head = nn.Linear(spec.d_model, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        if tie_head:
            self.head.weight = self.embed.weight

    @property
    def mixers(self) -> Iterable[Mixer]:
        return self.backbone.mixers

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) int -> (B, T, D) final-normed hidden states; apply `head` where logits are needed."""
        return self.norm(self.backbone(self.drop(self.embed(tokens))))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(tokens))  # (B, T, V)

    def state_bytes(self, batch: int, seq_len: int) -> int:
        return self.backbone.state_bytes(batch, seq_len)

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor, max_len: int) -> tuple[torch.Tensor, list[State]]:
        """Parallel prefill of `prompt` (B, T): the greedy next token (B,) and the state after the prompt,
        with room for `max_len` tokens in all."""
        x, states = self.backbone.prefill(self.embed(prompt), max_len)
        return self.head(self.norm(x[:, -1])).argmax(-1), states

    def decode_step(self, token: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One greedy step: token (B,) in, the next token (B,) out. The unit a compiled step replaces."""
        x_t, states = self.backbone.step(self.embed(token), states)
        return self.head(self.norm(x_t)).argmax(-1), states

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n_new: int, step=None) -> torch.Tensor:
        """Greedy decoding: parallel prefill of `prompt` (B, T), then `n_new - 1` recurrent steps, each
        `step(token, states) -> (token, states)` (default `decode_step`; a compiled one plugs in here)."""
        step = step or self.decode_step
        token, states = self.prefill(prompt, prompt.shape[1] + n_new)
        out = [token]
        for _ in range(n_new - 1):
            token, states = step(token, states)
            out.append(token)
        return torch.stack(out, 1)  # (B, n_new)
