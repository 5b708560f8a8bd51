"""Time and memory against sequence length: every registered mixer as a pure stack and every preset
hybrid that fits the depth, all of one depth, width and MLP ratio, in prefill, decode and train.

On CUDA: the fastest usable kernel per cell, batch 1 and 8, at the shape of the reference GPU numbers
(../shared/anchors: 16 heads of 64 at d_model 1024), so GPU rows compare with them.
"""

from __future__ import annotations

from archbench.bench.experiments.scaling import MODES
from archbench.bench.grids import Params
from archbench.bench.grids.common import one_part, scaling_cells

TAKES = ("models", "depth", "mlp_ratio", "lens", "modes", "d_models", "batch", "dtype", "decode_backend")

DEPTH = 4
D_MODEL = 256
MLP_RATIO = 0  # mixer-only blocks: the figure is the mixers', not four MLPs'
CPU_LENS = [256, 512, 1024, 2048, 4096, 8192, 16384]
GPU_LENS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
GPU_D_MODEL = 1024
# Mixer configs reach that mixer wherever it appears, inside hybrids too: SSD heads of 64 x 64, as fla's.
GPU_MIXER_CFGS = {"attention": {"head_dim": 64}, "rwkv": {"head_dim": 64},
                  "mamba2": {"head_dim": 64, "expand": 1, "d_state": 64}}


def cells(p: Params):
    if p.device == "cuda":
        return one_part(scaling_cells(p, models=None, depth=DEPTH, d_model=GPU_D_MODEL, mlp_ratio=MLP_RATIO,
                                      lens=GPU_LENS, modes=list(MODES), batches=(1, 8),
                                      mixer_configs=GPU_MIXER_CFGS, backend="fastest"))
    return one_part(scaling_cells(p, models=None, depth=DEPTH, d_model=D_MODEL, mlp_ratio=MLP_RATIO,
                                  lens=CPU_LENS, modes=list(MODES)))
