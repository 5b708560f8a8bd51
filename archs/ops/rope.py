"""Rotary position embedding (RoPE; Su et al. 2021, "RoFormer", arXiv 2104.09864, eq. 34), shared by
attention, swa, retnet (its Θ_n of eq. 5) and mamba3 (its data-dependent angles).

A rotation turns feature pairs of a vector by angles: pair j by pos · θ_j with θ_j = base^(-2j/d) for
positional RoPE, or by any angle (Mamba-3's cumulative θ_t). Written as a complex multiply, one pass
over x: the same rotation with real slices, products and a stack makes several passes and temporaries
on CPU, a linear-in-T cost that would dilute the O(n²) term the scaling sweeps measure.

Two pairings, as the reference implementations differ:
    interleaved   pair j = features (2j, 2j+1)          RoFormer, attention, swa, Mamba-3
    half          pair j = features (j, j + d/2)        GPT-NeoX / fla's RotaryEmbedding: retnet

Under torch.compile the rotation is real instead: (..., d/2, 2) holding (cos, sin). Inductor has no
complex dtype, so `polar` and `view_as_complex` would each fall back to an eager kernel and split the
compiled graph into many small kernels (retnet's and mamba3's compiled decode steps then gained nothing
over eager; results/METHODS.md, "Measurements behind code defaults"); with cos and sin the rotation
fuses into the kernels around it. Same values.

Glossary:
    d        rotated width (head_dim);  pos  token positions (T,);  base  the frequency base (10000)
    rotation unit complex numbers e^(i·angle), (..., d/2), broadcast against x's pairs; under
             torch.compile the same as real (..., d/2, 2): (cos, sin)
"""

from __future__ import annotations

import torch


def rope_rotation(pos: torch.Tensor, d: int, base: float, dtype: torch.dtype) -> torch.Tensor:
    """Unit complex numbers e^(i pos θ_j), θ_j = base^(-2j/d), shape (T, d/2), for positions pos (T,).

    In float32 at least (float64 for float64 inputs): in bfloat16 the positions themselves would round.
    """
    real = torch.promote_types(dtype, torch.float32)
    theta = base ** (-torch.arange(0, d, 2, device=pos.device, dtype=real) / d)
    return unit_rotation(pos.to(real)[:, None] * theta)


def unit_rotation(angle: torch.Tensor) -> torch.Tensor:
    """e^(i·angle), elementwise: the rotation by `angle` (any shape, real); (cos, sin) stacked last
    while torch.compile traces (see the module doc)."""
    if torch.compiler.is_compiling():
        return torch.stack([angle.cos(), angle.sin()], -1)  # (..., 2)
    return torch.polar(torch.ones_like(angle), angle)


def rope(x: torch.Tensor, rotation: torch.Tensor, interleaved: bool = True) -> torch.Tensor:
    """Rotate the feature pairs of x (..., d) by `rotation` (broadcast against (..., d/2)); see the module
    doc for the two pairings. Computed in the rotation's real dtype, returned in x's. `rotation` may also
    be real (..., d/2, 2) = (cos, sin), as `unit_rotation` makes it under torch.compile."""
    if not rotation.is_complex():
        return _rope_real(x, rotation, interleaved)
    real = rotation.real.dtype
    if interleaved:
        pairs = torch.view_as_complex(x.to(real).unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
    x1, x2 = x.to(real).chunk(2, -1)
    turned = torch.complex(x1, x2) * rotation
    return torch.cat([turned.real, turned.imag], -1).to(x.dtype)


def _rope_real(x: torch.Tensor, rotation: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """`rope` with rotation (..., d/2, 2) = (cos, sin): (a + ib)(c + is) in real arithmetic."""
    cos, sin = rotation.unbind(-1)  # (..., d/2) each
    xr = x.to(rotation.dtype)
    a, b = xr.unflatten(-1, (-1, 2)).unbind(-1) if interleaved else xr.chunk(2, -1)  # (..., d/2)
    re, im = a * cos - b * sin, a * sin + b * cos
    out = torch.stack([re, im], -1).flatten(-2) if interleaved else torch.cat([re, im], -1)
    return out.to(x.dtype)
