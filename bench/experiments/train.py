"""The one training loop of the retrieval experiments: train a small LM on a task, score held-out rows.

The set-up follows Zoology (Arora, Eyuboglu et al. 2023, arXiv:2312.04927, Sec. 3 and App. E): a
fixed training set drawn once from the seed and trained over in epochs, AdamW, cross-entropy only
where the task scores a token, and exact-match accuracy on a held-out set that shares no row with
the training set. The optimiser's schedule, weight decay, clipping and initialisation are a named
recipe (bench/experiments/recipes.py: archbench's own by default, or Zoology's exactly). Training
stops early once a held-out subset reaches `target_accuracy`, so easy cells cost seconds and the
budget goes to the hard ones.

    from archbench.archs import resolve_model
    from archbench.tasks import create
    out = train_and_evaluate(resolve_model("attention", depth=2, d_model=64), create("mqar", vocab_size=512),
                             TrainConfig(max_examples=20_000), test_lens=(128,))
    out["accuracy"], out["accuracy_by_len"]["128"], out["accuracy_by_slice"]

Speed: the output head and the loss are computed
only at the scored positions — in MQAR that is K of L tokens, and the (B, T, V) logits would
otherwise be the largest tensor of the step — and no per-step host sync happens outside the
periodic evaluations.

Determinism: training runs inside `torch.random.fork_rng` seeded by the cell's seed (dropout's masks come
from it; the caller's RNG is restored afterwards), model init inside another seeded fork, shuffling uses
a local `torch.Generator`, data a local `np.random.Generator`. On CPU the same seed gives the same row
whatever ran before it in the process, bar `train_seconds`.

Glossary: N examples, B batch_size, L = T = seq_len, D d_model, V vocab_size, M scored positions
in a batch (rows of the gathered hidden states), K items to recall per row.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archbench.archs import LM, ModelSpec
from archbench.bench.experiments.base import resolved_configs
from archbench.bench.experiments.decode import CANNOT_COMPILE, root_cause
from archbench.bench.experiments.diagnostics import watch
from archbench.bench.experiments.recipes import (
    DECAY,
    INITS,
    RECIPES,
    SCHEDULES,
    lr_at,
    param_groups,
    zoology_init,
)
from archbench.bench.measure.device import compiler_error
from archbench.tasks.base import IGNORE, Task

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], one-line status)


@dataclass(frozen=True)
class TrainConfig:
    """One training run's recipe and budget. The defaults are archbench's recipe; `for_recipe` gives
    another named one (bench/experiments/recipes.py), and every row names the recipe it ran."""

    lr: float = 1e-3
    weight_decay: float = 0.1  # on the parameters `decay` names, see recipes.param_groups
    betas: tuple[float, float] = (0.9, 0.999)  # torch's AdamW defaults, as Zoology uses
    batch_size: int = 64
    max_examples: int = 100_000  # training budget in examples (steps = max_examples // batch_size)
    n_train: int = 100_000  # fixed training set (Zoology: 100k); epochs = max_examples / n_train
    warmup_frac: float = 0.1  # linear warm-up over this fraction of the steps
    min_lr_frac: float = 0.1  # cosine decay from lr down to min_lr_frac * lr at the last step
    eval_every: int = 5_000  # examples between evaluations on the held-out subset
    n_eval: int = 256  # size of that subset (the first rows of the held-out set)
    target_accuracy: float = 0.99  # stop once the subset accuracy reaches this; > 1 never stops
    n_test: int = 1000  # held-out rows per test length
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    seed: int = 0
    # torch.compile the training loss (forward and, through AOTAutograd, backward): the chunked
    # recurrences are hundreds of small element-wise ops per layer, which inductor fuses. Same recipe,
    # same data order; the figures differ from eager's by float rounding only. Evaluation stays eager.
    # Where compiling fails (no C++ compiler for inductor) the loop trains eager; the row's backend says so.
    compile: bool = False
    recipe: str = "archbench"  # the named recipe these fields started from (recipes.RECIPES)
    schedule: str = "warmup_cosine"  # or "cosine_epochs" (recipes.lr_at)
    decay: str = "matrices"  # which parameters weight decay pulls to zero: "matrices" or "all"
    tie_head: bool = False  # the output head shares the token embedding's matrix
    init: str = "archbench"  # "archbench" (each mixer's own) or "zoology" (recipes.zoology_init)
    shuffle: bool = True  # reshuffle the training set every epoch (Zoology: a fixed order)
    embed_dropout: float = 0.0
    adam_eps: float = 1e-8

    def __post_init__(self):
        # JSON has no tuples: accept the list a round trip through `json` gives back.
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for name in ("batch_size", "max_examples", "n_train", "eval_every", "n_eval", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1:
            raise ValueError("TrainConfig: need 0 <= warmup_frac < 1 and 0 <= min_lr_frac <= 1")
        if not 0 <= self.embed_dropout < 1 or not self.adam_eps > 0:
            raise ValueError("TrainConfig: need 0 <= embed_dropout < 1 and adam_eps > 0")
        for name, choices in (("recipe", tuple(RECIPES)), ("schedule", SCHEDULES), ("decay", DECAY),
                              ("init", INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown TrainConfig.{name} {getattr(self, name)!r}; choose from: "
                                 f"{', '.join(choices)}")

    @classmethod
    def for_recipe(cls, recipe: str, **fields: Any) -> TrainConfig:
        """The named recipe's config, `fields` on top. Zoology evaluates on its whole held-out set once
        per epoch, so its evaluation follows the training set unless `fields` say otherwise."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose from: {', '.join(RECIPES)}")
        base = dict(RECIPES[recipe], recipe=recipe)
        if recipe == "zoology":
            n_train = fields.get("n_train", cls.n_train)
            base.update(eval_every=n_train, n_eval=fields.get("n_test", cls.n_test))
        return cls(**{**base, **fields})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)

    @property
    def total_steps(self) -> int:
        return max(1, self.max_examples // self.batch_size)


def make_test_set(task: Task, n: int, seed: int, exclude: set[bytes] | None = None,
                  max_rounds: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """`n` held-out rows of `task` from seed stream (seed, 1, L), none of whose inputs is in `exclude`.

    The stream depends on the length L alone, so the test set at a length is the same whichever
    other lengths a run also tests. Rows that repeat a training row are dropped and replaced by
    fresh draws; a task with too few distinct rows to fill the set raises instead of looping.
    """
    rng = np.random.default_rng([seed, 1, task.seq_len])
    kept_x, kept_y, have = [], [], 0
    for _ in range(max_rounds):
        x, y = task.make(n - have, rng)
        if exclude:
            keep = np.fromiter((row.tobytes() not in exclude for row in x), bool, len(x))
            x, y = x[keep], y[keep]
        kept_x.append(x)
        kept_y.append(y)
        have += len(x)
        if have == n:
            return np.concatenate(kept_x), np.concatenate(kept_y)
    raise ValueError(f"{task!r}: could not draw {n} test rows unseen in training in {max_rounds} rounds; "
                     f"the task has too few distinct rows for n_train + n_test")


def make_datasets(task: Task, cfg: TrainConfig) -> tuple[np.ndarray, ...]:
    """`(train_x, train_y, test_x, test_y)`: the fixed training set from seed stream (seed, 0), and
    `cfg.n_test` held-out rows at the training length with no training row among them."""
    train_x, train_y = task.make(cfg.n_train, np.random.default_rng([cfg.seed, 0]))
    seen = {row.tobytes() for row in train_x}
    return (train_x, train_y, *make_test_set(task, cfg.n_test, cfg.seed, seen))


def _autocast(device: torch.device, dtype: torch.dtype):
    """Low-precision runs keep float32 master weights and autocast the forward (AdamW state in bf16
    loses small updates); float32/float64 runs cast the model instead and need no autocast."""
    enabled = dtype in (torch.bfloat16, torch.float16)
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def scored_loss(model: LM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions (y != IGNORE) only: the head runs on M rows, not B*T."""
    mask = y != IGNORE  # (B, T)
    h = model.hidden(x)[mask]  # (M, D)
    return F.cross_entropy(model.head(h).float(), y[mask])


class TrainLoss:
    """`scored_loss` on one model, compiled when asked; `note` is what the row's backend gets appended.

    Compiling happens at the first call; a failure there (no C++ compiler for inductor) falls back to
    eager for the rest of the run, noted as "+train eager (compile failed: ...)".
    """

    def __init__(self, model: LM, compile: bool):
        self.eager = functools.partial(scored_loss, model)
        self.fn, self.note = self.eager, ""
        if compile and (error := compiler_error()) is not None:
            self.note = f"+train eager (compile failed: {error})"
        elif compile:
            torch._dynamo.reset()  # one compiled entry per cell: a sweep would hit Dynamo's cache limit
            self.fn, self.note = torch.compile(self.eager, dynamic=False), "+train compiled"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        try:
            return self.fn(x, y)
        except CANNOT_COMPILE as exc:
            if self.fn is self.eager:
                raise
            root = root_cause(exc)
            if not isinstance(root, CANNOT_COMPILE):
                raise root from exc
            self.fn, self.note = self.eager, f"+train eager (compile failed: {type(root).__name__})"
            return self.eager(x, y)


@torch.inference_mode()
def score(model: LM, inputs: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype,
          tokens_per_batch: int = 1 << 16) -> torch.Tensor:
    """(N, L) bool on the inputs' device: True where a scored position's argmax equals its target."""
    model.eval()
    n, length = inputs.shape
    batch = max(1, tokens_per_batch // length)  # bounded memory at long test lengths
    correct = torch.zeros(n, length, dtype=torch.bool, device=inputs.device)  # (N, L)
    with _autocast(inputs.device, dtype):
        for i in range(0, n, batch):
            x, y = inputs[i:i + batch], targets[i:i + batch]
            mask = y != IGNORE  # (b, L)
            pred = model.head(model.hidden(x)[mask]).argmax(-1)  # (M,)
            correct[i:i + batch][mask] = pred == y[mask]
    model.train()
    return correct


def accuracy(correct: np.ndarray, mask: np.ndarray) -> float | None:
    """Exact-match accuracy over the positions in `mask` (None when it selects none)."""
    n = int(mask.sum())
    return float(correct[mask].sum()) / n if n else None


def _rounded(values: list[float | None]) -> list[float | None]:
    """4 significant digits, None for a non-finite value (rows are strict JSON)."""
    return [float(f"{v:.4g}") if v is not None and math.isfinite(v) else None for v in values]


def train_and_evaluate(model_spec: ModelSpec, task: Task, train_cfg: TrainConfig | None = None,
                       test_lens: tuple[int, ...] = (), device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Train `LM(model_spec, task.vocab_size)` on `task`; return the figures of a retrieval result
    (bench/experiments/retrieval.py's `RetrievalResult` fields).

    Besides the accuracies they carry `curve`: at every evaluation the examples seen, the mean training
    loss since the last one, the held-out-subset accuracy, and per layer the RMS of the mixer's output
    and the share of its energy in one constant vector (bench/experiments/diagnostics.py) — what the
    report classifies a cell by (learned, still rising, stuck on the answer-prior plateau).

    Training draws from torch's global RNG (dropout's masks), so it runs under a forked RNG seeded by
    the cell's seed: the same cell gives the same row whatever ran before it in the process, and the
    caller's RNG is left as it was.
    """
    cfg = train_cfg or TrainConfig()
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device).index or 0] if cuda else []):
        torch.manual_seed(cfg.seed + 1)  # a stream apart from the init's (seed) and the data's
        return _train_and_evaluate(model_spec, task, cfg, test_lens, device, dtype, progress)


