"""Named hybrid recipes: production layer patterns scaled down to archbench's depths.

A preset is data: a unit pattern, which mixer each letter is, per-letter configs, the source it follows,
and how the unit reaches the model's depth (`fit`). `resolve_model(name, depth, ...)` builds it;
`--models NAME` runs it. Each keeps the published share and placement of attention; everything else
(width, depth, MLPs, positions, MoE) is the experiment's, so presets compare with pure stacks of the same
shape. Attention windows are scaled as the Samba preset's is: Samba's 2048 is sliding-window attention's
default 64 here (1/32, the share of a CPU-sized context it keeps), Griffin's 1024 is 32.

How a unit reaches depth d (`fit`):
  tile    the unit repeated; d must be a multiple of its length (most recipes)
  sample  d a multiple: tiled. Otherwise the unit tiled m = round(d / U) times (at least once; U its
          length, L = m U layers) is resampled to d layers keeping the share and the placement of its
          rarer letter (the attention): layer i is that letter where round(C(L (i + 1) / d) · d / L)
          steps up, C(x) the count of the letter in the tiled unit's first x layers (linear between
          layers), halves rounding up. LFM2's 16-letter unit is LFM2 at depth 16, and CA / CACA /
          CACCACAC at depth 2 / 4 / 8 (its 6 of 16 is 0.75 / 1.5 / 3 attention layers, rounded half
          up); Griffin's RRA is RA / RRRA / RRARRARA at depth 2 / 4 / 8
  cycle   the unit repeated and cut at d, as RecurrentGemma cycles its block types (26 layers: RRA x 8,
          then RR); a depth shorter than the unit has only its first layers

The family `conv+MIXER` (any registered mixer) is Zoology's pairing of a short gated convolution with a
mixer (arXiv 2312.04927, its `Hybrid(BaseConv, mixer)` sequence mixer): unit CM, C = short_conv,
M = MIXER, tiled, so `conv+based` at depth 2L is Zoology's L-layer Based (each of the two mixers here in
its own residual block with its own norm; Zoology applies them in one). A mixer's Config fields go on
the name: `conv+mamba2(d_state=32)`. The explicit pattern `CM:C=short_conv,M=MIXER` is the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

FITS = ("tile", "sample", "cycle")


@dataclass(frozen=True)
class Preset:
    unit: str  # one repeat of the layer pattern
    mixers: dict[str, str]  # letter -> registered mixer
    source: str  # the paper or model card the recipe is taken from
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # letter -> Config overrides
    fit: str = "tile"  # how the unit reaches the model's depth: "tile" | "sample" | "cycle" (module doc)

    def __post_init__(self):
        if self.fit not in FITS:
            raise ValueError(f"preset fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.fit == "sample" and len(set(self.unit)) != 2:
            raise ValueError(f"a sampled preset spreads one letter among another: unit {self.unit!r}")

    def fits(self, depth: int) -> bool:
        """Whether the unit reaches `depth` layers (a tiled unit only a multiple of its length)."""
        return depth >= 1 and (self.fit != "tile" or depth % len(self.unit) == 0)

    def pattern(self, depth: int) -> str:
        """The layer pattern at `depth` (module doc); ValueError where a tiled unit does not divide it."""
        U = len(self.unit)
        if not self.fits(depth):
            raise ValueError(f"its unit of {U} layers ({self.unit}) tiles only depths that are multiples "
                             f"of {U}; depth {depth} is not a multiple of {U}")
        if self.fit == "tile" or depth % U == 0:
            return self.unit * (depth // U)
        if self.fit == "cycle":
            return (self.unit * -(-depth // U))[:depth]
        return _sampled(self.unit, depth)


def _sampled(unit: str, depth: int) -> str:
    """The unit's rarer letter spread over `depth` layers, its share and placement kept (module doc)."""
    counts = {c: unit.count(c) for c in dict.fromkeys(unit)}
    rare, common = sorted(counts, key=lambda c: (counts[c], unit.index(c)))
    unit *= max(1, int(Fraction(depth, len(unit)) + Fraction(1, 2)))  # m = round(d / U), halves up
    U = len(unit)

    def cumulative(x: Fraction) -> Fraction:  # C(x): the rare letters in the first x layers, linear
        whole = int(x)
        part = x - whole if whole < U and unit[whole] == rare else 0
        return unit[:whole].count(rare) + part

    def rounded(i: int) -> int:  # round(C(U i / d) · d / U), halves up
        return int(cumulative(Fraction(U * i, depth)) * Fraction(depth, U) + Fraction(1, 2))

    return "".join(rare if rounded(i + 1) > rounded(i) else common for i in range(depth))


