"""Shared by the op tests: a fast op and its sequential reference agree, in values and gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch


def assert_op_matches_reference(op: Callable, reference: Callable, inputs: list[torch.Tensor],
                                rtol: float, atol: float) -> None:
    """op(*inputs) and reference(*inputs) return the same (output, final state), and the gradients of
    one random weighted sum of both outputs agree for every input."""
    got, want = op(*inputs), reference(*inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in got]
    grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(got, weights, strict=True)), inputs)
    grads_ref = torch.autograd.grad(sum((t * w).sum() for t, w in zip(want, weights, strict=True)), inputs)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
