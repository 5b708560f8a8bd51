"""archs/ops/short_conv.py: the gated short convolution's parallel form and its one-token step against the
rolling-buffer definition, and against the published layer's form (`nn.Conv1d` padded by k − 1, cut to T)."""

from __future__ import annotations

import pytest
import torch
from helpers.op_parity import STATES, assert_op_matches_reference

from archbench.archs.ops.short_conv import short_conv_parallel, short_conv_sequential, short_conv_step

B, D = 2, 5
WIDTHS = [3, 4]  # LFM2's and Zoology's width; fla's and Mamba's


def _inputs(T: int, k: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(x, weight, b, c, bias) and an initial state (B, k − 1, D), float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    x, b, c = (torch.randn(B, T, D, **f64) for _ in range(3))
    return [x, torch.randn(D, k, **f64), b, c, torch.randn(D, **f64)], torch.randn(B, k - 1, D, **f64)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("T", [1, 2, 3, 4, 37])  # around the state length k − 1; and long
@pytest.mark.parametrize("k", WIDTHS)
def test_parallel_matches_sequential(k: int, T: int, state: str) -> None:
    inputs, state0 = _inputs(T, k, seed=T)
    args = [t.requires_grad_() for t in (*inputs, *([state0] if state == "random_state" else []))]

    def call(op):
        return lambda x, w, b, c, bias, *s: op(x, w, b, c, bias, s[0] if s else None)

    assert_op_matches_reference(call(short_conv_parallel), call(short_conv_sequential), args,
                                rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("gates", ["none", "after_only"])  # a plain causal conv; BaseConv (no input gate)
def test_without_gates_or_bias(gates: str) -> None:
    (x, w, b, c, _), state0 = _inputs(11, 3)
    b, c = None, (None if gates == "none" else c)
    args = [t.requires_grad_() for t in (x, w, state0)]

    def call(op):
        return lambda x, w, s: op(x, w, b, c, None, s)

    assert_op_matches_reference(call(short_conv_parallel), call(short_conv_sequential), args,
                                rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", WIDTHS)
def test_matches_the_published_layer_form(k: int) -> None:
    """From no state, y = C ⊙ Conv1d(B ⊙ x) with padding k − 1 cut to the first T outputs (LFM2's
    `Lfm2ShortConv` and Zoology's `ShortConvolution`), the weight as nn.Conv1d holds it (D, 1, k); the
    state is the last k − 1 gated inputs."""
    T = 9
    (x, w, b, c, bias), _ = _inputs(T, k)
    conv = torch.nn.Conv1d(D, D, k, groups=D, padding=k - 1, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(w.unsqueeze(1))
        conv.bias.copy_(bias)
    want = c * conv((b * x).transpose(1, 2))[..., :T].transpose(1, 2)
    for op in (short_conv_parallel, short_conv_sequential):
        y, state = op(x, conv.weight[:, 0], b, c, conv.bias)
        torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state, (b * x)[:, T - (k - 1):], rtol=0, atol=0)


def test_tap_zero_multiplies_the_oldest_input() -> None:
    """An impulse at t0 comes out as the taps in reverse: y_{t0 + m} = w_{k-1-m} (no gates, no bias)."""
    k, T, t0 = 4, 10, 3
    w = torch.arange(1.0, 1 + k, dtype=torch.float64).expand(D, k)
    x = torch.zeros(B, T, D, dtype=torch.float64)
    x[:, t0] = 1
    for op in (short_conv_parallel, short_conv_sequential):
        y, _ = op(x, w)
        torch.testing.assert_close(y[0, t0:t0 + k, 0], w[0].flip(0), rtol=0, atol=0)
        assert y[:, :t0].abs().max() == 0 and y[:, t0 + k:].abs().max() == 0


def test_step_is_one_token_of_the_sequence() -> None:
    (x, w, b, c, bias), state0 = _inputs(1, 3)
    y, state = short_conv_step(x[:, 0], w, b[:, 0], c[:, 0], bias, state0)
    y_seq, state_seq = short_conv_sequential(x, w, b, c, bias, state0)
    torch.testing.assert_close(y, y_seq[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(state, state_seq, rtol=0, atol=0)
    torch.testing.assert_close(state, torch.cat([state0[:, 1:], (b * x)[:, :1]], 1), rtol=0, atol=0)


@pytest.mark.parametrize("split", [1, 5])  # a prefix shorter than the state, and longer
def test_prefill_then_steps_match_one_pass(split: int) -> None:
    T, k = 9, 4
    (x, w, b, c, bias), state0 = _inputs(T, k)
    y_all, s_all = short_conv_parallel(x, w, b, c, bias, state0)
    y, state = short_conv_parallel(x[:, :split], w, b[:, :split], c[:, :split], bias, state0)
    ys = [y]
    for t in range(split, T):
        y_t, state = short_conv_step(x[:, t], w, b[:, t], c[:, t], bias, state)
        ys.append(y_t[:, None])
    torch.testing.assert_close(torch.cat(ys, 1), y_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, s_all, rtol=0, atol=0)


def test_width_one_has_no_state() -> None:
    (x, w, b, c, bias), _ = _inputs(5, 1)
    y, state = short_conv_parallel(x, w, b, c, bias)
    torch.testing.assert_close(y, c * (w[:, 0] * b * x + bias), rtol=1e-12, atol=1e-12)
    assert state.shape == (B, 0, D)
