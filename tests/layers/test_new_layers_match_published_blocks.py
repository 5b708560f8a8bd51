"""The six new layers against their published blocks, each written out here from the reference code the
layer's docstring names, token loop or quadratic form included: the same weights must give the same
outputs (float64). What the conformance suite checks (parallel ≡ step, state bytes, causality) says the
layer agrees with itself; this says it is the published layer.

Written out from: transformers' `Lfm2ShortConv.slow_forward` (LFM2), `RecurrentGemmaRecurrentBlock` and
`RecurrentGemmaRglru` (without the document reset, the stated simplification), fla's `HGRN2Attention`
with its naive recurrent GLA, transformers' xLSTM 7B `xLSTMLayer` with the paper's unstabilised cell
(ε = 0), Zoology's `Based.forward` with its full d² Taylor map, and fla's `GatedDeltaProduct` in its
recurrent mode (the steps interleaved into one delta rule)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archbench.archs import create
from archbench.archs.ops.delta_rule import delta_rule_sequential

B, T, D = 2, 19, 32
f64 = torch.float64


def _mixer(name: str, **cfg):
    torch.manual_seed(0)
    return create(name, D, **cfg).to(f64)


def _x(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, D, dtype=f64, generator=torch.Generator().manual_seed(seed))


def _causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise causal conv as transformers writes it: padding W − 1, the first T outputs. (B, T, C)"""
    W = weight.shape[-1]
    return F.conv1d(x.transpose(1, 2), weight, bias, padding=W - 1, groups=x.shape[-1])[..., :x.shape[1]] \
        .transpose(1, 2)


def lfm2_short_conv(m, x):
    Bg, Cg, xx = m.in_proj(x).chunk(3, -1)
    return m.out_proj(Cg * _causal_conv(Bg * xx, m.conv.weight, None))


def recurrentgemma_block(m, u):
    y = F.gelu(m.linear_y(u), approximate="tanh")
    x = _causal_conv(m.linear_x(u), m.conv.weight, m.conv.bias)
    H, P = m.n_head, m.cfg.head_dim
    xb = x.reshape(B * T, H, P).permute(1, 0, 2)  # as RecurrentGemmaRglru: one bmm per head
    gate = [torch.sigmoid(torch.baddbmm(m.gate_bias[g][:, None, :], xb, m.gate_weight[g]).transpose(0, 1)
                          .reshape(B, T, H * P)) for g in (0, 1)]
    r, i = gate
    log_a = -8.0 * r * F.softplus(-m.lam)  # RecurrentGemma stores −Λ as `recurrent_param`
    a = log_a.exp()
    normalized = x * i * torch.sqrt(1 - a * a)
    h, out = torch.zeros(B, H * P, dtype=f64), []
    for t in range(T):
        h = a[:, t] * h + normalized[:, t]
        out.append(h)
    return m.linear_out(torch.stack(out, 1) * y)


def fla_hgrn2(m, x):
    q = F.silu(m.q_proj(x))
    g = F.logsigmoid(m.f_proj(x))
    k = 1 - g.exp()
    i = m.i_proj(x)
    H, K, V = m.n_head, m.head_k, m.head_v
    q, k, g, i = (t.reshape(B, T, H, -1) for t in (q, k, g, i))
    S, out = torch.zeros(B, H, K, V, dtype=f64), []
    for t in range(T):  # fla's naive_recurrent_gla
        S = g[:, t].exp()[..., None] * S + k[:, t, :, :, None] * i[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * K ** -0.5, S))
    o = torch.stack(out, 1).reshape(B, T, H * V)
    return m.o_proj(o * torch.rsqrt(o.square().mean(-1, keepdim=True) + m.cfg.norm_eps) * m.g_norm.weight)


def xlstm_layer(m, x):
    cap = m.cfg.gate_soft_cap
    H, K, V = m.n_head, m.head_k, m.head_v
    q, k = (p(x).reshape(B, T, H, K) for p in (m.q, m.k))
    v = m.v(x).reshape(B, T, H, V)
    i = (cap * torch.tanh(m.igate_preact(x) / cap)).exp()  # the exponential input gate, unstabilised
    f = torch.sigmoid(cap * torch.tanh(m.fgate_preact(x) / cap))
    C, n, out = torch.zeros(B, H, K, V, dtype=f64), torch.zeros(B, H, K, dtype=f64), []
    for t in range(T):  # the paper's cell (arXiv 2405.04517, §2.3)
        C = f[:, t, :, None, None] * C + i[:, t, :, None, None] * k[:, t, :, :, None] * v[:, t, :, None, :]
        n = f[:, t, :, None] * n + i[:, t, :, None] * k[:, t]
        qt = q[:, t] / math.sqrt(K)
        den = torch.maximum((n * qt).sum(-1).abs(), torch.ones(()))
        out.append(torch.einsum("bhk,bhkv->bhv", qt, C) / den[..., None])
    h = torch.stack(out, 1)
    h = (h - h.mean(-1, keepdim=True)) * torch.rsqrt(h.var(-1, keepdim=True, unbiased=False) + m.cfg.norm_eps)
    return m.out_proj(torch.sigmoid(m.ogate_preact(x)) * h.reshape(B, T, H * V) * m.norm_weight)


