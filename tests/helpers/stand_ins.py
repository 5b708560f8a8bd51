"""Shared by the fast-path tests: install a stand-in for an optional CUDA kernel, and a stand-in whose
backward refuses as fla's does on Hopper, so the kernel plumbing of every mixer runs on CPU.

`install_kernel(monkeypatch, arch, module, attr, fn)` makes `from module import attr` give `fn` (its
parent packages become empty modules) and lets `arch` believe its kernels can run on this device;
`RefusingBackward` is an identity whose backward raises `REFUSAL` like fla with Triton < 3.7.1 (#640).
Test files take the `fresh_kernel_caches` fixture (tests/conftest.py) so no stand-in outlives its test.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import pytest
import torch

from archbench.archs import backends, get

REFUSAL = "Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results (see #640)"


class RefusingBackward(torch.autograd.Function):
    """Identity whose backward raises like fla on Hopper with Triton < 3.7.1."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(REFUSAL + "\nPlease upgrade Triton")


def install_kernel(monkeypatch: pytest.MonkeyPatch, arch: str, module: str, attr: str, fn: Callable) -> None:
    """`from module import attr` gives `fn`, and `arch` believes its kernels can run here (no CUDA)."""
    fake = types.ModuleType(module)
    setattr(fake, attr, fn)
    for i in range(1, module.count(".") + 1):
        parent = module.rsplit(".", i)[0]
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, module, fake)
    monkeypatch.setattr(get(arch), "backend_unavailable", classmethod(lambda cls, b, d: None))
    backends.clear_caches()  # forget earlier imports and probes


def kernel_result(o, S, output_final_state: bool):
    """What an fla kernel returns: the output, and the final state only when asked for."""
    return o, (S if output_final_state else None)


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """fla's `chunk_gla`, computed by archbench's sequential gated-linear reference."""
    from archbench.archs.ops.gated_linear import gated_linear_sequential

    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return kernel_result(*gated_linear_sequential(q, k, v, g, scale, initial_state), output_final_state)
