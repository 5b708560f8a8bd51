"""SSD, the scan of Mamba-2 (archs/mixers/mamba2.py): its definition, its chunked form, and the fused kernels.

Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured
State Space Duality" (arXiv:2405.21060). Per head, with a scalar decay a_t = exp(Δ_t A):
    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ,    y_t = h_t C_t                 (state (P, N) per head)
Because the decay is one scalar per head, the whole map x -> y over a sequence is a masked matrix
M = L ∘ (C Bᵀ) with L[i, j] = a_i ⋯ a_{j+1} (a 1-semiseparable matrix, §3). The SSD algorithm (§6)
cuts the sequence into chunks of Q tokens: inside a chunk it multiplies by M directly (matmuls,
O(T Q)), between chunks it carries the (P, N) state of each head (O(T N P)), so time stays linear in T.

`ssd_sequential` is the loop over time, the definition; `ssd_step` its one token, which the layer's
`step` decodes with; `ssd_chunked` the SSD algorithm, checked against the sequential one, values and
gradients (tests/ops/test_ops_ssd.py).

SSD is a member of the gated-linear family: it is archs/ops/gated_linear.py's diagonal-decay op with
q = C and k = B broadcast to every head, v = Δ x, log decay Δ A (a scalar per head and token), scale 1,
and the state transposed (tests/ops/test_ops_family.py checks it, values and gradients). It keeps its own
chunked form because B and C are shared by all heads (one group): one (Q, Q) matrix C Bᵀ per chunk serves
every head, where the shared op forms q kᵀ once per head, and the chunk states read one B for all heads;
at Mamba-2's shapes on CPU it is the faster of the two. `ssd_fla` and `ssd_mamba_ssm` run the same op in
optional CUDA kernels (fla's `chunk_simple_gla` is exactly this recurrence with q = C, k = B, v = Δ x,
g = Δ A).

Glossary (code -> paper):
    B batch, T sequence length (L in the paper), H heads, P head_dim, N d_state, Q chunk size
    x          (B, T, H, P) input of the SSM                                          x
    dt         (B, T, H) step size (> 0)                                              Δ
    A          (H,) one negative scalar per head                                      A
    Bm, Cm     (B, T, N) input / output projections, shared by all heads (one group)   B, C
    h          (B, H, P, N) state
    logd       cumulative log decay Σ Δ A within a chunk (non-increasing)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from archbench.archs.backends import Kernel, probe_leaves
from archbench.archs.ops.common import SCORE_TEMPORARIES, cache_elements, chunk_groups, mask_bias

# Working-set size of `ssd_chunked`, in tensor elements: of the (B, H, chunks, Q, Q) decay tensor built
# at once. None: one core's L2 (common.cache_elements); tests set a number.
_BLOCK_ELEMENTS: int | None = None


# -- the definition: one step, and the loop over time --------------------------------------------------
def ssd_step(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """One token: x (B, H, P), dt (B, H), A (H,), Bm/Cm (B, N), h (B, H, P, N) -> y (B, H, P), new h."""
    h = torch.exp(dt * A)[..., None, None] * h + (dt[..., None] * x)[..., None] * Bm[:, None, None, :]
    return (h @ Cm[:, None, :, None]).squeeze(-1), h


def ssd_sequential(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor,
                   h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The reference: the recurrence token by token. x (B, T, H, P), dt (B, T, H), A (H,), Bm/Cm
    (B, T, N), h0 (B, H, P, N) or None (zeros). Returns y (B, T, H, P) without the D skip, and the
    final state (B, H, P, N)."""
    b, T, H, P = x.shape
    h = x.new_zeros(b, H, P, Bm.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(T):
        y, h = ssd_step(x[:, t], dt[:, t], A, Bm[:, t], Cm[:, t], h)
        ys.append(y)
    return torch.stack(ys, 1), h


# -- the chunked form ----------------------------------------------------------------------------------
def ssd_chunked(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor | None = None,
                chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """The SSD algorithm (§6): same arguments and results as `ssd_sequential`, linear in T, mostly
    matmuls, differentiable by autograd."""
    b, T, H, P = x.shape
    Q = min(chunk_size, T)
    pad = -T % Q  # zero steps (Δ = 0): decay 1 and no input, so the state passes them unchanged
    if pad:
        x, dt, Bm, Cm = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, Bm, Cm))
    c = x.shape[1] // Q
    xdt = (x * dt[..., None]).view(b, c, Q, H, P).permute(0, 3, 1, 2, 4)  # (B, H, c, Q, P)
    Bc, Cc = Bm.view(b, 1, c, Q, -1), Cm.view(b, 1, c, Q, -1)  # (B, 1, c, Q, N), shared by the heads
    logd = torch.cumsum((dt * A).view(b, c, Q, H).permute(0, 3, 1, 2), -1)  # (B, H, c, Q), non-increasing
    h = x.new_zeros(b, H, P, Bm.shape[-1]) if h0 is None else h0
    # A few chunks at a time, so the (Q, Q) decay matrices stay cache-sized and time stays linear in T.
    g = max(1, (_BLOCK_ELEMENTS or cache_elements(x.dtype)) // (b * H * Q * Q * SCORE_TEMPORARIES))
    ys = []
    for group in chunk_groups((xdt, logd, Bc, Cc), g):
        y, h = _ssd_chunks(*group, h)
        ys.append(y)
    return torch.cat(ys, 1).reshape(b, c * Q, H, P)[:, :T], h


def _ssd_chunks(xdt: Tensor, logd: Tensor, Bc: Tensor, Cc: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """SSD over consecutive chunks: xdt (B, H, c, Q, P) = Δ x, logd (B, H, c, Q) cumulative log decay
    within each chunk, Bc/Cc (B, 1, c, Q, N), h (B, H, P, N) the state before them.
    Returns y (B, c, Q, H, P) and the state after them."""
    Q = logd.shape[-1]
    # 1. Within a chunk: y_i = Σ_{j<=i} exp(logd_i - logd_j) (C_i·B_j) Δ_j x_j. The differences are <= 0
    #    where i >= j, and the mask sends the rest to exp(-inf) = 0, so nothing overflows.
    causal = torch.ones(Q, Q, dtype=torch.bool, device=logd.device).tril()
    bias = mask_bias(causal, logd)[..., 0]  # (Q, Q) 0 / -inf: an add is cheaper than a broadcast masked_fill_
    decay = (logd[..., :, None] - logd[..., None, :]).add_(bias).exp_()  # (B, H, c, Q, Q)
    y = (decay * (Cc @ Bc.transpose(-1, -2))) @ xdt  # (B, H, c, Q, P); exp_'s backward needs `decay`

    # 2. Each chunk's own contribution to the state at its end: Σ_j exp(logd_end - logd_j) Δ_j x_j B_jᵀ.
    to_end = torch.exp(logd[..., -1:] - logd)  # (B, H, c, Q)
    chunk_states = (xdt * to_end[..., None]).transpose(-1, -2) @ Bc  # (B, H, c, P, N)

    # 3. Pass the state from chunk to chunk (a loop over small tensors), keeping each chunk's start.
    chunk_decay = torch.exp(logd[..., -1])  # (B, H, c)
    starts = []
    for i in range(logd.shape[2]):
        starts.append(h)
        h = chunk_decay[..., i, None, None] * h + chunk_states[:, :, i]
    starts = torch.stack(starts, 2)  # (B, H, c, P, N)

    # 4. What the carried-in state adds to each output: exp(logd_i) C_i h_start.
    y = y.addcmul_(torch.exp(logd)[..., None], Cc @ starts.transpose(-1, -2))  # in place on step 1's product
    return y.permute(0, 2, 3, 1, 4), h


# -- optional fused kernels (CUDA) ---------------------------------------------------------------------
def _probe_simple_gla(chunk_simple_gla, device: str) -> None:
    """A tiny forward+backward of fla's kernel: it raises where fla refuses its backward (Hopper with
    Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to switch paths."""
    q, k, v = probe_leaves(device)
    g = (-torch.rand(1, 16, 1, device=device)).requires_grad_(True)  # (B, T, H) log decay
    chunk_simple_gla(q=q, k=k, v=v, g=g, scale=1.0)[0].sum().backward()


FLA = Kernel("fla.ops.simple_gla", "chunk_simple_gla", "flash-linear-attention", probe=_probe_simple_gla)
MAMBA_SSM = Kernel("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined", "mamba-ssm")


def ssd_fla(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor | None = None,
            output_final_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """`ssd_chunked` in fla's `chunk_simple_gla`; the final state only if `output_final_state`."""
    H = x.shape[2]
    q, k = (m[:, :, None].expand(-1, -1, H, -1) for m in (Cm, Bm))  # (B, T, H, N): one group
    v, g = x * dt[..., None], dt * A  # g: log decay per token and head
    h0 = None if h0 is None else h0.transpose(-1, -2).contiguous()  # fla keeps (B, H, N, P)
    y, h = FLA(q=q, k=k, v=v, g=g, scale=1.0, initial_state=h0, output_final_state=output_final_state)
    return y, (h.transpose(-1, -2) if output_final_state else None)


def ssd_mamba_ssm(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor | None = None,
                  chunk_size: int = 64, output_final_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """`ssd_chunked` in mamba-ssm's Triton kernel; the final state only if `output_final_state`."""
    out = MAMBA_SSM(x, dt, A, Bm[:, :, None], Cm[:, :, None], chunk_size, initial_states=h0,
                    return_final_states=output_final_state)
    return out if output_final_state else (out, None)
