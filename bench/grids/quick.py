"""A first look in a few minutes on CPU: a small scaling sweep (two recurrent families, each beside its
production hybrid of the same shape, and attention) and one recall cell where the trade shows.
"""

from __future__ import annotations

from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import Params, retrieval, scaling
from archbench.bench.grids.common import TaskGrid, models_at, retrieval_cells, scaling_cells

TAKES = ("models", "depth", "mlp_ratio", "lens", "modes", "d_models", "batch", "dtype", "decode_backend",
         "task", "num_kv_pairs", "vocab_size", "lrs", "max_examples")

SCALING_MODELS = ["attention", "mamba2", "mamba2-attn", "gated_deltanet", "qwen3-next"]
SCALING_LENS = [256, 1024, 4096]
SCALING_MODES = ["prefill", "decode"]
# The recall slice: MQAR at (n=128, K=16) at d_model 32, where a recurrent stack's state runs out while
# attention and a one-attention-layer hybrid recall; for another task, that task's first grid point.
RECALL_GRIDS = {"mqar": TaskGrid(((dict(seq_len=128, num_kv_pairs=16), (32,)),), vocab_size=64)}
RECALL_MODELS = ["attention", "mamba2", "mamba-attn"]
RECALL_TRAIN = TrainConfig(batch_size=64, max_examples=30_000, n_train=30_000, eval_every=5_000,
                           target_accuracy=0.99)


def cells(p: Params):
    depth = p.depth or scaling.DEPTH
    timed = scaling_cells(p, models=[m for m in SCALING_MODELS if m in models_at(depth)], depth=scaling.DEPTH,
                          d_model=scaling.D_MODEL, mlp_ratio=scaling.MLP_RATIO, lens=SCALING_LENS,
                          modes=SCALING_MODES)
    task = p.task or "mqar"
    full = retrieval.CPU_GRIDS.get(task, retrieval.PLUGIN_TASK_GRID)
    first, widths = full.points[0]
    grid = RECALL_GRIDS.get(task, TaskGrid(((first, widths[:1]),), full.vocab_size))
    recall = retrieval_cells(p, grid, models=RECALL_MODELS, lrs=retrieval.CPU_LRS, train=RECALL_TRAIN,
                             depth=retrieval.DEPTH, mlp_ratio=retrieval.MLP_RATIO,
                             mixer_configs=retrieval.MIXER_CFGS, what="quick retrieval grid")
    return [("scaling", c) for c in timed] + [("recall", c) for c in recall]
