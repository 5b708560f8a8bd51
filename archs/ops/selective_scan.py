"""The selective scan of Mamba's S6 layer (archs/mixers/mamba.py): its definition and its chunked form.

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t,   y_t = C_t h_t        (Mamba eq. 2a-2b, ZOH Ā, Euler B̄)

`selective_scan_sequential` is the loop over time, the definition; `selective_scan_step` is its one
token, which the layer's `step` decodes with; `selective_scan_chunked` is the parallel form with a
hand-written backward, checked against the sequential one, values and gradients
(tests/ops/test_ops_selective_scan.py).

Inside each chunk of c tokens the recurrence runs step by step, but for many chunks at once; a second
pass carries the state across chunk boundaries. Only products of decays exp(Δ A) ∈ (0, 1] appear, never
exp(+cumsum), so nothing overflows however large |Δ A| grows. The backward runs the same two-level scan
backwards in time with states recomputed from the chunk-entry states, so training never holds a
(B, T, E, N) tensor, and autograd records one node per call instead of one per step.

Glossary (code -> paper):
    B batch, T (L) sequence length, E channels, N d_state, c chunk length, S = T / c chunks,
    g chunks advanced side by side per Python step
    x           x      (B, T, E) input;  delta, dl  Δ (B, T, E) step sizes;  A (E, N) < 0
    Bm, Cm      B, C   (B, T, N) input / output projections of the state, shared by the E channels
    a, u        Ā, Δx  decay exp(Δ_t A) per step and Δ_t x_t (B, T, E); B̄x = Δ_t x_t B_t
    g, q        —      in the backward: dL/dh_t and dL/d(Δ_t A), per step
    h           h      hidden state, (B, E, N) outside, (B, N, E) inside (E innermost)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


# -- the definition: one step, and the loop over time --------------------------------------------------
def selective_scan_step(x_t: Tensor, delta_t: Tensor, A: Tensor, B_t: Tensor, C_t: Tensor,
                        h: Tensor) -> tuple[Tensor, Tensor]:
    """One token: x_t, delta_t (B, E); A (E, N); B_t, C_t (B, N); h (B, E, N) -> y_t (B, E), new h."""
    h = torch.exp(delta_t[..., None] * A) * h + (delta_t * x_t)[..., None] * B_t[:, None]  # (B, E, N)
    return (h @ C_t[..., None])[..., 0], h  # (B, E)


def selective_scan_sequential(x: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor,
                              h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The reference, a loop over time. x, delta (B, T, E); A (E, N); Bm, Cm (B, T, N); h0 (B, E, N)
    or None (zeros). Returns y (B, T, E) without the D skip, and the final state h (B, E, N)."""
    h = h0 if h0 is not None else x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        y_t, h = selective_scan_step(x[:, t], delta[:, t], A, Bm[:, t], Cm[:, t], h)
        ys.append(y_t)
    return torch.stack(ys, 1), h


# -- the chunked form ----------------------------------------------------------------------------------
# The chunked scan keeps the state as (..., N, E), E innermost: every per-step op then runs along
# E-long rows, and the contractions over N or E become (1, N) @ (N, E) / (1, E) @ (E, N) products.
# Work buffers are step-major, (c, B, g, N, E), so that each step reads and writes one contiguous slice.
_LOG2E = math.log2(math.e)
_GROUP = 1 << 17  # state elements (B·g·N·E) advanced per Python step: hides per-op overhead, fits in L2
_SEQ_CHUNK = 4  # chunk length when chunks run one at a time: short chunks keep the work buffers in cache


def _decays(delta, A2, out=None):
    """exp(Δ A), computed as exp2(Δ · A log2 e) (cheaper than exp on CPU): delta (..., E),
    A2 = A.T · log2 e (N, E) -> (..., N, E). Δ >= 0 and A < 0, so every factor is in (0, 1]."""
    return torch.mul(delta[..., None, :], A2, out=out).exp2_()


def _rows(t):
    """(B, g, c, k) -> (c·B·g, 1, k): one row per token, in the order of the step-major work buffers."""
    return t.permute(2, 0, 1, 3).reshape(-1, 1, t.shape[-1])


def _unrows(t, B, g):
    """(c·B·g, 1, k) -> (B, g, c, k), the inverse of `_rows`."""
    return t.view(-1, B, g, t.shape[-1]).permute(1, 2, 0, 3)


def _run_chunks(hin, dl, u, Bc, A2, H, decays):
    """Advance g chunks step by step from their entry states hin (B, g, N, E): state i goes to H[i]
    (H is (c, B, g, N, E)), decay i to decays[i] (c tensors (B, g, N, E), possibly one scratch tensor
    c times). dl, u (B, g, c, E); Bc (B, g, c, N)."""
    h = hin
    for i in range(dl.shape[2]):  # all g chunks advance one token per step
        a = _decays(dl[:, :, i], A2, out=decays[i])
        h = torch.mul(a, h, out=H[i]).addcmul_(Bc[:, :, i, :, None], u[:, :, i, None, :])


