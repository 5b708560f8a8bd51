"""The FLOP bound of a training step: its analytic FLOPs over the measured matmul peak.

A step of the retrieval loop (bench/experiments/train.py: `scored_loss`, backward, AdamW) runs the
backbone on every token and the output head only where the task scores one, so its forward FLOPs
are B sequences through the backbone plus the head on M rows. Backward is counted as twice the
forward (Kaplan et al. 2020, arXiv:2001.08361, Sec. 2.1; the 6N per token of nanoGPT's `estimate_mfu`
and nanochat's `estimate_flops`): each matmul y = x W needs dL/dx and dL/dW, one matmul of its size
each. What this leaves out (norms, activations, the loss, the embedding lookup, clipping, AdamW) is
element-wise work, small in FLOPs though not in time.

    bound examples/s = matmul peak FLOP/s / (step FLOPs / B)

is what a step would train if all its FLOPs ran at the speed of one large matmul: an upper bound no
real step reaches, since most of a recurrent step is small or element-wise ops, not large matmuls.

Glossary: B batch, L = T seq_len, D d_model, V vocab_size, M scored positions in the batch (B·K
in MQAR).
"""

from __future__ import annotations

import functools

import torch

from archbench.archs import LM
from archbench.bench.measure.peaks import _matmul_flops_per_s

BACKWARD_PER_FORWARD = 2  # dL/dx and dL/dW: one matmul each, of the forward matmul's size


def train_step_flops(model: LM, batch: int, seq_len: int, scored: int) -> int:
    """Analytic FLOPs (multiply-add = 2) of one training step of `model` on `batch` rows of `seq_len`
    tokens, the head and loss on `scored` positions in all (M): 3 × forward, forward + backward."""
    d, v = model.head.in_features, model.head.out_features
    forward = batch * model.backbone.flops(seq_len) + 2 * d * v * scored  # head: (M, D) @ (D, V)
    return (1 + BACKWARD_PER_FORWARD) * forward


@functools.cache
def matmul_peak_flops(threads: int, n: int = 2048) -> float:
    """Best fp32 FLOP/s of an n×n CPU matmul on `threads` torch threads (measured once per process and
    thread count). `device_peaks` caches one figure per device whatever the thread count, and a bound
    must be measured on the threads the step it bounds runs on."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return _matmul_flops_per_s("cpu", n, torch.float32)
    finally:
        torch.set_num_threads(before)
