"""The gated short convolution of LFM2 and Zoology's BaseConv: its definition, its parallel form, one token.

A causal depthwise convolution of width k between two elementwise gates, per channel:
    u_t = b_t ⊙ x_t,    y_t = c_t ⊙ (Σ_{s=0}^{k-1} w_s ⊙ u_{t-k+1+s} + bias)
Tap 0 multiplies the oldest input (the cross-correlation of `torch.nn.Conv1d`, whose (D, 1, k) weight
this takes as (D, k)). The state is the last k − 1 gated inputs u, oldest first (B, k − 1, D): with them
a continuation is exact, and before the first token they are zeros.

- LFM2 (Liquid AI, 2025; checked against transformers' `Lfm2ShortConv`, models/lfm2/modular_lfm2.py):
  in_proj gives B, C, x; y = C ⊙ conv(B ⊙ x), width k = 3 (`conv_L_cache`), no bias (`conv_bias`
  False), then out_proj. Its cache holds k columns, the current input included; here the state is the
  k − 1 inputs a continuation needs, which is all the op carries between calls.
- Zoology's BaseConv (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
  Models", arXiv:2312.04927; checked against zoology/mixers/base_conv.py): y = conv(u) ⊙ Linear(u) + u,
  width 3 by default, `nn.Conv1d` with its bias: here b = None (no input gate), c = Linear(u), the
  residual added by the layer.

`short_conv_sequential` is the loop over tokens with a rolling buffer, the definition; `short_conv_step`
one token, which a layer's `step` decodes with (it returns the buffer moved on by one input);
`short_conv_parallel` the whole sequence as one causal depthwise convolution (`depthwise_causal_conv`)
over the state followed by the inputs, checked against the sequential one, values and gradients
(tests/ops/test_ops_short_conv.py). Nothing is carried across chunks, so there is no chunked form: the
parallel form is already linear in T. Computed in the inputs' dtype (k products per output, no
accumulation over time).

Glossary (code -> paper):
    B, T, D, k      batch, tokens, channels, kernel width (LFM2 `conv_L_cache`)
    x, b, c         input and the gates before / after the convolution        x, B, C
    u               gated input b ⊙ x, what the convolution reads and the state keeps
    weight, bias    depthwise taps (D, k), tap 0 the oldest; bias (D,) or None
    state           the last k − 1 gated inputs (B, k − 1, D), oldest first
"""

from __future__ import annotations

import torch
from torch import Tensor

from archbench.archs.ops.common import depthwise_causal_conv


def _gated(x: Tensor, b: Tensor | None) -> Tensor:
    return x if b is None else b * x


def _zero_state(x: Tensor, k: int) -> Tensor:
    return x.new_zeros(x.shape[0], k - 1, x.shape[-1])


# -- the definition: one token, and the loop over time -------------------------------------------------
def short_conv_step(x: Tensor, weight: Tensor, b: Tensor | None, c: Tensor | None, bias: Tensor | None,
                    state: Tensor) -> tuple[Tensor, Tensor]:
    """One token: x, b, c (B, D) (b, c None for no gate), weight (D, k), bias (D,) or None, state
    (B, k − 1, D). Returns y (B, D) and the new state (the buffer without its oldest input, u_t appended)."""
    window = torch.cat([state, _gated(x, b).unsqueeze(1)], 1)  # (B, k, D): u_{t-k+1} .. u_t
    y = (window * weight.T).sum(1)  # (B, D)
    if bias is not None:
        y = y + bias
    return (y if c is None else c * y), window[:, 1:]


def short_conv_sequential(x: Tensor, weight: Tensor, b: Tensor | None = None, c: Tensor | None = None,
                          bias: Tensor | None = None, state0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The definition, token by token. x, b, c (B, T, D) (b, c None for no gate), weight (D, k), bias (D,)
    or None, state0 (B, k − 1, D) or None (zeros). Returns y (B, T, D) and the final state (B, k − 1, D)."""
    state = _zero_state(x, weight.shape[1]) if state0 is None else state0
    ys = []
    for t in range(x.shape[1]):
        y, state = short_conv_step(x[:, t], weight, None if b is None else b[:, t],
                                   None if c is None else c[:, t], bias, state)
        ys.append(y)
    return torch.stack(ys, 1), state


# -- the parallel form -----------------------------------------------------------------------------------
def short_conv_parallel(x: Tensor, weight: Tensor, b: Tensor | None = None, c: Tensor | None = None,
                        bias: Tensor | None = None, state0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`short_conv_sequential` as one causal depthwise convolution over [state0, u] (no padding: the state
    is the left context): same arguments and results, to rounding, values and gradients."""
    k = weight.shape[1]
    state = _zero_state(x, k) if state0 is None else state0
    window = torch.cat([state, _gated(x, b)], 1)  # (B, k − 1 + T, D)
    y = depthwise_causal_conv(window, weight, bias)
    return (y if c is None else c * y), window[:, window.shape[1] - (k - 1):]  # (B, T, D), (B, k − 1, D)
