"""Optional fused kernels: import them once, say why one is missing, and check its backward before training.

Fast paths come from optional CUDA libraries (flash-linear-attention `fla`, `mamba-ssm`, `causal-conv1d`).
Mixers ask for a kernel by module and attribute and get either the function or the reason it is
unavailable, which `Mixer.backend_unavailable` reports; nothing here is imported at archbench import time.
The mixers reach these two functions through `archs/ops/common.py` (`Kernel`, `pick_backend`).

A kernel can also import and run forward yet refuse its backward: fla raises inside `.backward()` on Hopper
with Triton < 3.7.1 (fla issue #640). By then it is too late to switch to the reference path, so a mixer
that is about to train on a kernel first runs a tiny forward+backward `probe`, once per (kernel, device).

Glossary:
    module, attr    where the kernel lives: `from module import attr`
    name            a label for one kernel's backward, the cache key together with `device`
    probe           a zero-argument callable running a tiny forward+backward of the kernel on `device`
    reason          a short message saying why a kernel cannot be used (None when it can)
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

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
