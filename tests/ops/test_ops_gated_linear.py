"""The chunked diagonal-decay op against its token-by-token definition: every kind of decay, values and
gradients (inputs, decay and initial state), at lengths around the chunk; and strong decays in float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference

from archbench.archs.ops.gated_linear import (
    gated_linear_chunked,
    gated_linear_sequential,
    gated_linear_update,
)

Q = 16  # two sub-chunks of the per-channel path per chunk, so both of its parts run
B, H, K, V = 2, 3, 5, 4
KINDS = ("none", "per_head", "per_token", "per_channel")


def _log_decay(kind: str, T: int, g: torch.Generator, strength: float = 1.0) -> torch.Tensor | None:
    shape = {"none": None, "per_head": (H,), "per_token": (B, T, H), "per_channel": (B, T, H, K)}[kind]
    return None if shape is None else -strength * torch.rand(shape, dtype=torch.float64, generator=g)


def _inputs(kind: str, T: int, with_state: bool) -> tuple[list[torch.Tensor], bool]:
    """q, k, v, [log decay], [initial state], all requiring grad; and whether the decay is among them."""
    g = torch.Generator().manual_seed(T)
    f64 = {"dtype": torch.float64, "generator": g}
    tensors = [torch.randn(B, T, H, K, **f64), torch.randn(B, T, H, K, **f64), torch.randn(B, T, H, V, **f64)]
    log_decay = _log_decay(kind, T, g)
    if log_decay is not None:
        tensors.append(log_decay)
    if with_state:
        tensors.append(torch.randn(B, H, K, V, **f64))
    return [t.requires_grad_() for t in tensors], log_decay is not None


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("T", [1, Q - 1, Q + 1, 2 * Q + 3, 3 * Q])  # 3Q: a fixed decay's shared chunk decays
@pytest.mark.parametrize("kind", KINDS)
def test_chunked_matches_sequential(kind: str, T: int, with_state: bool, monkeypatch) -> None:
    if T == 3 * Q:  # the chunks in groups of one, so the state passes between groups too
        monkeypatch.setattr("archbench.archs.ops.gated_linear.cache_elements", lambda dtype: 1)
    inputs, has_decay = _inputs(kind, T, with_state)

    def call(op, **kw):
        def run(q, k, v, *rest):
            log_decay = rest[0] if has_decay else None
            state = rest[-1] if with_state else None
            return op(q, k, v, log_decay, 0.6, initial_state=state, **kw)
        return run

    assert_op_matches_reference(call(gated_linear_chunked, chunk_size=Q), call(gated_linear_sequential),
                                inputs, rtol=1e-10, atol=1e-10)


def test_update_is_one_step_of_the_recurrence() -> None:
    """S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ and o_t = S_tᵀ (scale q_t), written out for one head."""
    g = torch.Generator().manual_seed(0)
    q, k, a = (torch.randn(1, 1, K, dtype=torch.float64, generator=g) for _ in range(3))
    v = torch.randn(1, 1, V, dtype=torch.float64, generator=g)
    S = torch.randn(1, 1, K, V, dtype=torch.float64, generator=g)
    log_decay = -a.abs()
    o, S_new = gated_linear_update(S, q, k, v, log_decay, 0.5)
    want = torch.diag(log_decay[0, 0].exp()) @ S[0, 0] + torch.outer(k[0, 0], v[0, 0])
    torch.testing.assert_close(S_new[0, 0], want)
    torch.testing.assert_close(o[0, 0], want.T @ (0.5 * q[0, 0]))


@pytest.mark.parametrize("kind", ["per_token", "per_channel"])
def test_strong_decays_stay_finite_in_float32(kind: str) -> None:
    """GLA-sized gates (log α down to -25 per token, -1600 over a chunk of 64): float32 values and
    gradients are finite and the values match the float64 definition."""
    T = 2 * 64 + 3
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, T, H, K, dtype=torch.float64, generator=g) for _ in range(2))
    v = torch.randn(B, T, H, V, dtype=torch.float64, generator=g)
    log_decay = F.logsigmoid(-400 * torch.rand(_log_decay(kind, T, g).shape, dtype=torch.float64,
                                               generator=g)) / 16
    assert log_decay.min() < -20
    want, S_want = gated_linear_sequential(q, k, v, log_decay, 0.5)
    args = [t.float().requires_grad_() for t in (q, k, v, log_decay)]
    o, S = gated_linear_chunked(*args, 0.5, chunk_size=64)
    torch.testing.assert_close(o.double(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    torch.testing.assert_close(S.double(), S_want, rtol=1e-4, atol=1e-4 * float(S_want.abs().max()))
    (o.square().sum() + S.square().sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in args)