def _chunk_entries(h, dl, u, Bc, A2, out):
    """States entering each of g consecutive chunks, given h (B, N, E) entering the first, into out
    (B, g, N, E).

    Two levels: each chunk but the last runs from a zero state (all at once), then a pass across the
    chunks adds the entry state decayed over the whole chunk, exp(A ΣΔ) — a product of factors in (0, 1]."""
    out[:, 0] = h
    g = dl.shape[1]
    if g == 1:
        return
    hl = h.new_zeros(h.shape[0], g - 1, *h.shape[1:])  # (B, g-1, N, E)
    a = torch.empty_like(hl)
    for i in range(dl.shape[2]):
        hl.mul_(_decays(dl[:, :-1, i], A2, out=a)).addcmul_(Bc[:, :-1, i, :, None], u[:, :-1, i, None, :])
    P = _decays(dl[:, :-1].sum(2), A2)  # (B, g-1, N, E)
    for s in range(g - 1):
        torch.addcmul(hl[:, s], P[:, s], out[:, s], out=out[:, s + 1])


def _grad_entries(k, dl, dy, Cc, A2, decays):
    """The same two-level scan backwards in time, for g_t = dy_t ⊗ C_t + a_{t+1} g_{t+1}: given k (B, N, E)
    = a g entering the last chunk from the right, returns it for every chunk (B, g, N, E)."""
    g = dl.shape[1]
    if g == 1:
        return k[:, None]
    r = k.new_zeros(k.shape[0], g - 1, *k.shape[1:])  # chunks 1..g-1, each from a zero end state
    for i in reversed(range(dl.shape[2])):
        r.addcmul_(Cc[:, 1:, i, :, None], dy[:, 1:, i, None, :]).mul_(decays[i][:, 1:])
    P = _decays(dl[:, 1:].sum(2), A2)  # (B, g-1, N, E)
    ks = [k]
    for s in reversed(range(g - 1)):
        ks.append(torch.addcmul(r[:, s], P[:, s], ks[-1]))
    return torch.stack(ks[::-1], 1)


