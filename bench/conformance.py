"""The conformance checks every mixer must pass, built-in or plugin.

One implementation serves both `pytest` (tests/test_conformance.py parametrises over the registry) and
`archbench check NAME` (one verdict line per check). Each check builds a fresh mixer at d_model=32 from
its `Config` defaults, raises `AssertionError` with the measured figure on failure and `CheckSkipped`
with the reason when it cannot apply here (a CUDA-only fast path on a CPU machine, say).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from archbench.archs import Mixer, create, get, tensor_bytes

D_MODEL = 32
ODD_LEN = 37  # odd and not a multiple of any chunk size, so ragged last chunks get exercised
SPLIT = 20  # prefill length in the prefill-then-step check, and the causality cut
PARITY_TOL = 1e-6  # max |parallel - recurrent| / max |parallel| in float64


class CheckSkipped(Exception):
    """The check does not apply on this machine; the message says why."""


@dataclass(frozen=True)
class Verdict:
    check: str
    status: str  # "pass" | "fail" | "skip"
    detail: str


def _mixer(name: str, seed: int = 0, dtype: torch.dtype = torch.float64, device: str = "cpu"):
    with torch.random.fork_rng(devices=[]):  # never disturb the caller's RNG
        torch.manual_seed(seed)
        return create(name, D_MODEL).to(device=device, dtype=dtype)


def _input(batch: int = 2, seq_len: int = ODD_LEN, seed: int = 1, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq_len, D_MODEL, generator=g, dtype=torch.float64).to(device, dtype)


def _stepwise(mixer, x: torch.Tensor) -> torch.Tensor:
    """The recurrent mode over a whole sequence: the base class's token-by-token `prefill`, which a
    mixer's own (parallel) `prefill` overrides."""
    return Mixer.prefill(mixer, x)[0]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_shape_and_gradients(name: str) -> str:
    mixer = _mixer(name, dtype=torch.float32)
    x = _input(dtype=torch.float32).requires_grad_(True)
    y = mixer(x)
    assert y.shape == x.shape, f"output shape {tuple(y.shape)} != input shape {tuple(x.shape)}"
    assert torch.isfinite(y).all(), "output has non-finite values"
    (y.square().mean()).backward()
    missing = [n for n, p in mixer.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {', '.join(missing)}"
    bad = [n for n, p in mixer.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {', '.join(bad)}"
    n_params = sum(p.numel() for p in mixer.parameters())
    return f"shape {tuple(y.shape)}, finite, {n_params} parameters all get gradients"


def check_parallel_equals_recurrent(name: str) -> str:
    mixer = _mixer(name)
    if not mixer.supports_step:
        raise CheckSkipped(f"{name} declares supports_step = False")
    x = _input()
    with torch.no_grad():
        err = _rel_err(_stepwise(mixer, x), mixer(x))
    assert err <= PARITY_TOL, (f"max|forward - step| / max|forward| = {err:.2e} > {PARITY_TOL:.0e} "
                               f"(T={ODD_LEN})")
    return f"max rel diff {err:.1e} at T={ODD_LEN}, float64"


def check_prefill_then_step(name: str) -> str:
    mixer = _mixer(name)
    if not mixer.supports_step:
        raise CheckSkipped(f"{name} declares supports_step = False")
    x = _input()
    with torch.no_grad():
        y_pre, state = mixer.prefill(x[:, :SPLIT], max_len=ODD_LEN)
        tail = []
        for t in range(SPLIT, ODD_LEN):
            y_t, state = mixer.step(x[:, t], state)
            tail.append(y_t)
        err = _rel_err(torch.cat([y_pre, torch.stack(tail, 1)], 1), mixer(x))
    assert err <= PARITY_TOL, f"prefill({SPLIT}) + step vs forward: rel diff {err:.2e} > {PARITY_TOL:.0e}"
    return f"prefill {SPLIT} + step {ODD_LEN - SPLIT}: max rel diff {err:.1e}"


def check_fast_matches_reference(name: str) -> str:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cls = get(name)
    reference = cls.backends[-1]
    fast = [b for b in cls.available_backends(device) if b != reference]
    if not fast:
        reasons = "; ".join(f"{b}: {cls.backend_unavailable(b, device)}" for b in cls.backends[:-1])
        raise CheckSkipped(f"no fast backend usable on {device} ({reasons or 'none declared'})")
    # float32 on CPU; bf16 kernels are compared in float32 where they accept it.
    dtype = torch.float32
    lines = []
    for backend in fast:
        outs = {}
        for b in (reference, backend):
            mixer = _mixer(name, dtype=dtype, device=device).set_backend(b)
            x = _input(dtype=dtype, device=device).requires_grad_(True)
            y = mixer(x)
            y.square().mean().backward()
            outs[b] = (y.detach(), x.grad, mixer.last_backend)
        y_err = _rel_err(outs[backend][0], outs[reference][0])
        g_err = _rel_err(outs[backend][1], outs[reference][1])
        assert y_err <= 1e-3 and g_err <= 1e-3, (f"{backend} vs {reference}: output {y_err:.1e}, "
                                                 f"grad {g_err:.1e}")
        lines.append(f"{outs[backend][2]} vs {reference}: out {y_err:.1e}, grad {g_err:.1e}")
    return "; ".join(lines)


def check_causality(name: str) -> str:
    mixer = _mixer(name)
    x = _input()
    x2 = x.clone()
    x2[:, SPLIT:] = _input(seed=7)[:, SPLIT:]
    with torch.no_grad():
        leak = float((mixer(x)[:, :SPLIT] - mixer(x2)[:, :SPLIT]).abs().max())
    assert leak <= 1e-12, f"changing x[:, {SPLIT}:] changed y[:, :{SPLIT}] by {leak:.2e}"
    return f"changing x[:, {SPLIT}:] moves y[:, :{SPLIT}] by {leak:.0e}"


def check_state_bytes(name: str) -> str:
    mixer = _mixer(name, dtype=torch.float32)
    if mixer.supports_step:
        x = _input(batch=1, dtype=torch.float32)
        with torch.no_grad():
            state = mixer.init_state(1, ODD_LEN)
            for t in range(ODD_LEN):
                _, state = mixer.step(x[:, t], state)
        held, claimed = tensor_bytes(state), mixer.state_bytes(1, ODD_LEN)
        assert held == claimed, f"state_bytes(1, {ODD_LEN}) = {claimed} but the state holds {held} bytes"
    short, long = mixer.state_bytes(1, 1024), mixer.state_bytes(1, 4096)
    if mixer.complexity == "linear":  # an instance attribute: a hybrid with attention is quadratic
        assert short == long, f"linear mixer state grows with T: {short} B at 1k, {long} B at 4k"
    else:
        assert long > 2 * short, f"attention-like state should grow with T: {short} B at 1k, {long} B at 4k"
    return f"{short} B at T=1k, {long} B at T=4k (batch 1, float32)"


def check_deterministic(name: str) -> str:
    x = _input()
    with torch.no_grad():
        a, b = _mixer(name, seed=3)(x), _mixer(name, seed=3)(x)
    assert torch.equal(a, b), "same seed gave different outputs"
    return "same seed, identical output"


CHECKS: dict[str, Callable[[str], str]] = {
    "shape_and_gradients": check_shape_and_gradients,
    "parallel_equals_recurrent": check_parallel_equals_recurrent,
    "prefill_then_step": check_prefill_then_step,
    "fast_matches_reference": check_fast_matches_reference,
    "causality": check_causality,
    "state_bytes": check_state_bytes,
    "deterministic": check_deterministic,
}


def run_checks(name: str) -> list[Verdict]:
    """Every check on one registered mixer; a crash inside a check is a failure, not an abort."""
    verdicts = []
    for check, fn in CHECKS.items():
        try:
            verdicts.append(Verdict(check, "pass", fn(name)))
        except CheckSkipped as exc:
            verdicts.append(Verdict(check, "skip", str(exc)))
        except AssertionError as exc:
            verdicts.append(Verdict(check, "fail", str(exc)))
        except Exception as exc:  # a broken plugin should get a verdict, not a traceback
            verdicts.append(Verdict(check, "fail", f"{type(exc).__name__}: {exc}"))
    return verdicts
