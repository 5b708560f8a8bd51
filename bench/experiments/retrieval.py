"""The retrieval experiment: train `LM(model, vocab)` on a synthetic task, score held-out rows.

One cell is one training run (bench/experiments/train.py, Zoology's recipe): a model of a stated
depth, width and MLP ratio, one task config (MQAR's length, K and vocabulary, or another task's
own fields), one training config (learning rate included). The report keeps the best learning rate
per cell of the grid.

Glossary: n = seq_len (train length), K = num_kv_pairs (MQAR), V = vocab_size, lr learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from archbench.archs import ModelSpec
from archbench.bench.experiments import register
from archbench.bench.experiments.base import Experiment, Progress
from archbench.bench.experiments.train import TrainConfig, train_and_evaluate
from archbench.tasks import TaskSpec


@dataclass(frozen=True)
class RetrievalSpec:
    model: ModelSpec
    task: TaskSpec  # the task's Config overrides set seq_len always
    train: TrainConfig
    test_lens: tuple[int, ...]  # lengths scored after training (the training length is always scored)
    device: str
    dtype: str
    seed: int = 0

    def __post_init__(self) -> None:
        if "seq_len" not in self.task.config:
            raise ValueError(f"the task's config must set seq_len, got {self.task.config}")

    @property
    def seq_len(self) -> int:
        return self.task.config["seq_len"]

    @property
    def num_kv_pairs(self) -> int | None:  # MQAR's K; None for tasks without it
        return self.task.field("num_kv_pairs")

    @property
    def vocab_size(self) -> int | None:
        return self.task.field("vocab_size")

    @property
    def lr(self) -> float:
        return self.train.lr

    @property
    def recipe(self) -> str:  # the training recipe's name (bench/experiments/recipes.py)
        return self.train.recipe


@dataclass(frozen=True)
class RetrievalResult:
    backend: str
    params: int
    state_bytes: int  # LM.state_bytes(1, n), measured from the state tensors
    steps: int
    examples_seen: int
    train_seconds: float
    accuracy: float | None  # exact match on the held-out scored positions at n
    accuracy_by_len: dict[str, float | None]  # test length -> accuracy
    test_len: int
    accuracy_by_slice: dict[str, float | None]  # the task's slices (e.g. per query, per depth)
    final_loss: float | None
    stopped_early: bool
    # examples seen -> held-out-subset accuracy, mean loss, per-layer output RMS and constant share
    curve: dict[str, list] | None = None
    resolved_configs: dict[str, dict[str, Any]] | None = None  # letter -> the Config it ran with


@register("retrieval")
class Retrieval(Experiment):
    Spec = RetrievalSpec
    Result = RetrievalResult
    summary_columns = ("model", "depth", "task", "seq_len", "num_kv_pairs", "d_model", "lr", "status",
                       "accuracy", "train_seconds")
    key_result = "accuracy"
    default_time_limit_s = 3600.0  # a whole training run
    # A trained model's accuracy is the Spec's (seed, data, recipe), not the machine's: another CPU runs
    # the same steps and differs by float rounding, which moves a curve as little as a rerun does
    # (results/METHODS.md, "Recall cells on two CPUs"). So a grid that outlives one machine resumes on
    # the next instead of training every cell again. `train_seconds` is the machine's, and no table
    # reads it (training speed is the scaling kind's train mode).
    machine_bound = False

    @classmethod
    def run(cls, spec: RetrievalSpec, budget_s: float, progress: Progress | None = None) -> RetrievalResult:
        from archbench.tasks import create

        figures = train_and_evaluate(
            spec.model, create(spec.task.name, **spec.task.config), spec.train, tuple(spec.test_lens),
            device=spec.device, dtype=getattr(torch, spec.dtype), progress=progress)
        return RetrievalResult(**figures)

    @classmethod
    def label(cls, spec: RetrievalSpec) -> str:
        k = f" K={spec.num_kv_pairs}" if spec.num_kv_pairs is not None else ""
        return (f"{spec.model.name} ×{spec.model.depth} {spec.task.name} n={spec.seq_len}{k} "
                f"d={spec.model.d_model} lr={spec.lr:g}")
