"""The conformance checks every mixer must pass, built-in or plugin.

One implementation serves both `pytest` (tests/layers/test_conformance.py parametrises over the registry) and
`archbench check NAME` (one verdict line per check). Each check builds fresh mixers at d_model=32, from
the `Config` defaults and from every entry of the class's `conformance_configs` — or, given `configs`
(`archbench check 'rglru(d_conv=2)'`), from those Config overrides only — raises `AssertionError` with
the measured figure on failure and `CheckSkipped` with the reason when it cannot apply here (a CUDA-only
fast path on a CPU machine, say).

Chunked parallel paths go wrong at chunk boundaries, so the parity checks run at the lengths around
the class's declared `chunk_size` Q: T = 1, Q-1, Q+1, 2Q+3 (1 and an odd 37 for a mixer without
chunks), and prefill a prefix that crosses a boundary (Q+1, and 2Q, which ends on one) before
stepping the rest, so that the state handed from the parallel path to `step` is non-zero.

Two checks keep a mixer from passing on a false claim:
  step_uses_only_its_state  `step` must be a function of (x_t, state) alone: stepping from a deep copy
      of the state after prompt A, taken before prompt B ran, gives what stepping right after A gave.
      A cache kept outside the state (a list on the module, an attribute of the mixer) fails it, and
      with it a `state_bytes` that reads a few bytes while decoding grows with n.
  linear_cost  a mixer declaring `complexity = "linear"` must cost O(T): its own `flops()`, and the
      work its forward does as counted op by op (the elements of every tensor each op returns, and
      the matmul / attention FLOPs torch counts), may grow at most LINEAR_GROWTH× from T to 4T (4×
      if linear, 16× if quadratic), and one `step` may cost at most STEP_GROWTH× more after 4T
      tokens than after T. Counting, not timing: the verdict is the same on a loaded machine.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # sees every aten op (FlopCounterMode's base)
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from archbench.archs import Mixer, create, get, tensor_bytes
from archbench.archs.isolation import guarded

D_MODEL = 32
ODD_LEN = 37  # the length for a mixer without chunks: odd, and past the widths of short convolutions
SPLIT = 20  # prefill length in the prefill-then-step check of a mixer without chunks
PARITY_TOL = 1e-6  # max |parallel - recurrent| / max |parallel| in float64
COST_LEN = 256  # T of the cost check (at least 4 chunks): linear costs are compared at T and 4T
LINEAR_GROWTH = 6.0  # T to 4T: a linear cost grows fourfold (less with fixed overheads), a quadratic 16-fold
STEP_GROWTH = 1.5  # a step after 4T tokens vs after T: equal for a fixed-size state, fourfold for a KV cache
PURE_STEPS = 3  # steps taken from the copied state in step_uses_only_its_state


class CheckSkipped(Exception):
    """The check does not apply here (this device, these packages); the message says why."""


@dataclass(frozen=True)
class Verdict:
    check: str
    status: str  # "pass" | "fail" | "skip"
    detail: str


def boundary_lengths(chunk_size: int | None) -> list[int]:
    """The lengths at which chunked code goes wrong: 1, Q-1, Q+1, 2Q+3 (1 and ODD_LEN without chunks)."""
    if chunk_size is None:
        return [1, ODD_LEN]
    Q = chunk_size
    return sorted({t for t in (1, Q - 1, Q + 1, 2 * Q + 3) if t >= 1})


def prefill_splits(chunk_size: int | None) -> tuple[list[int], int]:
    """Prefix lengths to prefill before stepping, and the total length: a prefix crossing a chunk
    boundary (Q+1) and one ending exactly on one (2Q), then steps up to 2Q+3."""
    if chunk_size is None:
        return [SPLIT], ODD_LEN
    Q = chunk_size
    return sorted({Q + 1, 2 * Q}), 2 * Q + 3


Configs = list[dict[str, Any]] | None  # Config overrides to check at; None: the defaults and the class's


def _configs(name: str, configs: Configs = None) -> list[dict[str, Any]]:
    """The Config overrides every check runs at: `configs` where given, else the defaults, then the
    class's extra ones."""
    return list(configs) if configs is not None else [{}, *get(name).conformance_configs]


