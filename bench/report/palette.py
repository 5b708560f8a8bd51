"""One colour and one marker per model family, the same in every figure the report draws.

A family is a model's name without its configs: a registered mixer (`mamba2`), a preset (`qwen3-next`)
or an explicit pattern (`RRRX:R=mamba2,X=attention`). Mixers and presets have fixed entries below, so
a reader who learns "blue triangle = Mamba-2" in one plot can read every other plot with it. A hybrid
takes the colour of its recurrent partner and a star-like marker of its own, so it reads as "Mamba-2,
with attention" at a glance. A name with no entry (a plugin's mixer, an explicit pattern) gets a colour
and marker derived from the name itself (crc32: the same in every run and every plot, never from the
order in which families happen to appear).

Variants of one family (config overrides, `mamba2 d_state=32`) keep its hue and marker and are drawn
lighter, one step per variant; filled against hollow markers is kept for learned against not learned,
and the line style for the decode path or backend.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping

ATTENTION_LIKE = frozenset({"attention", "swa"})  # hybrids take their colour from the other partner

# mixer -> (colour, marker). Attention is black: the reference every other family is read against.
MIXERS: dict[str, tuple[str, str]] = {
    "attention": ("#000000", "o"),
    "swa": ("#7f7f7f", "s"),
    "mamba": ("#17becf", "v"),
    "mamba2": ("#1f77b4", "^"),
    "mamba3": ("#393b79", "<"),
    "rwkv": ("#2ca02c", "D"),
    "rwkv7": ("#006d2c", ">"),
    "linear_attention": ("#ff7f0e", "p"),
    "retnet": ("#8c564b", "h"),
    "gla": ("#bcbd22", "8"),
    "deltanet": ("#d62728", "X"),
    "gated_deltanet": ("#9467bd", "P"),
    "kda": ("#e377c2", "d"),
    "gated_deltaproduct": ("#6a3d9a", "X"),  # the delta family's purples and reds, its own shade
    "hgrn2": ("#dbdb8d", "8"),  # GLA's olive, lighter: HGRN-2 is GLA with the key tied to the gate
    "mlstm": ("#f781bf", "p"),
    "rglru": ("#41ab5d", "h"),
    "short_conv": ("#a6761d", "s"),
    "based": ("#fdae6b", "D"),
}
# preset -> (the mixer whose colour it takes, marker): each pair differs from every other entry
PRESETS: dict[str, tuple[str, str]] = {
    "qwen3-next": ("gated_deltanet", "*"),
    "kimi-linear": ("kda", "*"),
    "mamba2-attn": ("mamba2", "*"),
    "nemotron-h": ("mamba2", "H"),
    "jamba": ("mamba", "*"),
    "samba": ("mamba", "H"),
    "mamba-attn": ("mamba", "o"),
    "lfm2": ("short_conv", "*"),
    "griffin": ("rglru", "*"),
    "recurrentgemma": ("rglru", "H"),
    "hawk": ("rglru", "o"),
}
HYBRID_MARKERS = ("*", "H", "o", "s", "D", "p")  # an unlisted pattern: one of these, by its name
EXTRA_COLOURS = ("#e6ab02", "#ce1256", "#00796b", "#a6761d", "#7570b3", "#1b9e77", "#d95f02", "#666666")
EXTRA_MARKERS = ("o", "s", "^", "v", "D", "<", ">", "p")
PURE_SIZE, HYBRID_SIZE = 6.5, 5.0  # a hybrid drawn over a pure stack at the same point leaves it visible


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())  # not hash(): salted per process


def _pattern_mixers(family: str) -> list[str]:
    """'RRRX:R=mamba2,X=attention' -> ['mamba2', 'mamba2', 'mamba2', 'attention'] (in layer order)."""
    pattern, _, spec = family.partition(":")
    letters = dict(re.findall(r"(?:^|,)\s*([A-Za-z])\s*=\s*([A-Za-z0-9_.\-]+)", spec))
    return [letters[c] for c in pattern if c in letters]


def family_style(family: str) -> dict:
    """matplotlib style keys (color, marker, markersize) of a family: fixed, or derived from its name."""
    if family in MIXERS:
        colour, marker = MIXERS[family]
        return {"color": colour, "marker": marker, "markersize": PURE_SIZE}
    if family in PRESETS:
        partner, marker = PRESETS[family]
        return {"color": MIXERS[partner][0], "marker": marker, "markersize": HYBRID_SIZE}
    layers = _pattern_mixers(family)
    if layers:
        partner = next((m for m in layers if m not in ATTENTION_LIKE), layers[0])
        colour = (MIXERS[partner][0] if partner in MIXERS
                  else EXTRA_COLOURS[_crc(partner) % len(EXTRA_COLOURS)])
        return {"color": colour, "marker": HYBRID_MARKERS[_crc(family) % len(HYBRID_MARKERS)],
                "markersize": HYBRID_SIZE}
    return {"color": EXTRA_COLOURS[_crc(family) % len(EXTRA_COLOURS)],
            "marker": EXTRA_MARKERS[(_crc(family) >> 8) % len(EXTRA_MARKERS)], "markersize": PURE_SIZE}


def lighter(colour: str, amount: float) -> str:
    """`colour` mixed with white: 0 leaves it, 1 is white."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def styles(models: Iterable[str], families: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Style per model label: its family's colour and marker, variants of one family lighter in turn
    (sorted labels; the shortest, the family's defaults, keeps the full colour). `families` maps a
    label to its family; without it every label is its own family."""
    families = families or {}
    by_family: dict[str, list[str]] = {}
    for m in sorted(set(models), key=lambda m: (len(m), m)):
        by_family.setdefault(families.get(m, m), []).append(m)
    out = {}
    for fam, labels in by_family.items():
        base = family_style(fam)
        for i, label in enumerate(labels):
            # up to 60% lighter across the variants: the palest still reads against white
            amount = 0.6 * i / max(len(labels) - 1, 1) if i else 0.0
            out[label] = {**base, "color": lighter(base["color"], amount)}
    return out
