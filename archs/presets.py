"""Named hybrid recipes: production layer patterns scaled down to archbench's depths.

A preset is data: a unit pattern (tiled to the model's depth), which mixer each letter is, per-letter
configs, and the source it follows. `resolve_model(name, depth, ...)` builds it; `--archs NAME` runs it.
Each keeps the published share and placement of attention; everything else (width, depth, MLPs,
positions, MoE) is the experiment's, so presets compare with pure stacks of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    unit: str  # one repeat of the layer pattern
    mixers: dict[str, str]  # letter -> registered mixer
    source: str  # the paper or model card the recipe is taken from
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # letter -> Config overrides


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
}