def _label(cfg: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"


def _per_config(name: str, check: Callable[[str, dict[str, Any]], str], configs: Configs = None) -> str:
    """Run `check` at every config; a failure names the config it happened at."""
    details = []
    for cfg in _configs(name, configs):
        try:
            details.append(f"{check(name, cfg)} [{_label(cfg)}]")
        except AssertionError as exc:
            raise AssertionError(f"{exc} [{_label(cfg)}]") from None
    return "; ".join(details)


def _mixer(name: str, cfg: dict[str, Any] | None = None, seed: int = 0, dtype: torch.dtype = torch.float64,
           device: str = "cpu") -> Mixer:
    with torch.random.fork_rng(devices=[]):  # never disturb the caller's RNG
        torch.manual_seed(seed)
        return create(name, D_MODEL, **(cfg or {})).to(device=device, dtype=dtype)


def _input(batch: int = 2, seq_len: int = ODD_LEN, seed: int = 1, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq_len, D_MODEL, generator=g, dtype=torch.float64).to(device, dtype)


def _stepwise(mixer, x: torch.Tensor) -> torch.Tensor:
    """The recurrent mode over a whole sequence: the base class's token-by-token `prefill`, which a
    mixer's own (parallel) `prefill` overrides."""
    return Mixer.prefill(mixer, x)[0]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _longest(name: str) -> int:
    return max(boundary_lengths(get(name).chunk_size))


def _shape_and_gradients(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg, dtype=torch.float32)
    x = _input(seq_len=_longest(name), dtype=torch.float32).requires_grad_(True)
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


def check_shape_and_gradients(name: str, configs: Configs = None) -> str:
    return _per_config(name, _shape_and_gradients, configs)


def _parallel_equals_recurrent(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg)
    lengths = boundary_lengths(mixer.chunk_size)
    x = _input(seq_len=max(lengths))
    errs = {}
    with torch.no_grad():
        stepped = _stepwise(mixer, x)  # causal, so its first T outputs are those of x[:, :T]
        for T in lengths:
            errs[T] = _rel_err(stepped[:, :T], mixer(x[:, :T]))
    worst = max(errs, key=errs.get)
    assert errs[worst] <= PARITY_TOL, (f"max|forward - step| / max|forward| = {errs[worst]:.2e} > "
                                       f"{PARITY_TOL:.0e} at T={worst} (chunk_size={mixer.chunk_size})")
    return f"max rel diff {errs[worst]:.1e} at T={','.join(map(str, lengths))}, float64"


def check_parallel_equals_recurrent(name: str, configs: Configs = None) -> str:
    if not get(name).supports_step:
        raise CheckSkipped(f"{name} declares supports_step = False")
    return _per_config(name, _parallel_equals_recurrent, configs)


def _prefill_then_step(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg)
    splits, total = prefill_splits(mixer.chunk_size)
    x = _input(seq_len=total)
    errs = {}
    with torch.no_grad():
        y_full = mixer(x)
        for split in splits:
            y_pre, state = mixer.prefill(x[:, :split], max_len=total)
            tail = []
            for t in range(split, total):
                y_t, state = mixer.step(x[:, t], state)
                tail.append(y_t)
            errs[split] = _rel_err(torch.cat([y_pre, torch.stack(tail, 1)], 1), y_full)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= PARITY_TOL, (f"prefill({worst}) + step to {total} vs forward: rel diff "
                                       f"{errs[worst]:.2e} > {PARITY_TOL:.0e}")
    return f"prefill {'/'.join(map(str, splits))} + step to {total}: max rel diff {errs[worst]:.1e}"


def check_prefill_then_step(name: str, configs: Configs = None) -> str:
    if not get(name).supports_step:
        raise CheckSkipped(f"{name} declares supports_step = False")
    return _per_config(name, _prefill_then_step, configs)


def _fast_matches_reference(name: str, cfg: dict[str, Any], device: str, fast: list[str]) -> str:
    cls = get(name)
    reference = cls.backends[-1]
    dtype = torch.float32  # bf16 kernels are compared in float32 where they accept it
    lines = []
    for backend in fast:
        outs = {}
        for b in (reference, backend):
            mixer = _mixer(name, cfg, dtype=dtype, device=device).set_backend(b)
            x = _input(seq_len=_longest(name), dtype=dtype, device=device).requires_grad_(True)
            y = mixer(x)
            y.square().mean().backward()
            outs[b] = (y.detach(), x.grad, mixer.last_backend)
        y_err = _rel_err(outs[backend][0], outs[reference][0])
        g_err = _rel_err(outs[backend][1], outs[reference][1])
        assert y_err <= 1e-3 and g_err <= 1e-3, (f"{backend} vs {reference}: output {y_err:.1e}, "
                                                 f"grad {g_err:.1e}")
        lines.append(f"{outs[backend][2]} vs {reference}: out {y_err:.1e}, grad {g_err:.1e}")
    return ", ".join(lines)


def check_fast_matches_reference(name: str, configs: Configs = None) -> str:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cls = get(name)
    fast = [b for b in cls.available_backends(device) if b != cls.backends[-1]]
    if not fast:
        reasons = "; ".join(f"{b}: {cls.backend_unavailable(b, device)}" for b in cls.backends[:-1])
        raise CheckSkipped(f"no fast backend usable on {device} ({reasons or 'none declared'})")
    return _per_config(name, lambda n, cfg: _fast_matches_reference(n, cfg, device, fast), configs)


def _causality(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg)
    cut = prefill_splits(mixer.chunk_size)[0][0]  # inside the second chunk
    x = _input(seq_len=_longest(name))
    x2 = x.clone()
    x2[:, cut:] = _input(seq_len=x.shape[1], seed=7)[:, cut:]
    with torch.no_grad():
        leak = float((mixer(x)[:, :cut] - mixer(x2)[:, :cut]).abs().max())
    assert leak <= 1e-12, f"changing x[:, {cut}:] changed y[:, :{cut}] by {leak:.2e}"
    return f"changing x[:, {cut}:] moves y[:, :{cut}] by {leak:.0e}"


def check_causality(name: str, configs: Configs = None) -> str:
    return _per_config(name, _causality, configs)


def _state_bytes(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg, dtype=torch.float32)
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


def check_state_bytes(name: str, configs: Configs = None) -> str:
    return _per_config(name, _state_bytes, configs)


def _deterministic(name: str, cfg: dict[str, Any]) -> str:
    x = _input()
    with torch.no_grad():
        a, b = _mixer(name, cfg, seed=3)(x), _mixer(name, cfg, seed=3)(x)
    assert torch.equal(a, b), "same seed gave different outputs"
    return "same seed, identical output"


def check_deterministic(name: str, configs: Configs = None) -> str:
    return _per_config(name, _deterministic, configs)


def _step_uses_only_its_state(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg)
    prefix = prefill_splits(mixer.chunk_size)[0][0]
    total = prefix + PURE_STEPS
    a, b = _input(seq_len=total, seed=1), _input(seq_len=total, seed=5)

    def steps(x: torch.Tensor, state: Any) -> torch.Tensor:
        ys = []
        for t in range(prefix, total):
            y_t, state = mixer.step(x[:, t], state)
            ys.append(y_t)
        return torch.stack(ys, 1)

    with torch.no_grad():
        _, state_a = mixer.prefill(a[:, :prefix], max_len=total)
        saved = copy.deepcopy(state_a)  # before any step: `step` may update its state in place
        right_after_a = steps(a, state_a)
        _, state_b = mixer.prefill(b[:, :prefix], max_len=total)  # another prompt in between
        steps(b, state_b)
        from_copy = steps(a, saved)
    err = _rel_err(from_copy, right_after_a)
    assert err <= PARITY_TOL, (f"stepping from a copy of the state after prompt A, taken before prompt B "
                               f"ran, differs from stepping right after A by {err:.2e} (rel): step reads "
                               "something besides (x_t, state), e.g. a cache outside the state")
    return (f"prefill {prefix} + {PURE_STEPS} steps from a copied state, another prompt in between: "
            f"rel diff {err:.0e}")


def check_step_uses_only_its_state(name: str, configs: Configs = None) -> str:
    if not get(name).supports_step:
        raise CheckSkipped(f"{name} declares supports_step = False")
    return _per_config(name, _step_uses_only_its_state, configs)


class _Work(TorchDispatchMode):
    """Counts, for every aten op run inside it, the elements of the tensors it returns: up to a
    constant per op, the work and memory traffic of the code, whatever Python wrote it. A (T, T, D)
    intermediate shows up as T² D elements however it was built."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.elements += sum(t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


def _forward_work(mixer: Mixer, x: torch.Tensor) -> tuple[int, int]:
    """(elements produced, FLOPs torch counts: matmuls, attention) of one forward pass."""
    flops, work = FlopCounterMode(display=False), _Work()
    with torch.no_grad(), flops, work:
        mixer(x)
    return work.elements, flops.get_total_flops()


def _step_work(mixer: Mixer, x: torch.Tensor, context: int) -> int:
    """Elements produced by one `step` after `context` tokens of prefill."""
    with torch.no_grad():
        _, state = mixer.prefill(x[:, :context], max_len=context + 1)
        with _Work() as work:
            mixer.step(x[:, context], state)
    return work.elements


def _linear_cost(name: str, cfg: dict[str, Any]) -> str:
    mixer = _mixer(name, cfg, dtype=torch.float32)
    T = max(COST_LEN, 4 * (mixer.chunk_size or 0))
    growth = {"flops()": mixer.flops(4 * T) / max(mixer.flops(T), 1)}
    x = _input(batch=1, seq_len=4 * T + 1, dtype=torch.float32)
    (short_work, short_flops), (long_work, long_flops) = (_forward_work(mixer, x[:, :n]) for n in (T, 4 * T))
    growth["forward work"] = long_work / max(short_work, 1)
    if short_flops:  # matmul / attention FLOPs, where the forward has any
        growth["forward counted FLOPs"] = long_flops / short_flops
    for what, g in growth.items():
        assert g <= LINEAR_GROWTH, (f"declares complexity 'linear' but its {what} grows {g:.1f}x from T={T} "
                                    f"to {4 * T} (linear: ~4x, at most {LINEAR_GROWTH:g}x)")
    detail = ", ".join(f"{what} {g:.1f}x" for what, g in growth.items())
    if mixer.supports_step:
        g = _step_work(mixer, x, 4 * T) / max(_step_work(mixer, x, T), 1)
        assert g <= STEP_GROWTH, (f"declares complexity 'linear' but one step after {4 * T} tokens does "
                                  f"{g:.1f}x the work of one after {T} (a fixed-size state: ~1x, at most "
                                  f"{STEP_GROWTH:g}x): its decode cost grows with the context")
        detail += f", step {g:.2f}x"
    return f"T={T} -> {4 * T}: {detail}"


def check_linear_cost(name: str, configs: Configs = None) -> str:
    mixer = _mixer(name, _configs(name, configs)[0], dtype=torch.float32)
    if mixer.complexity != "linear":
        raise CheckSkipped(f"{name} declares complexity {mixer.complexity!r}")
    return _per_config(name, _linear_cost, configs)


def _one_thread(check: Callable[..., str]) -> Callable[..., str]:
    """Run `check` on one CPU thread. Its tensors are tiny (d_model 32), so extra threads only add
    synchronisation, and on a loaded machine each waits for the others to be scheduled."""

    @functools.wraps(check)
    def run(name: str, configs: Configs = None) -> str:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(name, configs)
        finally:
            torch.set_num_threads(threads)

    return run


CHECKS: dict[str, Callable[..., str]] = {name: _one_thread(fn) for name, fn in {
    "shape_and_gradients": check_shape_and_gradients,
    "parallel_equals_recurrent": check_parallel_equals_recurrent,
    "prefill_then_step": check_prefill_then_step,
    "fast_matches_reference": check_fast_matches_reference,
    "causality": check_causality,
    "state_bytes": check_state_bytes,
    "step_uses_only_its_state": check_step_uses_only_its_state,
    "linear_cost": check_linear_cost,
    "deterministic": check_deterministic,
}.items()}


def run_checks(name: str, time_limit_s: float | None = None, configs: Configs = None) -> list[Verdict]:
    """Every check on one registered mixer (at `configs` where given); a crash inside a check is a
    failure, not an abort.

    `time_limit_s` bounds all the checks together, by the run loop's per-cell alarm: a mixer that
    hangs (in its `__init__`, say) fails the check it hangs in, and the checks left fail unrun."""
    from archbench.bench.runs.cell import CellTimeout, time_limit

    verdicts: list[Verdict] = []
    try:
        with time_limit(time_limit_s):
            for check, fn in CHECKS.items():
                verdicts.append(_verdict(check, fn, name, configs))
    except CellTimeout as exc:
        left = list(CHECKS)[len(verdicts):]
        verdicts += [Verdict(c, "fail", f"timeout: all the checks {exc}" if i == 0 else
                             "not run: the time limit was reached") for i, c in enumerate(left)]
    return verdicts


def _verdict(check: str, fn: Callable[..., str], name: str, configs: Configs = None) -> Verdict:
    """One check's verdict, run with torch's settings and the signal handlers put back after it
    (archs/isolation.py): a check that changed them fails saying what it changed."""
    from archbench.bench.runs.cell import CellTimeout

    try:
        with guarded() as changed:
            verdict = Verdict(check, "pass", fn(name, configs))
    except CheckSkipped as exc:
        verdict = Verdict(check, "skip", str(exc))
    except AssertionError as exc:
        verdict = Verdict(check, "fail", str(exc))
    except (KeyboardInterrupt, CellTimeout):
        raise
    except BaseException as exc:  # a broken plugin (sys.exit() too) gets a verdict, not a traceback
        verdict = Verdict(check, "fail", f"{type(exc).__name__}: {exc}")
    if changed:
        return Verdict(check, "fail", f"it changed {'; '.join(changed)} (put back)")
    return verdict
