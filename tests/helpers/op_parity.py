"""Shared by the op tests (tests/ops/test_ops_*.py): a fast op and its sequential reference agree, in values
and gradients, at the lengths where chunked code goes wrong, from no initial state and from a random one.

Every op of archs/ops/ has the contract `op(*inputs, state0=None) -> (y, final_state)`, its chunked form
the same plus `chunk_size=`. `assert_chunked_matches_sequential` checks one (T, chunk, state) case;
test files parametrise it over `boundary_lengths(chunk)` (the lengths the conformance checks run the
mixers at: 1, Q-1, Q+1, 2Q+3) and `STATES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from archbench.bench.conformance import boundary_lengths  # T = 1, Q-1, Q+1, 2Q+3, as the mixers get

__all__ = ["STATES", "assert_chunked_matches_sequential", "assert_op_matches_reference",
           "boundary_lengths"]

STATES = ["no_state", "random_state"]  # parametrise over both: a zero state hides a dropped carry-in


def assert_op_matches_reference(op: Callable, reference: Callable, inputs: Sequence[torch.Tensor],
                                rtol: float, atol: float) -> None:
    """op(*inputs) and reference(*inputs) return the same (output, final state) — or (output,) for an op
    without a carried state — and the gradients of one random weighted sum of both results agree for
    every input."""
    got, want = op(*inputs), reference(*inputs)
    assert len(got) == len(want), f"the op returns {len(got)} results, its reference {len(want)}"
    for what, a, b in zip(("output", "final state")[:len(got)], got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, w=what: f"{w}: {m}")
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in got]
    grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(got, weights, strict=True)), inputs)
    grads_ref = torch.autograd.grad(sum((t * w).sum() for t, w in zip(want, weights, strict=True)), inputs)
    for i, (a, b) in enumerate(zip(grads, grads_ref, strict=True)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"grad of input {i}: {m}")


def assert_chunked_matches_sequential(chunked: Callable, sequential: Callable, inputs: Sequence[torch.Tensor],
                                      state0: torch.Tensor, chunk_size: int, with_state: bool,
                                      rtol: float = 1e-10, atol: float = 1e-10) -> None:
    """`chunked(*inputs, state0, chunk_size=chunk_size)` against `sequential(*inputs, state0)`: outputs,
    final states, and the gradients w.r.t. every input — the initial state included when `with_state`
    (else both run from None, i.e. zeros). Inputs in float64, so tolerances near rounding can be tight."""
    assert all(t.dtype == torch.float64 for t in (*inputs, state0)), "parity runs in float64"
    args = [t.detach().requires_grad_() for t in inputs]
    if with_state:
        args.append(state0.detach().requires_grad_())

    def with_none(fn: Callable, **kw) -> Callable:  # the op given state0=None explicitly
        return lambda *a: fn(*a, **kw) if with_state else fn(*a, None, **kw)

    assert_op_matches_reference(with_none(chunked, chunk_size=chunk_size), with_none(sequential), args,
                                rtol=rtol, atol=atol)
