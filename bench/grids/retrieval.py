"""In-context recall: a task's grid of small LMs (MQAR by default; `--task` picks another task's own
grid), every model at a few learning rates, the best kept by the report.

MQAR points (n, K, widths) grow K with n until the small recurrent states run out: K relative to the
measured state bytes is what matters. On CPU the vocabulary is 64, not Zoology's 8192: with 8192 tokens
each key is seen only a few dozen times in a CPU budget of examples, so what would separate the mixers is
the optimiser's patience rather than the state (results/METHODS.md). The GPU grid keeps 8192 and
Zoology's four learning rates (Arora et al. 2023, Fig. 2). The other tasks keep their own vocabularies.
"""

from __future__ import annotations

from archbench.bench.experiments.train import TrainConfig
from archbench.bench.grids import Params
from archbench.bench.grids.common import TaskGrid, one_part, retrieval_cells

TAKES = ("models", "depth", "mlp_ratio", "lens", "d_models", "dtype", "task", "num_kv_pairs", "vocab_size",
         "lrs", "max_examples")

DEPTH = 2  # Zoology's MQAR models: two mixer layers
# No MLPs, as Zoology's MQAR models: recall is the mixer's job, and MLPs would be most of a CPU step.
MLP_RATIO = 0
# Zoology's short convolution before q/k/v, wherever attention appears (pure stacks and hybrids).
MIXER_CFGS = {"attention": {"d_conv": 4}}
MODELS = ["attention", "mamba", "mamba2", "rwkv", "mamba-attn"]

CPU_GRIDS = {
    "mqar": TaskGrid(((dict(seq_len=64, num_kv_pairs=8), (32, 64)),
                      (dict(seq_len=128, num_kv_pairs=16), (32, 64, 128)),
                      (dict(seq_len=256, num_kv_pairs=24), (64,))), vocab_size=64),
    "copy": TaskGrid(((dict(seq_len=34), (32, 64)), (dict(seq_len=66, max_len=32), (64,)))),
    "passkey": TaskGrid(((dict(seq_len=64), (32, 64)), (dict(seq_len=256), (64,)))),
    "selective_copy": TaskGrid(((dict(seq_len=64, num_tokens=8), (32, 64)),
                                (dict(seq_len=256, num_tokens=16), (64,)))),
    "induction": TaskGrid(((dict(seq_len=64), (32, 64)), (dict(seq_len=256), (64,)))),
}
PLUGIN_TASK_GRID = TaskGrid(((dict(seq_len=64), (32, 64)),))  # a task without a grid here (a plugin)
# Two lrs for the recurrent mixers (the window they learn MQAR in is narrow: Okpekpe & Orvieto 2025);
# attention and the hybrid learn at the lower one.
CPU_LRS = {"attention": [3e-3], "mamba-attn": [3e-3], "*": [1e-2, 3e-3]}
CPU_TRAIN = TrainConfig(batch_size=64, max_examples=40_000, n_train=40_000, eval_every=5_000,
                        target_accuracy=0.99)

GPU_WIDTHS = (64, 128, 256, 512)
GPU_GRIDS = {"mqar": TaskGrid(((dict(seq_len=64, num_kv_pairs=4), GPU_WIDTHS),
                               (dict(seq_len=128, num_kv_pairs=8), GPU_WIDTHS),
                               (dict(seq_len=256, num_kv_pairs=16), GPU_WIDTHS),
                               (dict(seq_len=512, num_kv_pairs=64), GPU_WIDTHS)), vocab_size=8192)}
GPU_LRS = {"*": [3e-4, 1e-3, 3e-3, 1e-2]}
GPU_TRAIN = TrainConfig(batch_size=64, max_examples=64 * 20_000, n_train=100_000, target_accuracy=0.99)


def task_grid(task: str, device: str) -> TaskGrid:
    cpu = CPU_GRIDS.get(task, PLUGIN_TASK_GRID)
    if device == "cuda":  # the other tasks run their CPU points at the GPU widths
        wide = TaskGrid(tuple((cfg, GPU_WIDTHS) for cfg, _ in cpu.points), cpu.vocab_size)
        return GPU_GRIDS.get(task, wide)
    return cpu


def cells(p: Params):
    grid = task_grid(p.task or "mqar", p.device)
    lrs, train = (GPU_LRS, GPU_TRAIN) if p.device == "cuda" else (CPU_LRS, CPU_TRAIN)
    return one_part(retrieval_cells(p, grid, models=MODELS, lrs=lrs, train=train, depth=DEPTH,
                                    mlp_ratio=MLP_RATIO, mixer_configs=MIXER_CFGS))