CONV_FAMILY = "conv+"  # `conv+MIXER`: Zoology's short conv before any mixer


def lookup(name: str) -> Preset | None:
    """The preset called `name`: one of PRESETS, or `conv+MIXER` (the mixer is checked where it is
    built); None for any other name."""
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith(CONV_FAMILY) and len(name) > len(CONV_FAMILY):
        return Preset("CM", {"C": "short_conv", "M": name[len(CONV_FAMILY):]},
                      "Zoology (arXiv 2312.04927): a short gated convolution before each mixer, its "
                      "Hybrid(BaseConv, mixer); here LFM2's gated short conv")


PRESETS: dict[str, Preset] = {
    # Gated DeltaNet with full attention every 4th layer (3 : 1).
    "qwen3-next": Preset("GGGA", {"G": "gated_deltanet", "A": "attention"},
                         "Qwen3-Next (Qwen team, 2025) and OLMo Hybrid (2026): "
                         "Gated DeltaNet : attention = 3 : 1"),
    # Kimi Delta Attention with full attention every 4th layer; Kimi's attention is MLA without
    # positions, here archbench's multi-head attention (a stated simplification).
    "kimi-linear": Preset("KKKA", {"K": "kda", "A": "attention"},
                          "Kimi Linear (arXiv 2510.26692): KDA : MLA = 3 : 1, "
                          "best of their 0:1 … 15:1 ablation"),
    # Mamba-2 with attention spaced out, never first or last, one layer in four at depth 4.
    "mamba2-attn": Preset("MMAM", {"M": "mamba2", "A": "attention"},
                          "Mamba-2 paper (arXiv 2405.21060) §9.2.3: a few attention layers spaced out, "
                          "not first or last"),
    # About one attention layer in eight, at position 4 of each 8 (Jamba's layers 4, 12, 20, 28 of 32).
    "jamba": Preset("MMMMAMMM", {"M": "mamba", "A": "attention"},
                    "Jamba (arXiv 2403.19887): Mamba : attention = 7 : 1, attention at layer 4 of every 8"),
    "nemotron-h": Preset("MMMAMMMM", {"M": "mamba2", "A": "attention"},
                         "Nemotron-H (arXiv 2504.03624): Mamba-2 with ~1 attention layer in 8, "
                         "evenly spread"),
    # Mamba and sliding-window attention alternating, no full attention.
    "samba": Preset("MS", {"M": "mamba", "S": "swa"},
                    "Samba (arXiv 2406.07522): Mamba and sliding-window attention layers alternating"),
    # The one-attention-layer model of archbench's first retrieval grid (two layers: Mamba, attention).
    "mamba-attn": Preset("MA", {"M": "mamba", "A": "attention"},
                         "Zoology (arXiv 2312.04927) / Wen, Dang & Lyu 2024: one attention layer in a "
                         "recurrent stack"),
    # LFM2's 16 layers: gated short convolutions, GQA attention at layers 2, 5, 8, 10, 12, 14
    # (`full_attn_idxs`); GQA here is archbench's multi-head attention, without LFM2's q/k norms.
    "lfm2": Preset("CCACCACCACACACAC", {"C": "short_conv", "A": "attention"},
                   "LFM2 (Liquid AI, 2025; transformers' Lfm2Config.full_attn_idxs): 10 gated short "
                   "convolutions and 6 GQA layers in 16, attention at 2, 5, 8, 10, 12, 14",
                   fit="sample"),
    # Griffin: two RG-LRU blocks to one local-attention block, its window 1024 (MQA there, multi-head
    # here), the ratio kept at any depth.
    "griffin": Preset("RRA", {"R": "rglru", "A": "swa"},
                      "Griffin (arXiv 2402.19427): two recurrent blocks, then one local-attention block "
                      "(window 1024, here 32)", configs={"A": {"window": 32}}, fit="sample"),
    # RecurrentGemma: Griffin's pattern cycled and cut at the depth (its 26 layers end RR), window 2048.
    "recurrentgemma": Preset("RRA", {"R": "rglru", "A": "swa"},
                             "RecurrentGemma (arXiv 2404.07839): (RG-LRU, RG-LRU, local attention) cycled "
                             "over the layers, window 2048 (here 64)", fit="cycle"),
    # Hawk: the RG-LRU alone (Griffin's pure-recurrent model).
    "hawk": Preset("R", {"R": "rglru"}, "Hawk (arXiv 2402.19427): the recurrent block in every layer"),
}
