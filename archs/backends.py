"""Backends: the optional fused kernels a mixer may run and the choice of the path one call runs — the one
place archbench decides which code computes a mixer (the Mixer contract, archs/base.py, lists a mixer's
`backends` and `kernels` and asks this module).

Fast paths come from optional CUDA libraries (flash-linear-attention `fla`, `mamba-ssm`, `causal-conv1d`,
`flash-attn`). A mixer names each kernel as a `Kernel` (module, attribute, package, the dtypes it is built
for, and for a kernel that may refuse its backward a tiny probe); `optional_kernel` imports it once and
says why it is missing, which `Mixer.backend_unavailable` reports; nothing here is imported at archbench
import time. `pick_backend` is the backend a parallel call really runs, after the checks that can only
happen at run time (the input's dtype, a shape the kernel does not take, a refused backward), with the
label `Mixer.last_backend` shows.

A kernel can import and run forward yet refuse its backward: fla raises inside `.backward()` on Hopper
with Triton < 3.7.1 (fla issue #640). By then it is too late to switch to the reference path, so a mixer
that is about to train on a kernel first runs a tiny forward+backward `probe`, once per (kernel, device).

Glossary:
    module, attr    where the kernel lives: `from module import attr`
    name            a label for one kernel's backward, the cache key together with `device`
    probe           (fn, device) -> None: a tiny forward+backward of kernel `fn` on `device`; raises
    reason          a short message saying why a kernel cannot be used (None when it can)
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from archbench.archs.base import Mixer

_REFUSALS: dict[tuple[str, str], str | None] = {}  # (name, device) -> why the backward fails, or None


@functools.cache
def optional_kernel(module: str, attr: str) -> tuple[Callable | None, str | None]:
    """`(fn, None)` with fn = `module.attr`, or `(None, reason)` when it cannot be imported. Cached."""
    try:
        return getattr(importlib.import_module(module), attr), None
    except Exception as exc:  # ImportError, or a CUDA / Triton build that fails to load (OSError, ...)
        return None, f"`from {module} import {attr}` failed: {type(exc).__name__}: {exc}"


def backward_refusal(name: str, device: str, probe: Callable[[], None]) -> str | None:
    """The first line of the error `probe` raises (a tiny forward+backward on `device`), else None.

    The probe runs once per (name, device); later calls return the cached answer.
    """
    key = (name, device)
    if key not in _REFUSALS:
        try:
            with torch.enable_grad():  # the probe must reach the backward even under no_grad
                probe()
            _REFUSALS[key] = None
        except Exception as exc:  # any failure means training through this kernel would fail too
            text = str(exc).strip()
            _REFUSALS[key] = (text.splitlines()[0] if text else type(exc).__name__)[:120]
    return _REFUSALS[key]


def clear_caches() -> None:
    """Forget every import and probe result (for tests that install or remove a kernel module)."""
    optional_kernel.cache_clear()
    _REFUSALS.clear()


# -- optional fused kernels ----------------------------------------------------------------------------
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what fla's and mamba-ssm's kernels take


@dataclass(frozen=True)
class Kernel:
    """An optional fused kernel `from module import attr`, shipped by `package` (for messages)."""

    module: str
    attr: str
    package: str
    probe: Callable[[Callable, str], None] | None = None  # set where the backward may be refused
    dtypes: tuple[torch.dtype, ...] = _TRITON_DTYPES  # the input dtypes it is built for

    def load(self) -> Callable | None:
        """The kernel function, or None when it cannot be imported (cached by `optional_kernel`)."""
        return optional_kernel(self.module, self.attr)[0]

    def __call__(self, *args, **kwargs):
        fn, reason = optional_kernel(self.module, self.attr)
        if fn is None:
            raise RuntimeError(reason)
        return fn(*args, **kwargs)

    def unavailable(self, device: torch.device | str) -> str | None:
        """Why the kernel cannot run on `device` here, or None. Every kernel here is CUDA-only."""
        if torch.device(device).type != "cuda":
            return f"{self.package} needs a CUDA device"
        return optional_kernel(self.module, self.attr)[1]

    def backward_refusal(self, device: torch.device | str) -> str | None:
        """Why the kernel's backward fails on `device` (probed once per device), or None."""
        if self.probe is None:
            return None
        device = str(device)
        return backward_refusal(f"{self.module}.{self.attr}", device, lambda: self.probe(self.load(), device))


def pick_backend(mixer: Mixer, x: torch.Tensor, unsupported: str | None = None) -> str:
    """The backend a parallel call on `x` runs; sets `mixer.last_backend` to say which, and why.

    A fused kernel of `mixer.kernels` falls back to the mixer's reference backend where it cannot serve
    this call: an input dtype it is not built for (fla's and mamba-ssm's have no float64, flash-attn
    takes fp16 / bf16 only), a call the mixer says it cannot take (`unsupported`, the reason, e.g. a
    head width the kernel does not support), or a call that will be differentiated on a device where
    the kernel refuses its backward — which it does only inside `.backward()`, too late to switch,
    hence the probe before the forward."""
    backend = mixer.resolve_backend(x.device)
    mixer.last_backend = backend
    kernel, fallback = mixer.kernels.get(backend), mixer.reference_backend
    if kernel is None:
        return backend
    if x.dtype not in kernel.dtypes:
        mixer.last_backend = f"{fallback} ({backend} has no {str(x.dtype).removeprefix('torch.')} kernels)"
        return fallback
    if unsupported:
        mixer.last_backend = f"{fallback} ({unsupported})"
        return fallback
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in mixer.parameters()))
    refusal = kernel.backward_refusal(x.device) if needs_grad else None
    if refusal:
        mixer.last_backend = f"{fallback} ({backend} backward refused: {refusal})"
        return fallback
    return backend


def probe_leaves(device: str, n: int = 3, shape: tuple[int, ...] = (1, 16, 1, 16),
                 sample: Callable[..., torch.Tensor] = torch.randn) -> list[torch.Tensor]:
    """`n` tiny random tensors that require grad, (B, T, H, K) = (1, 16, 1, 16) by default: the inputs of
    a backward probe."""
    return [sample(*shape, device=device).requires_grad_() for _ in range(n)]


# -- initialisers ------------------------------------------------------------------------------------
