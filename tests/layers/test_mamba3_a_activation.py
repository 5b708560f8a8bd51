"""mamba3's A: −heavy_tail(dd_A) by default (mamba-ssm's main branch after 2.3.2.post1) and, with
`a_activation="softplus"`, −softplus(dd_A) as the mamba-ssm 2.3.x release and fla 0.6.0 compute it; both
floored at A_floor, both run by every path of the layer."""

import pytest
import torch
import torch.nn.functional as F

from archbench.archs import create
from archbench.archs.base import Mixer


def _released_heavy_tail(a: torch.Tensor) -> torch.Tensor:  # written out again: 1 + a, or 1 / (1 − a)
    return torch.where(a >= 0, 1 + a, 1 / (1 - a))


RELEASES = {"heavy_tail": _released_heavy_tail, "softplus": F.softplus}


def _mixer(activation: str, a_floor: float = 1e-4):
    torch.manual_seed(0)
    return create("mamba3", 32, a_activation=activation, A_floor=a_floor).double()


@pytest.mark.parametrize("activation", sorted(RELEASES))
def test_a_is_the_chosen_versions_formula(activation: str) -> None:
    m = _mixer(activation, a_floor=0.5)  # a floor high enough to bind at some tokens
    u = torch.randn(2, 23, 32, dtype=torch.float64)
    H, N, Di = m.n_head, m.cfg.d_state, m.d_inner
    dd_A = m.in_proj(u)[..., 2 * Di + 2 * N + H:2 * Di + 2 * N + 2 * H]  # [z, x, B, C, dd_dt, dd_A, ...]
    _, _, _, _, dt, la, *_ = m._split(u)
    want = -RELEASES[activation](dd_A).clamp(min=0.5)
    assert (RELEASES[activation](dd_A) < 0.5).any()  # the floor is exercised
    torch.testing.assert_close(la / dt, want, rtol=1e-12, atol=0)


def test_the_two_versions_differ_at_the_same_weights() -> None:
    """The choice matters: the same weights under the other A give other outputs."""
    heavy, soft = _mixer("heavy_tail"), _mixer("softplus")
    soft.load_state_dict(heavy.state_dict())
    x = torch.randn(2, 40, 32, dtype=torch.float64)
    with torch.no_grad():
        a, b = heavy(x), soft(x)
    assert float((a - b).abs().max() / a.abs().max()) > 1e-3


def test_softplus_parallel_equals_recurrent_to_1e10() -> None:
    m = _mixer("softplus")
    x = torch.randn(2, 131, 32, dtype=torch.float64)  # past two chunks of 64
    with torch.no_grad():
        y, stepped = m(x), Mixer.prefill(m, x)[0]
    assert float((y - stepped).abs().max() / y.abs().max()) <= 1e-10


def test_unknown_activation_names_the_choices() -> None:
    with pytest.raises(ValueError, match="heavy_tail, softplus"):
        create("mamba3", 32, a_activation="exp")