def zoology_based(m, x):
    H, d = m.n_head, m.cfg.feature_dim
    q, k = (p(x).view(B, T, H, d).transpose(1, 2) for p in (m.q_proj, m.k_proj))
    v = m.v_proj(x).view(B, T, H, -1).transpose(1, 2)

    def taylor(z):  # Zoology's TaylorExp.forward: all d² second-order products
        z2 = (z.unsqueeze(-1) * z.unsqueeze(-2)).flatten(-2) / math.sqrt(2)
        return torch.cat([torch.ones_like(z[..., :1]), z / d ** 0.25, z2 / d ** 0.5], -1)

    q, k, v = taylor(q).unsqueeze(-2), taylor(k).unsqueeze(-2), v.unsqueeze(-1)
    y = (q * (k * v).cumsum(2)).sum(-1) / ((q * k.cumsum(2)).sum(-1) + m.cfg.eps)
    return m.o_proj(y.transpose(1, 2).reshape(B, T, -1))


def fla_gated_deltaproduct(m, x):
    n, H, K, V = m.n_steps, m.n_head, m.head_k_dim, m.head_v_dim

    def conv(proj, conv1d):  # fla's ShortConvolution with SiLU
        return F.silu(_causal_conv(proj(x), conv1d.weight, None))

    q = conv(m.q_proj, m.q_conv1d).reshape(B, T, H, K)
    k = conv(m.k_proj, m.k_conv1d).reshape(B, T * n, H, K)  # '... t (n h d) -> ... (t n) h d'
    v = conv(m.v_proj, m.v_conv1d).reshape(B, T * n, H, V)
    beta = (2 * torch.sigmoid(m.b_proj(x))).reshape(B, T * n, H)  # allow_neg_eigval
    g = -m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias)
    q_steps = torch.zeros(B, T, n, H, K, dtype=f64)
    q_steps[:, :, -1] = q  # fla's recurrent mode: q on each token's last step, g on its first
    g_steps = torch.zeros(B, T, n, H, dtype=f64)
    g_steps[:, :, 0] = g
    def l2norm(z):  # fla's l2norm: z / sqrt(Σ z² + 1e-6)
        return z * torch.rsqrt(z.square().sum(-1, keepdim=True) + 1e-6)

    o, _ = delta_rule_sequential(l2norm(q_steps.reshape(B, T * n, H, K)), l2norm(k), v, beta,
                                 g_steps.reshape(B, T * n, H))
    o = o.reshape(B, T, n, H, V)[:, :, -1]
    gate = m.g_proj(x).reshape(B, T, H, V)
    o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + 1e-5) * m.o_norm.weight * F.silu(gate)
    return m.o_proj(o.reshape(B, T, H * V))


CASES = {
    "short_conv": ({}, lfm2_short_conv),
    "rglru": ({"expand": 1.5, "head_dim": 8}, recurrentgemma_block),
    "hgrn2": ({"expand_ratio": 8}, fla_hgrn2),
    "mlstm": ({"eps": 0.0}, xlstm_layer),
    "based": ({"n_head": 2, "feature_dim": 8}, zoology_based),
    "gated_deltaproduct": ({"head_dim": 8}, fla_gated_deltaproduct),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_is_the_published_block(name: str) -> None:
    cfg, published = CASES[name]
    m = _mixer(name, **cfg)
    if name == "mlstm":  # xLSTM's zero-weight gate init would leave the gates flat: give them data
        with torch.no_grad():
            for gate in (m.igate_preact, m.fgate_preact):
                gate.weight.normal_(0, 0.5)
    x = _x()
    with torch.no_grad():
        y, want = m(x), published(m, x)
    err = float((y - want).abs().max() / want.abs().max())
    assert err <= 1e-12, f"{name}: max rel diff {err:.1e} from the published block"


def test_one_householder_step_without_negative_eigenvalues_is_gated_deltanet() -> None:
    """n_h = 1 and β in (0, 1): the product is one delta step, Gated DeltaNet with the same weights."""
    gdp = _mixer("gated_deltaproduct", n_householder=1, allow_neg_eigval=False)
    gdn = _mixer("gated_deltanet")
    gdn.load_state_dict(gdp.state_dict())
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(gdp(x), gdn(x), rtol=0, atol=0)
