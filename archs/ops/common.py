"""Plumbing every recurrent mixer needs, written once: state dtype, optional fused kernels, Δ / A init.

- `state_dtype`: the dtype a scan and its carried state run in.
- `Kernel`: one optional fused kernel (flash-linear-attention, mamba-ssm, causal-conv1d): where it is
  imported from (lazily, through `archs/kernels.py`), why it cannot run here, and, for a kernel that
  may refuse its backward at run time (fla on Hopper with Triton < 3.7.1, fla #640), a tiny probe.
- `pick_backend`: the backend a parallel call really runs, after the checks that can only happen at
  run time (float64 input, a refused backward), with the label `Mixer.last_backend` shows.
- `dt_bias_init`, `s4d_real_a_log`, `a_log_uniform`: Mamba's initialisers of the step size Δ and of
  the (negative) state matrix A = -exp(A_log), shared by Mamba and Mamba-2.

Glossary:
    Δ (dt)      step size of the discretised SSM, softplus(raw + dt_bias) > 0
    A, A_log    state matrix (diagonal or scalar per head), stored as A_log so that A = -exp(A_log) < 0
    probe       (fn, device) -> None: a tiny forward+backward of kernel `fn` on `device`; raises on refusal
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from archbench.archs.kernels import backward_refusal, optional_kernel

if TYPE_CHECKING:
    from archbench.archs.base import Mixer


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a scan and its state for activations of `dtype`: float64 stays float64 (exactness
    checks), anything else runs in float32. The state sums unboundedly many decayed inputs; in
    bf16 / fp16 the rounding of every step would compound (mamba-ssm and fla accumulate in float32 too)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class Kernel:
    """An optional fused kernel `from module import attr`, shipped by `package` (for messages)."""

    module: str
    attr: str
    package: str
    probe: Callable[[Callable, str], None] | None = None  # set where the backward may be refused

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


def kernel_unavailable(kernels: Mapping[str, Kernel], backend: str, device: torch.device | str) -> str | None:
    """`Mixer.backend_unavailable` for a mixer whose non-reference backends are the fused `kernels`."""
    return kernels[backend].unavailable(device) if backend in kernels else None


def pick_backend(mixer: Mixer, x: torch.Tensor, kernels: Mapping[str, Kernel]) -> str:
    """The backend a parallel call on `x` runs; sets `mixer.last_backend` to say which, and why.

    A fused kernel falls back to the mixer's reference backend where it cannot serve this call:
    float64 input (the kernels here are built for float32 / bf16 / fp16 only), or a call that will be
    differentiated on a device where the kernel refuses its backward — which it does only inside
    `.backward()`, too late to switch, hence the probe before the forward."""
    backend = mixer.resolve_backend(x.device)
    mixer.last_backend = backend
    kernel, fallback = kernels.get(backend), mixer.reference_backend
    if kernel is None:
        return backend
    if x.dtype == torch.float64:
        mixer.last_backend = f"{fallback} ({backend} has no float64 kernels)"
        return fallback
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in mixer.parameters()))
    refusal = kernel.backward_refusal(x.device) if needs_grad else None
    if refusal:
        mixer.last_backend = f"{fallback} ({backend} backward refused: {refusal})"
        return fallback
    return backend


# -- initialisers ------------------------------------------------------------------------------------
def dt_bias_init(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """Mamba's Δ init (Gu & Dao 2023, §3.6 and its code): Δ drawn log-uniform in [dt_min, dt_max]
    (floored at 1e-4), returned as softplus⁻¹(Δ), so that softplus(bias) starts at Δ. (n,) float32."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(n) * (hi - lo) + lo).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))  # softplus⁻¹(Δ) = Δ + log(1 - e^-Δ)


def s4d_real_a_log(channels: int, d_state: int) -> torch.Tensor:
    """S4D-real init (Gu et al. 2022): A = -(1, 2, ..., N) in every channel, as A_log (channels, N)."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)


def a_log_uniform(n: int, low: float = 1.0, high: float = 16.0) -> torch.Tensor:
    """Mamba-2's init of its scalar A per head: A = -exp(A_log) uniform in [-high, -low]. (n,)"""
    return torch.log(torch.empty(n).uniform_(low, high))
