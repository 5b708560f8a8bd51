"""The delta-rule op (archs/ops/delta_rule.py): the chunked WY form against the loop over time, for each
decay (none: DeltaNet, scalar: Gated DeltaNet, per channel: KDA), values and gradients; the one-token
update against the matrix definition; and the fla fast-path plumbing through a stand-in module."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from helpers.op_parity import assert_op_matches_reference

from archbench.archs import create
from archbench.archs.ops import delta_rule
from archbench.archs.ops.delta_rule import delta_rule_chunked, delta_rule_sequential, delta_rule_step

Q = 4  # a small chunk, so every length below spans several chunks and a ragged last one
B, H, K, V = 2, 3, 4, 5


def _inputs(T: int, decay: str, with_state: bool, seed: int = 0, decay_scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    f64 = {"dtype": torch.float64, "generator": g}
    q, v = torch.randn(B, T, H, K, **f64), torch.randn(B, T, H, V, **f64)
    k = F.normalize(torch.randn(B, T, H, K, **f64), dim=-1)  # as the layers give it
    beta = torch.rand(B, T, H, **f64)
    shape = {"none": None, "scalar": (B, T, H), "vector": (B, T, H, K)}[decay]
    lg = None if shape is None else -torch.rand(shape, **f64) * decay_scale  # log decay <= 0
    S0 = torch.randn(B, H, K, V, **f64) if with_state else None
    return [t.requires_grad_() for t in (q, k, v, beta, lg, S0) if t is not None]


def _ops(decay: str, with_state: bool, chunk: int = Q):
    """The chunked op and the reference, taking only the tensors `_inputs` made (no None in the list,
    so that every one of them gets a gradient)."""
    def call(fn, *a, **kw):
        q, k, v, beta, *rest = a
        lg = rest.pop(0) if decay != "none" else None
        S0 = rest.pop(0) if with_state else None
        return fn(q, k, v, beta, lg, S0, **kw)
    return (lambda *a: call(delta_rule_chunked, *a, chunk_size=chunk),
            lambda *a: call(delta_rule_sequential, *a))


@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("T", [1, Q - 1, Q + 1, 2 * Q + 3])
@pytest.mark.parametrize("decay", ["none", "scalar", "vector"])
def test_chunked_matches_sequential_values_and_gradients(decay: str, T: int, with_state: bool) -> None:
    chunked, reference = _ops(decay, with_state)
    assert_op_matches_reference(chunked, reference, _inputs(T, decay, with_state), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("decay", ["none", "scalar", "vector"])
def test_state_carried_between_blocks_of_chunks(decay: str, monkeypatch) -> None:
    """One chunk per block: the state must cross every block boundary, not only chunk boundaries."""
    monkeypatch.setattr(delta_rule, "_BLOCK_ELEMENTS", 1)
    chunked, reference = _ops(decay, True, chunk=3)
    assert_op_matches_reference(chunked, reference, _inputs(17, decay, True, seed=2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("decay", ["none", "scalar", "vector"])
def test_step_is_the_delta_rule(decay: str) -> None:
    """S_t = (I − β k kᵀ) Diag(α) S_{t-1} + β k vᵀ and o_t = S_tᵀ q / √K, as dense matrices per head."""
    *tensors, S0 = (t.detach() for t in _inputs(1, decay, True, seed=3))
    q, k, v, beta, *rest = (t[:, 0] for t in tensors)  # token 0: (B, H, ...)
    lg = rest[0] if decay != "none" else None
    o, S = delta_rule_step(q, k, v, beta, lg, S0)
    eye = torch.eye(K, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            alpha = torch.ones(K, dtype=torch.float64) if lg is None else lg[b, h].exp().expand(K)
            kk = torch.outer(k[b, h], k[b, h])
            write = beta[b, h] * torch.outer(k[b, h], v[b, h])
            want = (eye - beta[b, h] * kk) @ torch.diag(alpha) @ S0[b, h] + write
            torch.testing.assert_close(S[b, h], want, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(o[b, h], want.T @ q[b, h] / K**0.5, rtol=1e-12, atol=1e-12)


def test_decay_kinds_agree_where_they_coincide() -> None:
    """A scalar decay equals the same decay on every channel; no decay equals a zero log decay."""
    q, k, v, beta, lg, S0 = (t.detach() for t in _inputs(11, "scalar", True, seed=4))
    o_s, S_s = delta_rule_chunked(q, k, v, beta, lg, S0, chunk_size=Q)
    o_v, S_v = delta_rule_chunked(q, k, v, beta, lg[..., None].expand(B, 11, H, K), S0, chunk_size=Q)
    torch.testing.assert_close(o_s, o_v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S_s, S_v, rtol=1e-12, atol=1e-12)
    o_n, S_n = delta_rule_chunked(q, k, v, beta, None, S0, chunk_size=Q)
    o_0, S_0 = delta_rule_chunked(q, k, v, beta, torch.zeros_like(lg), S0, chunk_size=Q)
    torch.testing.assert_close(o_n, o_0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S_n, S_0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("decay", ["scalar", "vector"])
def test_strong_decay_stays_finite_and_matches(decay: str, dtype: torch.dtype) -> None:
    """Log decays down to -500 per token: every exponent the chunked form takes is <= 0, so nothing
    overflows, and its clamp at the dtype's floor changes nothing visible."""
    inputs = _inputs(2 * Q + 3, decay, True, decay_scale=500.0)
    q, k, v, beta, lg, S0 = (t.detach().to(dtype) for t in inputs)
    o, S = delta_rule_chunked(q, k, v, beta, lg, S0, chunk_size=Q)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    o_ref, S_ref = delta_rule_sequential(q, k, v, beta, lg, S0)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(o, o_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(S, S_ref, rtol=tol, atol=tol)


# -- the fla fast path, through a stand-in for fla that checks its calling conventions ---------------------
def _fake_fla(vector: bool):
    def kernel(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, **kwargs):
        B_, T_, H_, K_ = q.shape
        assert not kwargs, f"unexpected arguments {sorted(kwargs)}"
        assert g.shape == ((B_, T_, H_, K_) if vector else (B_, T_, H_)) and g.dtype == torch.float32
        assert (g <= 0).all() and ((beta > 0) & (beta < 1)).all()  # a log decay; β after the sigmoid
        assert torch.allclose(k.norm(dim=-1), torch.ones(()), atol=1e-3)  # normalised by the caller
        assert initial_state is None or initial_state.dtype == torch.float32
        o, S = delta_rule_sequential(q, k, v, beta, g, initial_state, scale=scale)
        return o, (S if output_final_state else None)
    return kernel


@pytest.fixture()
def fake_fla(monkeypatch, fresh_kernel_caches):
    for name in ("fla", "fla.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    for module, attr, vector in (("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", False),
                                 ("fla.ops.kda", "chunk_kda", True)):
        fake = types.ModuleType(module)
        setattr(fake, attr, _fake_fla(vector))
        monkeypatch.setitem(sys.modules, module, fake)


@pytest.mark.parametrize("arch", ["deltanet", "gated_deltanet", "kda"])
def test_fla_path_plumbing_matches_chunked(arch: str, fake_fla, monkeypatch) -> None:
    cls = type(create(arch, d_model=32))
    monkeypatch.setattr(cls, "backend_unavailable", classmethod(lambda c, b, d: None))  # no CUDA here
    torch.manual_seed(0)
    mixer = create(arch, d_model=32)
    x = torch.randn(2, 21, 32)
    with torch.no_grad():
        y_fla, st_fla = mixer.set_backend("fla").prefill(x)
        assert mixer.last_backend == "fla"
        y_ref, st_ref = mixer.set_backend("chunked").prefill(x)
    torch.testing.assert_close(y_fla, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(st_fla["S"], st_ref["S"], rtol=1e-5, atol=1e-5)
