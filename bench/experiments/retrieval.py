"""The retrieval experiment: train `LM(model, vocab)` on a synthetic task, score held-out rows.

One cell is one training run (bench/experiments/train.py, Zoology's recipe): a model of a stated
depth, width and MLP ratio, one task config (MQAR's length, K and vocabulary, or another task's
own fields), one training config (learning rate included). The report keeps the best learning rate
per cell of the grid.

Glossary: n = seq_len (train length), K = num_kv_pairs (MQAR), V = vocab_size, lr learning rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from archbench.bench.experiments import register
from archbench.bench.experiments.base import Experiment, ModelFields, Progress
from archbench.bench.experiments.train import TrainConfig, train_and_evaluate


@dataclass(frozen=True)
class RetrievalSpec(ModelFields):
    task: str  # a registered task
    task_cfg: dict[str, Any]  # that task's Config overrides (seq_len always among them)
    test_lens: tuple[int, ...]  # lengths scored after training (the training length is always scored)
    train_cfg: dict[str, Any]  # TrainConfig fields
    device: str
    dtype: str
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if "seq_len" not in self.task_cfg:
            raise ValueError(f"task_cfg must set seq_len, got {self.task_cfg}")
        TrainConfig.from_dict(self.train_cfg)  # a bad field fails when the grid is built, not mid-sweep
        # TrainConfig fields added after rows were stored are left out of the cell at their default, so
        # a stored row's cell keeps its key and a resume still finds it.
        late = {k: v for k, v in TrainConfig.LATE_DEFAULTS.items() if self.train_cfg.get(k, v) == v}
        if late:
            object.__setattr__(self, "train_cfg", {k: v for k, v in self.train_cfg.items() if k not in late})

    def _task_field(self, name: str) -> Any:
        """A task Config field as the cell ran it: the override, else the task's default, else None."""
        if name in self.task_cfg:
            return self.task_cfg[name]
        from archbench.tasks import get

        defaults = {f.name: f.default for f in dataclasses.fields(get(self.task).Config)}
        return defaults.get(name)

    @property
    def seq_len(self) -> int:
        return self.task_cfg["seq_len"]

    @property
    def num_kv_pairs(self) -> int | None:  # MQAR's K; None for tasks without it
        return self._task_field("num_kv_pairs")

    @property
    def vocab_size(self) -> int | None:
        return self._task_field("vocab_size")

    @property
    def lr(self) -> float:
        return self.train_cfg["lr"]

    @property
    def recipe(self) -> str:  # the training recipe's name (bench/experiments/recipes.py)
        return self.train_cfg.get("recipe", TrainConfig.LATE_DEFAULTS["recipe"])


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
    default_time_limit_s = 3600.0  # a whole training run

    @classmethod
    def run(cls, spec: RetrievalSpec, budget_s: float, progress: Progress | None = None) -> RetrievalResult:
        from archbench.tasks import create

        figures = train_and_evaluate(
            spec.model_spec(), create(spec.task, **spec.task_cfg), TrainConfig.from_dict(spec.train_cfg),
            tuple(spec.test_lens), device=spec.device, dtype=getattr(torch, spec.dtype), progress=progress)
        return RetrievalResult(**figures)

    @classmethod
    def label(cls, spec: RetrievalSpec) -> str:
        k = f" K={spec.num_kv_pairs}" if spec.num_kv_pairs is not None else ""
        return f"{spec.model} ×{spec.depth} {spec.task} n={spec.seq_len}{k} d={spec.d_model} lr={spec.lr:g}"
