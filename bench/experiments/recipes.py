"""Training recipes: the named sets of optimiser, schedule and initialisation choices a retrieval cell
trains with, and the helpers that apply them. Every row names its recipe (`TrainConfig.recipe`).

    archbench  linear warm-up then cosine to 10% of the lr, stepped per batch; shuffled epochs; AdamW
               decaying only projection and embedding matrices (see `param_groups`); gradient norm
               clipped at 1; the mixers' own initialisation; an untied head; no dropout
    zoology    Zoology's trainer as published (HazyResearch/zoology, zoology/train.py and model.py):
               cosine over epochs to 0 with no warm-up, the lr changed once per epoch; unshuffled
               epochs; AdamW decaying every parameter by 0.1; no clipping; the head tied to the token
               embedding; every Linear and the embedding N(0, 0.02), output projections
               N(0, 0.02 / sqrt(2 * n_layers)), biases 0; dropout 0.1 on the embedding; evaluated on
               the whole held-out set once per epoch, stopping at 0.99; its four lrs 1e-4 .. 1e-2

A recipe is only defaults: a cell may override any field (a learning-rate sweep does), and the row
keeps both the recipe's name and every field it ran with.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

# Field values that differ from TrainConfig's defaults (which are archbench's recipe).
RECIPES: dict[str, dict[str, Any]] = {
    "archbench": {},
    "zoology": dict(schedule="cosine_epochs", warmup_frac=0.0, min_lr_frac=0.0, shuffle=False,
                    decay="all", weight_decay=0.1, grad_clip=0.0, tie_head=True, init="zoology",
                    embed_dropout=0.1, target_accuracy=0.99),
}
# The learning rates each recipe's authors sweep (Zoology: np.logspace(-4, -2, 4)).
RECIPE_LRS: dict[str, tuple[float, ...]] = {
    "archbench": (1e-3, 3e-3, 1e-2),
    "zoology": tuple(float(f"{lr:.3g}") for lr in np.logspace(-4, -2, 4)),
}
SCHEDULES = ("warmup_cosine", "cosine_epochs")
DECAY = ("matrices", "all")
INITS = ("archbench", "zoology")

# The Linear layers that write a mixer's (or MLP's) output back into the residual stream, by the
# attribute names the built-in mixers use; Zoology's init scales these down with depth (GPT-2's rule).
OUT_PROJECTIONS = ("out", "out_proj", "o_proj", "output", "cm_value", "fc2")


def lr_at(step: int, cfg) -> float:
    """Learning rate before optimizer step `step` (0-based) under `cfg.schedule`.

    warmup_cosine: linear warm-up over `warmup_frac` of the steps, then cosine to `min_lr_frac * lr` at
    the last step. cosine_epochs (Zoology's CosineAnnealingLR(T_max=epochs), stepped after each epoch):
    constant within an epoch, epoch e at min + (lr - min) * (1 + cos(pi e / epochs)) / 2.
    """
    if cfg.schedule == "cosine_epochs":
        per_epoch = max(1, cfg.n_train // cfg.batch_size)
        epochs = max(1, math.ceil(cfg.total_steps / per_epoch))
        low = cfg.min_lr_frac * cfg.lr
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * (step // per_epoch) / epochs))
    total = cfg.total_steps
    warmup = int(cfg.warmup_frac * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)  # 0 at the end of warm-up, 1 at the last step
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(model: nn.Module, weight_decay: float, decay: str = "matrices") -> list[dict[str, Any]]:
    """AdamW groups. decay="all": every parameter (Zoology). decay="matrices": the weights of Linear /
    Embedding / Conv modules, nothing else.

    Zoology decays every parameter by 0.1. archbench follows nanoGPT and the Mamba reference instead:
    the other parameters are norm gains, biases and the mixers' own dynamics parameters (Mamba's
    A_log, D and dt_bias, RWKV's decay w0 and token-shift mixes). Pulling those towards zero does not
    shrink a projection, it changes the recurrence — A_log -> 0 pins every SSM decay rate to one value —
    so a recurrent mixer would be regularised towards a different model than attention is. A parameter
    with `_no_weight_decay = True` (the Mamba convention) is never decayed under "matrices".
    """
    params = [p for p in _unique(model.parameters()) if p.requires_grad]
    if decay == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    decay_ids = set()
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding | nn.Conv1d):
            w = module.weight
            if not getattr(w, "_no_weight_decay", False):
                decay_ids.add(id(w))
    on, off = [], []
    for p in params:
        (on if id(p) in decay_ids else off).append(p)
    return [{"params": on, "weight_decay": weight_decay}, {"params": off, "weight_decay": 0.0}]


def _unique(params):
    seen = set()
    for p in params:  # a tied head shares the embedding's tensor: one optimiser entry, not two
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def zoology_init(model: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """Zoology's `_init_weights` for its TransformerBlock models, applied to every mixer alike: Linear
    weights and the embedding N(0, std), biases 0, output projections N(0, std / sqrt(2 n_layers))."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in OUT_PROJECTIONS:
            nn.init.normal_(module.weight, std=std / math.sqrt(2 * n_layers))
