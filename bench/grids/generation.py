"""LMs serving a batch — prefill a prompt of P tokens, then generate G — at doubling batch sizes, up to
the first batch whose parameters and state at P+G exceed the memory budget (or `--max-batch`).

Models of one shape, as the scaling grid's: attention, two recurrent families and each one's production
hybrid, so the batch a memory budget holds is read against the state each keeps (attention's KV cache
grows with P+G; a recurrent state does not).
"""

from __future__ import annotations

from archbench.bench.grids import GridError, Params
from archbench.bench.grids.common import generation_cells, one_part

TAKES = ("models", "depth", "mlp_ratio", "d_models", "batch", "dtype", "vocab_size", "decode_backend",
         "memory_budget", "prompt_lens", "gen_len", "max_batch")

MODELS = ["attention", "mamba2", "gated_deltanet", "mamba2-attn", "qwen3-next"]
DEPTH = 4
D_MODEL = 256
MLP_RATIO = 0
PROMPT_LENS = [4096]
GEN_LEN = 32
VOCAB = 4096
MAX_BATCH = {"cpu": 256, "cuda": 4096}  # bounds a CPU sweep's time where states are small
BUDGET_FRACTION = 0.25  # the default memory budget: this fraction of the device's memory


def default_budget(device: str) -> int:
    from archbench.bench.measure.device import memory_bytes

    total = memory_bytes(device)
    if total is None:
        raise GridError(f"cannot read the memory of device {device!r}; give --memory-budget (e.g. 1G)")
    return int(total * BUDGET_FRACTION)


def cells(p: Params):
    return one_part(generation_cells(
        p, models=MODELS, depth=DEPTH, d_model=D_MODEL, mlp_ratio=MLP_RATIO, prompt_lens=PROMPT_LENS,
        gen_len=GEN_LEN, vocab_size=VOCAB, max_batch=p.max_batch or MAX_BATCH.get(p.device, MAX_BATCH["cpu"]),
        budget=p.memory_budget or default_budget(p.device)))
