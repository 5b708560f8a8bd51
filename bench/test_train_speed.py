"""pytest-benchmark: training examples per second of every mixer, eager vs compiled.

One benchmark is one optimiser step of the retrieval training loop (bench/experiments/train.py: the
scored loss, backward, gradient clipping, fused AdamW) at the frontier suite's MQAR point and model
shape (bench/grids/frontier.py: n 64, K 8, V 1024, batch 64, depth 2, d_model 64), with the loss eager
or compiled (`TrainConfig.compile`). Compiling happens in the warm-up, outside the timed rounds; its
cost is `extra_info["warmup_s"]`. `extra_info["examples_per_s"]` is batch / median step time.
Against it stands a bound (bench/measure/train_flops.py): `step_flops`, the step's analytic FLOPs
(forward × 3 for forward + backward), over `matmul_peak_flops`, a large matmul's FLOP/s measured on the
benchmark's threads, gives `bound_examples_per_s`; `frac_of_bound` is the measured share of it.

    taskset -c 1 pytest bench/test_train_speed.py --benchmark-only \
        --benchmark-json=results/raw/pytest-benchmark/train_speed.json
    ARCHBENCH_TRAIN_MIXERS=mamba2,kda pytest bench/test_train_speed.py --benchmark-only
    ARCHBENCH_TRAIN_BATCH=128 pytest bench/test_train_speed.py --benchmark-only   # another batch size

A larger batch at the same number of examples means fewer optimiser steps: what it buys in examples/s
is measured here; whether the models still learn at it is a question for the retrieval grid.

Time it pinned to a core nothing else runs on, with one torch thread (the retrieval cells run one
thread each): whatever else runs on that core is timed as part of the step.
"""

import os
import time

import numpy as np
import pytest
import torch

from archbench.archs import LM, list_archs, resolve_model
from archbench.bench.experiments.train import TrainConfig, TrainLoss, param_groups
from archbench.bench.grids.frontier import ATTENTION_CFG, CPU_GRID, D_MODEL, RECALL_DEPTH
from archbench.bench.measure.train_flops import matmul_peak_flops, train_step_flops
from archbench.tasks import create
from archbench.tasks.base import IGNORE

MIXERS = os.environ.get("ARCHBENCH_TRAIN_MIXERS", "").split(",") if os.environ.get(
    "ARCHBENCH_TRAIN_MIXERS") else list_archs()
ROUNDS = 10


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


BATCH = _positive_int("ARCHBENCH_TRAIN_BATCH", CPU_GRID.train.batch_size)
THREADS = _positive_int("ARCHBENCH_TRAIN_THREADS", 1)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
@pytest.mark.parametrize("mixer", MIXERS)
def test_train_step(benchmark, mixer: str, backend: str) -> None:
    torch.set_num_threads(THREADS)
    task = create("mqar", **CPU_GRID.mqar)
    cfg = CPU_GRID.train
    x, y = (torch.from_numpy(a) for a in task.make(BATCH, np.random.default_rng(0)))
    torch.manual_seed(0)
    model = LM(resolve_model(mixer, RECALL_DEPTH, D_MODEL, 0, ATTENTION_CFG), task.vocab_size).train()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=1e-3, fused=True)
    loss_fn = TrainLoss(model, backend == "compiled")

    def step() -> None:
        loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TrainConfig.grad_clip, foreach=True)
        opt.step()

    start = time.perf_counter()
    for _ in range(3):  # compiles (forward and backward graphs) and warms the caches
        step()
    warmup_s = time.perf_counter() - start
    benchmark.group = f"train step mqar n={task.seq_len} V={task.vocab_size} d={D_MODEL} b={BATCH}"
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    examples_per_s = BATCH / benchmark.stats.stats.median
    step_flops = train_step_flops(model, BATCH, task.seq_len, int((y != IGNORE).sum()))
    peak = matmul_peak_flops(THREADS)
    bound = peak / (step_flops / BATCH)
    benchmark.extra_info.update(
        mixer=mixer, backend=backend + loss_fn.note.replace("+train compiled", ""),
        warmup_s=round(warmup_s, 1), threads=torch.get_num_threads(),
        examples_per_s=round(examples_per_s, 1), step_flops=step_flops,
        matmul_peak_flops=round(peak), bound_examples_per_s=round(bound, 1),
        frac_of_bound=round(examples_per_s / bound, 4))
