"""The mixer contract (the Block, Backbone and LM a mixer is measured in live in archs/model.py).

A *mixer* maps (B, T, D) -> (B, T, D) causally and offers two modes that must agree:
  forward(x)                parallel mode (training, prefill)
  step(x_t, state)          one token (decode), x_t of shape (B, D)
plus `init_state`, `prefill`, `state_bytes` (measured from the real state tensors, never written by
hand) and `flops` (analytic forward FLOPs of one sequence). Kernel choice is a run option, not part
of the config: `set_backend("auto" | name)`, and `last_backend` says which path actually ran.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

State = Any  # a dict / list / tuple of tensors (nested), owned by the mixer that made it


def tensor_bytes(obj: Any) -> int:
    """Bytes held by every tensor inside a nested dict / list / tuple (meta tensors count too)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class Mixer(nn.Module, abc.ABC):
    """Base class of every sequence mixer. Subclasses set the class flags and the `Config`."""

    name: ClassVar[str] = "?"  # set by @register
    Config: ClassVar[type]  # frozen dataclass; its defaults describe a tiny model
    complexity: ClassVar[str]  # "quadratic" | "linear": how forward time grows with T
    supports_step: ClassVar[bool] = True
    # Backends in order of preference; the last one is the pure-PyTorch reference that runs anywhere.
    backends: ClassVar[tuple[str, ...]] = ("reference",)
    # The optional fused kernels behind some of those backends: backend -> `archs.backends.Kernel`
    # (anything with `unavailable(device) -> reason | None`). The other backends run anywhere.
    kernels: ClassVar[Mapping[str, Any]] = {}
    # The chunk of the mixer's chunked parallel path, or None. An implementation detail, not
    # architecture (so not a Config field); conformance tests lengths 1, Q-1, Q+1, 2Q+3 around it.
    chunk_size: ClassVar[int | None] = None
    # Extra Config overrides the conformance checks also run, e.g. ({"d_state": 8, "head_dim": 8},).
    conformance_configs: ClassVar[tuple[dict, ...]] = ()

    def __init__(self, d_model: int, cfg: Any):
        super().__init__()
        self.d_model = d_model
        self.cfg = cfg
        self.backend = "auto"
        self.last_backend: str | None = None

    # -- backends --------------------------------------------------------------------------------
    @classmethod
    def backend_unavailable(cls, backend: str, device: torch.device | str) -> str | None:
        """Why `backend` cannot run on `device` here, or None if it can: what its kernel (if any) says."""
        kernel = cls.kernels.get(backend)
        return None if kernel is None else kernel.unavailable(device)

    @classmethod
    def available_backends(cls, device: torch.device | str = "cpu") -> list[str]:
        return [b for b in cls.backends if cls.backend_unavailable(b, device) is None]

    @property
    def reference_backend(self) -> str:
        return self.backends[-1]

    def set_backend(self, backend: str) -> Mixer:
        if backend not in ("auto", "reference", *self.backends):
            raise ValueError(f"unknown backend {backend!r} for {self.name}; choose from: auto, "
                             f"reference, {', '.join(self.backends)}")
        self.backend = self.reference_backend if backend == "reference" else backend
        return self

    def resolve_backend(self, device: torch.device | str) -> str:
        """The backend this call will use: the chosen one, or the first available for 'auto'."""
        if self.backend == "auto":
            return self.available_backends(device)[0]
        reason = self.backend_unavailable(self.backend, device)
        if reason:
            raise RuntimeError(f"backend {self.backend!r} of {self.name} is unavailable: {reason}")
        return self.backend

    # -- the two modes ----------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parallel mode: (B, T, D) -> (B, T, D), causal."""

    @abc.abstractmethod
    def init_state(self, batch: int, max_len: int, device=None, dtype=None) -> State:
        """Empty recurrent state, or a KV cache preallocated for `max_len` tokens."""

    @abc.abstractmethod
    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Recurrent mode: one token (B, D) -> (B, D). May update `state` in place."""

    def prefill(self, x: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, State]:
        """Run a prompt (B, T, D), returning its outputs and the state after it.

        This default steps token by token; mixers override it with their parallel path.
        """
        batch, seq_len, _ = x.shape
        state = self.init_state(batch, max_len or seq_len, device=x.device, dtype=x.dtype)
        ys = []
        for t in range(seq_len):
            y_t, state = self.step(x[:, t], state)
            ys.append(y_t)
        return torch.stack(ys, 1), state

    # -- costs --------------------------------------------------------------------------------------
    def state_bytes(self, batch: int, seq_len: int) -> int:
        """Bytes of decode state after `seq_len` tokens, measured from the tensors `init_state` makes."""
        dtype = next(self.parameters()).dtype
        return tensor_bytes(self.init_state(batch, seq_len, device="meta", dtype=dtype))

    @abc.abstractmethod
    def flops(self, seq_len: int) -> int:
        """Analytic forward FLOPs (multiply-add = 2) for one sequence of `seq_len` tokens."""

    def param_dtype_device(self, device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
        """Defaults for state tensors: the parameters' device and dtype unless given."""
        p = next(self.parameters())
        return torch.device(device) if device is not None else p.device, dtype or p.dtype
