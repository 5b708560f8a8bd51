"""Suites: named lists of cells, written as data (Zoology style), that `archbench run SUITE` executes.

    quick      a CPU run of at most ~10 minutes: a small scaling sweep + a slice of the retrieval grid
    scaling    mixer x mode x n (defaults: every registered mixer, prefill/train/decode, n = 256 ... 16k)
    retrieval  the MQAR grid: on CPU the quick grid below, on CUDA Zoology's Fig. 2 grid + other tasks
    full       scaling + retrieval

Every option the CLI takes (`--archs --lens --modes --d-model --batch --dtype --device --task`)
overrides a suite default; cells come out ordered by increasing n within a series, which the run loop
relies on to skip longer lengths after a failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from archbench.bench.scaling import MODES
from archbench.bench.train import TrainConfig

SUITES = ("quick", "scaling", "retrieval", "full")

# Recall models are mixer-only blocks (no MLP), as Zoology's MQAR models: recall is the mixer's job,
# and the MLPs would be most of the FLOPs of a CPU training step.
RETRIEVAL_MLP_RATIO = 0


@dataclass
class Options:
    """What the user asked for; None means "the suite's default"."""

    device: str = "cpu"
    archs: list[str] | None = None
    lens: list[int] | None = None
    modes: list[str] | None = None
    d_models: list[int] | None = None
    batch: int | None = None
    dtype: str | None = None
    task: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def default_dtype(device: str) -> str:
    return "bfloat16" if device == "cuda" else "float32"


def scaling_cells(o: Options, *, lens: list[int], modes: list[str], archs: list[str],
                  batches: list[int] = (1,), d_model: int = 256, arch_cfgs: dict | None = None,
                  backend: str = "auto") -> list[dict]:
    cells = []
    for arch in o.archs or archs:
        for mode in o.modes or modes:
            for batch in ([o.batch] if o.batch else batches):
                for d in o.d_models or [d_model]:
                    for n in sorted(o.lens or lens):
                        cells.append({
                            "kind": "scaling", "arch": arch, "arch_cfg": (arch_cfgs or {}).get(arch, {}),
                            "mode": mode, "seq_len": n, "batch": batch, "d_model": d, "device": o.device,
                            "dtype": o.dtype or default_dtype(o.device), "seed": o.seed, "backend": backend,
                        })
    return cells


# The shape of ../shared/anchors (16 heads of 64 at d_model 1024, bf16), so GPU rows compare with them.
GPU_D_MODEL = 1024
GPU_ARCH_CFGS = {"attention": {"head_dim": 64}, "rwkv": {"head_dim": 64},
                 "mamba2": {"head_dim": 64, "expand": 1, "d_state": 64}}  # SSD heads of 64 x 64, as fla's
GPU_LENS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
CPU_LENS = [256, 512, 1024, 2048, 4096, 8192, 16384]


# Attention gets Zoology's short convolution before q/k/v in the recall suites (see the README),
# wherever it appears: in the pure stack and inside hybrids.
RETRIEVAL_MIXER_CFGS = {"attention": {"d_conv": 4}}
RETRIEVAL_DEPTH = 2  # every retrieval model has two mixer layers (Zoology's MQAR models)


def retrieval_cells(o: Options, grid: list[tuple[int, int, list[int]]], lrs: dict[str, list[float]],
                    train: TrainConfig, archs: list[str], vocab_size: int = 8192,
                    test_factor: int = 2) -> list[dict]:
    """MQAR cells over (seq_len, num_kv_pairs, d_models) x learning rates, one model per mixer;
    `lrs` maps a mixer name (or "*") to its learning rates."""
    cells = []
    for seq_len, k, d_models in grid:
        if o.lens and seq_len not in o.lens:
            continue
        for d_model in o.d_models or d_models:
            for arch in o.archs or archs:
                for lr in lrs.get(arch, lrs.get("*", [])):
                    cells.append({
                        "kind": "retrieval", "arch": arch, "mixer_cfgs": RETRIEVAL_MIXER_CFGS,
                        "n_layer": RETRIEVAL_DEPTH,
                        "mlp_ratio": RETRIEVAL_MLP_RATIO,
                        "task": o.task or "mqar",
                        "task_cfg": {"seq_len": seq_len, "num_kv_pairs": k, "vocab_size": vocab_size},
                        "test_lens": [seq_len * test_factor], "d_model": d_model,
                        "train_cfg": asdict(TrainConfig(**{**asdict(train), "lr": lr, "seed": o.seed})),
                        "device": o.device, "dtype": "float32", "seed": o.seed,
                    })
    return cells


RECURRENT_AND_HYBRID = ["attention", "mamba", "mamba2", "rwkv", "mamba-attn"]

# CPU grid (seq_len, K, d_models): K grows with L until the small recurrent states run out — K
# relative to the measured state bytes is what matters. Sized for two CPU cores: the widths that
# show the trend at each length, one pass over fresh examples.
#
# Vocabulary 64, not Zoology's 8192: with 8192 tokens each key is seen a few dozen times in a CPU
# budget of examples. On this CPU Mamba-2 and RWKV-6 stayed at 0.00 after 60k examples on
# (L=64, K=4, V=8192) while attention (with its short conv) reached 0.99, and at V=128 the
# recurrent mixers learned in some cells and not others within 40k examples (rows kept in
# results/raw). With 31 keys every key is seen thousands of times, so what separates the mixers is
# the state rather than the optimiser's patience. The GPU grid keeps 8192.
CPU_VOCAB = 64
CPU_RETRIEVAL_GRID = [(64, 8, [32, 64]), (128, 16, [32, 64, 128]), (256, 24, [64])]
# Zoology sweeps learning rates and keeps the best per cell; a CPU budget affords two for the
# recurrent mixers: a probe on (L=64, K=8) found 1e-2 fastest for them, and 3e-3 guards the wider
# models, for which one fixed lr of 1e-2 may be too high. Attention and the hybrid learn every cell
# at 3e-3.
CPU_LRS = {"attention": [3e-3], "mamba-attn": [3e-3], "*": [1e-2, 3e-3]}
CPU_TRAIN = TrainConfig(batch_size=64, max_examples=40_000, n_train=40_000, eval_every=5_000,
                        target_accuracy=0.99)
# The quick slice shows the trade in one cell: on (n=128, K=16) at d_model 32 the recurrent Mamba-2
# stays near chance while attention and the one-attention-layer hybrid recall (results/ grid).
QUICK_RETRIEVAL_GRID = [(128, 16, [32])]
QUICK_RETRIEVAL_ARCHS = ["attention", "mamba2", "mamba-attn"]
QUICK_TRAIN = TrainConfig(batch_size=64, max_examples=30_000, n_train=30_000, eval_every=5_000,
                          target_accuracy=0.99)

# GPU grid: Zoology Fig. 2 (Arora et al. 2023), four learning rates, best kept by the report.
GPU_RETRIEVAL_GRID = [(64, 4, [64, 128, 256, 512]), (128, 8, [64, 128, 256, 512]),
                      (256, 16, [64, 128, 256, 512]), (512, 64, [64, 128, 256, 512])]
GPU_LRS = [3e-4, 1e-3, 3e-3, 1e-2]
GPU_TRAIN = TrainConfig(batch_size=64, max_examples=64 * 20_000, n_train=100_000, target_accuracy=0.99)


def build(suite: str, o: Options) -> list[dict]:
    from archbench.archs import list_archs

    if suite not in SUITES:
        raise KeyError(suite)
    everything = list_archs()
    cells: list[dict] = []
    if suite in ("quick",):
        cells += scaling_cells(o, lens=[256, 1024, 4096], modes=["prefill", "decode"], archs=everything)
        cells += retrieval_cells(o, QUICK_RETRIEVAL_GRID, CPU_LRS, QUICK_TRAIN, QUICK_RETRIEVAL_ARCHS,
                                 vocab_size=CPU_VOCAB)
    if suite in ("scaling", "full") and o.device == "cuda":
        # The fastest usable kernel per cell (measured), batch 1 and 8, the anchors' shape.
        cells += scaling_cells(o, lens=GPU_LENS, modes=list(MODES), archs=everything, batches=[1, 8],
                               d_model=GPU_D_MODEL, arch_cfgs=GPU_ARCH_CFGS, backend="fastest")
    elif suite in ("scaling", "full"):
        cells += scaling_cells(o, lens=CPU_LENS, modes=list(MODES), archs=everything)
    if suite in ("retrieval", "full"):
        if o.device == "cuda":
            cells += retrieval_cells(o, GPU_RETRIEVAL_GRID, {"*": GPU_LRS}, GPU_TRAIN, RECURRENT_AND_HYBRID)
        else:
            cells += retrieval_cells(o, CPU_RETRIEVAL_GRID, CPU_LRS, CPU_TRAIN, RECURRENT_AND_HYBRID,
                                     vocab_size=CPU_VOCAB)
    return cells