class _ChunkedScan(torch.autograd.Function):
    """The chunked scan on inputs padded to a multiple of c, with a hand-written backward.

    Chunks of c tokens run in groups of g = _GROUP / (B·N·E) chunks (at least 1; on an accelerator all
    chunks, for the fewest kernel launches): the groups one after another, the chunks of a group side
    by side. Forward keeps only the states entering each chunk;
    backward, group by group from the last, recomputes the group's states and runs the reverse
    recurrence with a_t = exp(Δ_t A), b_t = Δ_t x_t B_t, h_t = a_t h_{t-1} + b_t, y_t = C_t h_t:
        g_t = dL/dh_t = dy_t ⊗ C_t + a_{t+1} g_{t+1},   q_t = g_t ⊙ a_t ⊙ h_{t-1} (= dL/d(Δ_t A))
        dx_t = Δ_t Σ_n g_t B_t,  dΔ_t = x_t Σ_n g_t B_t + Σ_n q_t A,  dA = Σ_t q_t Δ_t,
        dB_t = Σ_e g_t Δ_t x_t,  dC_t = Σ_e dy_t h_t,  dh0 = a_1 g_1.
    Memory: O(B·T·E·N / c) saved, and O(c · max(_GROUP, B·E·N)) in work buffers."""

    @staticmethod
    def forward(ctx, x, delta, A, Bm, Cm, h0, c):
        B, L, E = x.shape
        N = A.shape[1]
        cpu = x.device.type == "cpu"  # the group size is a CPU cache choice
        if cpu and B * E * N >= _GROUP:  # chunks run one at a time: the scan is plain sequential,
            c = max(d for d in range(1, min(c, _SEQ_CHUNK) + 1) if c % d == 0)  # and shorter chunks too
        S = L // c
        G = max(1, min(S, _GROUP // (B * E * N))) if cpu else S
        A2 = A.T.contiguous() * _LOG2E  # (N, E), contiguous: a strided A.T makes every step slow
        dl, u, Bc, Cc = (t.view(B, S, c, -1) for t in (delta, delta * x, Bm, Cm))  # (B, S, c, ·)
        h = h0.transpose(1, 2)  # (B, N, E)
        hins, ys, H = x.new_empty(B, S, N, E), [], None  # the state entering each chunk
        for s0 in range(0, S, G):
            sl = slice(s0, s0 + G)
            g = dl[:, sl].shape[1]
            if H is None or H.shape[2] != g:  # reused: fresh large buffers page-fault
                H, a = x.new_empty(c, B, g, N, E), x.new_empty(B, g, N, E)
            _chunk_entries(h, dl[:, sl], u[:, sl], Bc[:, sl], A2, out=hins[:, sl])
            _run_chunks(hins[:, sl], dl[:, sl], u[:, sl], Bc[:, sl], A2, H, [a] * c)
            ys.append(_unrows(_rows(Cc[:, sl]) @ H.view(-1, N, E), B, g))  # y_t = C_t h_t  (B, g, c, E)
            h = H[-1, :, -1]  # read before H is written again
        ctx.save_for_backward(x, delta, A, Bm, Cm, hins)
        ctx.c, ctx.G = c, G
        return torch.cat(ys, 1).reshape(B, L, E), h.transpose(1, 2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh):
        x, delta, A, Bm, Cm, hins = ctx.saved_tensors
        dy = dy.contiguous()  # a sum's gradient arrives broadcast (stride 0), which bmm handles slowly
        c, G = ctx.c, ctx.G
        B, L, E = x.shape
        N, S = A.shape[1], L // c
        At = A.T.contiguous()  # (N, E), contiguous: a strided A.T makes every step slow
        A2 = At * _LOG2E
        dl, u, Bc, Cc, dyc = (t.view(B, S, c, -1) for t in (delta, delta * x, Bm, Cm, dy))
        k = dh.transpose(1, 2)  # (B, N, E): a g entering from the right, here dL/dh_T
        outs, H = [], None  # per group, last first: (Σ_n g B, dB, dC, Σ_n q A)
        accA = x.new_zeros(B, G, N, E)  # Σ_t q_t Δ_t over all groups, summed over (B, G) at the end
        for s0 in reversed(range(0, S, G)):
            sl = slice(s0, s0 + G)
            g = dl[:, sl].shape[1]
            if H is None or H.shape[2] != g:
                H, Ab, Gb = (x.new_empty(c, B, g, N, E) for _ in range(3))  # states, decays, g_t
                rb, qb = x.new_empty(B, g, N, E), x.new_empty(B, g, N, E)
            hin = hins[:, sl]
            _run_chunks(hin, dl[:, sl], u[:, sl], Bc[:, sl], A2, H, Ab)
            r = _grad_entries(k, dl[:, sl], dyc[:, sl], Cc[:, sl], A2, Ab)
            qA = []
            for i in reversed(range(c)):
                gi = torch.addcmul(r, Cc[:, sl, i, :, None], dyc[:, sl, i, None, :], out=Gb[i])
                r = torch.mul(Ab[i], gi, out=rb)  # a_t g_t, passed to step t-1
                q = torch.mul(r, H[i - 1] if i else hin, out=qb)
                accA[:, :g].addcmul_(q, dl[:, sl, i, None, :])
                qA.append(q.mul_(At).sum(-2))  # (B, g, E)
            k = r[:, 0]  # a view of rb, read before rb is written again
            Gf, Hf = Gb.view(-1, N, E), H.view(-1, N, E)
            outs.append((_unrows(_rows(Bc[:, sl]) @ Gf, B, g), _unrows(_rows(u[:, sl]) @ Gf.mT, B, g),
                         _unrows(_rows(dyc[:, sl]) @ Hf.mT, B, g), torch.stack(qA[::-1], 2)))
        dA = accA.sum((0, 1))
        gB, dB, dC, qA = (torch.cat(t[::-1], 1).reshape(B, L, -1) for t in zip(*outs, strict=True))
        return gB * delta, gB * x + qA, dA.T, dB, dC, k.transpose(1, 2), None


def selective_scan_chunked(x: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor,
                           h0: Tensor | None = None, chunk_size: int = 16) -> tuple[Tensor, Tensor]:
    """Same contract as `selective_scan_sequential`, in O(T) work, differentiable (hand-written backward).

    Python steps: ~2c + g per g chunks of c = chunk_size tokens run side by side, g = _GROUP / (B·E·N);
    when B·E·N alone fills a step (g = 1) the scan is one step per token. Beyond the (B, T, E)
    activations, memory is O(B·T·E·N / c) saved for the backward and O(c · max(_GROUP, B·E·N)) in
    work buffers."""
    B, T, E = x.shape
    pad = -T % chunk_size
    if pad:  # Δ = 0 is the identity step (decay 1, input 0), so padding changes neither y nor h
        x, delta, Bm, Cm = (F.pad(t, (0, 0, 0, pad)) for t in (x, delta, Bm, Cm))
    h0 = h0 if h0 is not None else x.new_zeros(B, E, A.shape[1])
    x, delta, Bm, Cm = (t.contiguous() for t in (x, delta, Bm, Cm))
    y, h = _ChunkedScan.apply(x, delta, A, Bm, Cm, h0, chunk_size)
    return y[:, :T], h
