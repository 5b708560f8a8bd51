"""WKV, the recurrence of RWKV-6 (archs/mixers/rwkv.py): its definition, its chunked form, and fla's kernel.

Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence"
(arXiv:2404.05892). Per head, with decay w_t = exp(lw_t) in (0, 1)^K:
    S_t = diag(w_t) S_{t-1} + k_t^T v_t,    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)

`wkv_sequential` is the loop over time, the definition; `wkv_step` its one token, which the layer's
`step` decodes with; `wkv_chunked` the parallel form (matmuls inside chunks, a short scan across them),
checked against the sequential one, values and gradients (tests/ops/test_ops_wkv.py); `wkv_fla` runs it
in flash-linear-attention's CUDA kernel.

WKV is a member of the gated-linear family: it is archs/ops/gated_linear.py's diagonal-decay op run on k,
v and the log decay delayed by one token (a zero token first, one more at the end to carry the final
state), plus the bonus (r_t ⊙ u ⊙ k_t)·v_t outside (tests/ops/test_ops_family.py checks it, values and
gradients). It keeps its own chunked form for the two things that mapping adds: the bonus, which here
is the diagonal of the same elementwise sub-chunk block that the causal pairs already fill (no shifted
copies of k, v, lw and no separate pass over the tokens), and the log-decay floor (`log_decay_floor`):
RWKV-6's learned w = exp(-exp(·)) has no lower bound, so the cumulative log decays of a chunk are
floored before any difference is taken, which the shared op (built for GLA's bounded gates) does not do.
Speed is not the reason: at RWKV-6's shapes the two run about as fast.

Glossary:
    B, T, H, K, V   batch, sequence length, heads, key and value width per head
    r, k, v, lw     receptance, key, value, log decay (<= 0), each (B, T, H, ·);  u bonus (H, K)
    C, c, N         chunk length, sub-chunk length, number of chunks
    G, Gx           cumulative log decay within a chunk, inclusive / exclusive of the token
    S, S_in         WKV state (B, H, K, V); the state entering each chunk (B, H, N, K, V)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from archbench.archs.backends import Kernel, probe_leaves
from archbench.archs.ops.common import cache_elements, chunk_groups, log_decay_floor, mask_bias, to_chunks

_SUB_CHUNK = 4  # diagonal sub-blocks of this many tokens are computed elementwise (see wkv_chunked)
# size of the largest temporary in one pass of wkv_chunked's output loop; None: one core's L2
# (common.cache_elements); tests set a number
_PASS_ELEMENTS: int | None = None


# -- the definition: one step, and the loop over time --------------------------------------------------
def wkv_step(r: Tensor, k: Tensor, v: Tensor, lw: Tensor, u: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
    """One token: r, k, lw (B, H, K), v (B, H, V), u (H, K), S (B, H, K, V) -> o (B, H, V), new S."""
    kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
    o = torch.einsum("bhk,bhkv->bhv", r, S + u.unsqueeze(-1) * kv)
    return o, lw.exp().unsqueeze(-1) * S + kv


def wkv_sequential(r: Tensor, k: Tensor, v: Tensor, lw: Tensor, u: Tensor,
                   S0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The reference, the recurrence token by token: r, k, lw (B, T, H, K), v (B, T, H, V), u (H, K),
    S0 (B, H, K, V) or None (zeros). Returns o (B, T, H, V) and the final state (B, H, K, V)."""
    B, T, H, K = r.shape
    S = S0 if S0 is not None else r.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        o, S = wkv_step(r[:, t], k[:, t], v[:, t], lw[:, t], u, S)
        out.append(o)
    return torch.stack(out, 1), S  # (B, T, H, V), (B, H, K, V)