def _train_and_evaluate(model_spec: ModelSpec, task: Task, cfg: TrainConfig, test_lens: tuple[int, ...],
                        device: str | torch.device, dtype: torch.dtype,
                        progress: Progress | None) -> dict[str, Any]:
    device = torch.device(device)
    if dtype == torch.float16:
        raise ValueError("float16 training needs loss scaling, which this loop does not do; use bfloat16")
    model_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32

    train_x, train_y, test_x, test_y = make_datasets(task, cfg)
    slices = task.slices(test_x, test_y)

    def to_dev(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    train_x_t, train_y_t = to_dev(train_x), to_dev(train_y)
    test_x_t, test_y_t = to_dev(test_x), to_dev(test_y)
    eval_x, eval_y = test_x_t[:cfg.n_eval], test_y_t[:cfg.n_eval]
    eval_scored = int((eval_y != IGNORE).sum())

    # -- model and optimiser; init on CPU under a forked RNG, so every device starts from one model ----
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LM(model_spec, task.vocab_size, tie_head=cfg.tie_head, embed_dropout=cfg.embed_dropout)
        if cfg.init == "zoology":
            zoology_init(model, model_spec.depth)
    model.to(device=device, dtype=model_dtype).train()
    params = sum(p.numel() for p in model.parameters())  # a tied matrix counts once
    # fused AdamW: one kernel per step instead of a Python loop over tensors (CPU and CUDA alike).
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.decay), lr=cfg.lr, betas=cfg.betas,
                            eps=cfg.adam_eps, fused=True)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    train_loss = TrainLoss(model, cfg.compile)

    # -- training ---------------------------------------------------------------------------------------
    bs = min(cfg.batch_size, cfg.n_train)
    total = cfg.total_steps
    eval_steps = max(1, cfg.eval_every // cfg.batch_size)
    report_steps = max(1, total // 100)  # the progress callback runs ~100 times, not every step
    def order() -> torch.Tensor:  # one epoch's order of the training rows
        if not cfg.shuffle:
            return torch.arange(cfg.n_train, device=device)
        return torch.randperm(cfg.n_train, generator=shuffle).to(device)

    perm, pos = order(), 0
    loss_sum = torch.zeros((), device=device)
    window, info = 0, "starting"
    mixers = list(model.mixers)
    curve: dict[str, list] = {"examples": [], "loss": [], "accuracy": [], "layer_rms": [], "const_share": []}
    final_loss, stopped_early, step = float("nan"), False, 0
    train_seconds, t_mark = 0.0, time.perf_counter()
    while step < total:
        if pos + bs > cfg.n_train:  # new epoch; the partial last batch is dropped, shapes stay fixed
            perm, pos = order(), 0
        idx = perm[pos:pos + bs]
        pos += bs
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with _autocast(device, dtype):
            loss = train_loss(train_x_t[idx], train_y_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
        opt.step()
        loss_sum += loss.detach()
        window += 1
        step += 1

        if step % eval_steps == 0 or step == total:
            final_loss = float(loss_sum) / window  # mean over the window: steadier than the last step
            train_seconds += time.perf_counter() - t_mark  # float() above synchronised the device
            with watch(mixers) as stats:
                sub_acc = float(score(model, eval_x, eval_y, dtype).sum()) / max(1, eval_scored)
            curve["examples"].append(step * bs)
            curve["loss"].append(final_loss if math.isfinite(final_loss) else None)
            curve["accuracy"].append(sub_acc)
            curve["layer_rms"].append(_rounded(stats.rms()))
            curve["const_share"].append(_rounded(stats.const_share()))
            info = f"step {step}/{total} loss {final_loss:.3f} held-out acc {sub_acc:.3f}"
            loss_sum.zero_()
            window = 0
            t_mark = time.perf_counter()
            if sub_acc >= cfg.target_accuracy:
                stopped_early = step < total
                break
        if progress is not None and step % report_steps == 0:
            progress(step / total, info)

    # -- final evaluation on the full held-out sets ---------------------------------------------------------
    correct = score(model, test_x_t, test_y_t, dtype).cpu().numpy()  # (N, L)
    acc = accuracy(correct, test_y != IGNORE)
    by_len: dict[str, float | None] = {}
    for length in sorted(set(test_lens)):
        if length == task.seq_len:
            by_len[str(length)] = acc
            continue
        long_task = task.with_length(length)
        x, y = make_test_set(long_task, cfg.n_test, cfg.seed)  # other lengths cannot repeat a training row
        by_len[str(length)] = accuracy(score(model, to_dev(x), to_dev(y), dtype).cpu().numpy(), y != IGNORE)
    if progress is not None:
        progress(1.0, f"done: {info}; accuracy {acc:.3f}" if acc is not None else f"done: {info}")

    return {
        "backend": model.backbone.last_backend + train_loss.note,
        "params": params,
        "state_bytes": model.state_bytes(1, task.seq_len),
        "steps": step,
        "examples_seen": step * bs,
        "train_seconds": train_seconds,
        "accuracy": acc,
        "accuracy_by_len": by_len,
        "test_len": max((*test_lens, task.seq_len)),
        "accuracy_by_slice": {name: accuracy(correct, mask) for name, mask in slices.items()},
        "final_loss": final_loss if math.isfinite(final_loss) else None,  # rows are strict JSON: no NaN
        "stopped_early": stopped_early,
        "curve": curve,
        "resolved_configs": resolved_configs(model.backbone),
    }