# -- the chunked form ----------------------------------------------------------------------------------
def wkv_chunked(r: Tensor, k: Tensor, v: Tensor, lw: Tensor, u: Tensor, S0: Tensor | None = None,
                chunk_size: int = 32) -> tuple[Tensor, Tensor]:
    """The recurrence in chunks of C tokens: matmuls inside a chunk, a short scan over chunks.

    Inside a chunk, with G_t the cumulative log decay up to and including t, token t reads token s < t
    with weight A[t, s] = sum_k r_t[k] k_s[k] exp(G_{t-1}[k] - G_s[k]); the decay differs per channel,
    so A is not a plain r k^T. Every exponent used is <= 0, so nothing overflows: between sub-chunks of
    c = 4 tokens the exponent splits at the query sub-chunk's start a (t-1 >= a-1 >= s), making A a
    matmul of r_t exp(G_{t-1} - G_{a-1}) and k_s exp(G_{a-1} - G_s); inside a sub-chunk A is computed
    elementwise as a (c, c, K) tensor. Per token and head that is O(K V + C (K + V)) work: linear in T.
    Float32 or float64 inputs (the mixer upcasts); matches `wkv_sequential` to rounding, gradients too.
    """
    B, T, H, K = r.shape
    V = v.shape[-1]
    C = chunk_size
    c = math.gcd(C, _SUB_CHUNK)
    N = -(-T // C)
    pad = N * C - T  # zero k and zero log-decay in the padding leave outputs and final state unchanged

    def blocks(t):  # (B, T, H, X) -> (B, H, N, C, X), contiguous: the state's matmuls read every chunk
        return to_chunks(t, C, pad).contiguous()

    r, k, v, lw = blocks(r), blocks(k), blocks(v), blocks(lw.clamp(min=log_decay_floor(lw.dtype)))
    G = lw.cumsum(3)  # (B, H, N, C, K) inclusive: log decay from chunk start through t
    Gx = F.pad(G, (0, 0, 1, -1))  # exclusive, G_{t-1}; a shift, not G - lw, which would cancel badly

    # Each chunk's own contribution to the state, and its total decay; then scan over chunks.
    G_end = G[:, :, :, -1:]  # (B, H, N, 1, K)
    dS = (k * (G_end - G).exp()).transpose(-1, -2) @ v  # (B, H, N, K, V)
    S = S0 if S0 is not None else r.new_zeros(B, H, K, V)
    S_in = []
    for decay_n, dS_n in zip(G_end.exp().transpose(-1, -2).unbind(2), dS.unbind(2), strict=True):
        S_in.append(S)
        S = decay_n * S + dS_n  # decay_n (B, H, K, 1)
    S_in = torch.stack(S_in, 2)  # (B, H, N, K, V) state entering each chunk

    # Outputs, a few chunks at a time: the (c, C, K)-per-token temporaries then stay cache-sized, which
    # keeps time linear in T (allocated for a long sequence at once, they page-fault fresh memory and
    # fall out of cache, and the time per token grows with T).
    step = max(1, (_PASS_ELEMENTS or cache_elements(r.dtype)) // (B * H * C * C // c * K))
    o = torch.cat([_chunk_outputs(*group, u, c) for group in chunk_groups((r, k, v, G, Gx, S_in), step)],
                  2)  # (B, H, N, C, V)
    return o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T], S  # (B, T, H, V), (B, H, K, V)


def _chunk_outputs(r, k, v, G, Gx, S_in, u, c: int):
    """Outputs of N whole chunks (B, H, N, C, K) given the state entering each (B, H, N, K, V)."""
    B, H, N, C, K = r.shape
    V, nI = v.shape[-1], C // c
    o = (r * Gx.exp()) @ S_in  # (B, H, N, C, V) what the chunk reads from earlier chunks

    # Earlier sub-chunks of the same chunk: split the exponent at each query sub-chunk's start a.
    # Exponents that are <= 0 in exact arithmetic may round to a hair above 0, which is harmless; the
    # pairs that are not causal get -inf added instead, so their exponent cannot overflow.
    r_s, Gx_s = r.reshape(B, H, N, nI, c, K), Gx.reshape(B, H, N, nI, c, K)
    G_a = Gx_s[..., :1, :]  # (B, H, N, nI, 1, K) = G_{a-1}
    q = r_s * (Gx_s - G_a).exp()  # (B, H, N, nI, c, K)
    before = mask_bias(torch.arange(C) < (torch.arange(nI) * c).view(nI, 1), r)  # (nI, C, 1) s < a
    kk = k.unsqueeze(3) * (G_a - G.unsqueeze(3) + before).exp()  # (B, H, N, nI, C, K)
    o = o + (q @ kk.transpose(-1, -2)).reshape(B, H, N, C, C) @ v

    # The same sub-chunk: elementwise over (t, s, K), strictly causal, plus the bonus u on t = s.
    k_s, v_s, G_s = k.reshape(B, H, N, nI, c, K), v.reshape(B, H, N, nI, c, V), G.reshape(B, H, N, nI, c, K)
    later = mask_bias(torch.ones(c, c, dtype=torch.bool).tril(-1), r)  # (c, c, 1) t > s
    decay_ts = (Gx_s.unsqueeze(-2) - G_s.unsqueeze(-3) + later).exp()  # (B, H, N, nI, c, c, K)
    A_d = torch.einsum("...tk,...tsk->...ts", r_s, k_s.unsqueeze(-3) * decay_ts)  # (B, H, N, nI, c, c)
    bonus = (r_s * u.view(H, 1, 1, 1, K) * k_s).sum(-1, keepdim=True)  # (B, H, N, nI, c, 1)
    return o + (A_d @ v_s + bonus * v_s).view(B, H, N, C, V)


# -- the optional fused kernel (CUDA) ------------------------------------------------------------------
def _probe_rwkv6(chunk_rwkv6, device: str) -> None:
    """A tiny forward+backward of fla's kernel: it raises where fla refuses its backward (Hopper with
    Triton < 3.7.1, fla #640), which happens inside `.backward()`, too late to switch paths."""
    r, k, v = probe_leaves(device)
    lw = (-torch.rand(1, 16, 1, 16, device=device)).requires_grad_(True)
    u = torch.randn(1, 16, device=device, requires_grad=True)
    chunk_rwkv6(r, k, v, lw, u, scale=1.0)[0].sum().backward()


FLA = Kernel("fla.ops.rwkv6", "chunk_rwkv6", "flash-linear-attention", probe=_probe_rwkv6)


def wkv_fla(r: Tensor, k: Tensor, v: Tensor, lw: Tensor, u: Tensor, S0: Tensor | None = None,
            output_final_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """`wkv_chunked` in fla's `chunk_rwkv6`; the final state only if `output_final_state`."""
    # fla takes (B, T, H, K), the log decay, and u of shape (H, K); RWKV-6 uses no 1/sqrt(K) scale.
    lw = lw.clamp(min=log_decay_floor(torch.float32))  # fla accumulates it in float32
    return FLA(r, k, v, lw, u.to(r.dtype), scale=1.0, initial_state=S0, output_final_state=output_final_state)
