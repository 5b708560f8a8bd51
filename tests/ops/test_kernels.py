"""archs/backends.py and archs/ops/common.py: optional kernel imports, the once-per-device backward probe,
the fallbacks the mixers take when a kernel cannot serve a call, and the shared initialisers."""

import math
import sys
import types

import pytest
import torch
from helpers.stand_ins import REFUSAL, RefusingBackward, install_kernel

from archbench.archs import backends, create, get, list_archs
from archbench.archs.backends import backward_refusal, optional_kernel
from archbench.archs.ops.common import a_log_uniform, dt_bias_init, s4d_real_a_log, state_dtype

MISSING = "archbench_test_no_such_kernel_module"


pytestmark = pytest.mark.usefixtures("fresh_kernel_caches")  # no test's fake answer outlives it


def test_optional_kernel_found() -> None:
    assert optional_kernel("math", "sqrt") == (math.sqrt, None)


def test_optional_kernel_missing_module_gives_reason_and_is_cached(monkeypatch) -> None:
    fn, reason = optional_kernel(MISSING, "fn")
    assert fn is None
    assert MISSING in reason and "ModuleNotFoundError" in reason
    # Installing the module now changes nothing: the first answer is cached ...
    fake = types.ModuleType(MISSING)
    fake.fn = lambda: 1
    monkeypatch.setitem(sys.modules, MISSING, fake)
    assert optional_kernel(MISSING, "fn") == (None, reason)
    # ... until the cache is cleared.
    backends.clear_caches()
    assert optional_kernel(MISSING, "fn") == (fake.fn, None)


def test_optional_kernel_catches_non_import_errors(tmp_path, monkeypatch) -> None:
    # A CUDA extension built for another driver fails with OSError, not ImportError.
    (tmp_path / "archbench_test_broken_ext.py").write_text("raise OSError('libcudart.so.99: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fn, reason = optional_kernel("archbench_test_broken_ext", "fn")
    assert fn is None and "OSError" in reason and "libcudart" in reason


def test_optional_kernel_missing_attribute() -> None:
    fn, reason = optional_kernel("math", "no_such_function")
    assert fn is None and "AttributeError" in reason


def test_backward_refusal_returns_first_line_and_probes_once_per_device() -> None:
    calls = []

    def refusing_probe() -> None:
        calls.append(1)
        raise RuntimeError("Triton >= 3.4.0 on Hopper GPUs produces incorrect results (see #640)\ndetails")

    for _ in range(3):
        assert backward_refusal("k", "cuda:0", refusing_probe) == (
            "Triton >= 3.4.0 on Hopper GPUs produces incorrect results (see #640)")
    assert len(calls) == 1
    backward_refusal("k", "cuda:1", refusing_probe)  # another device is probed afresh
    assert len(calls) == 2


def test_backward_refusal_none_when_probe_passes() -> None:
    calls = []

    def probe() -> None:
        calls.append(1)
        x = torch.ones(3, requires_grad=True)
        (2 * x).sum().backward()
        assert torch.equal(x.grad, torch.full((3,), 2.0))

    with torch.no_grad():  # the probe still gets its backward
        assert backward_refusal("k", "cpu", probe) is None
        assert backward_refusal("k", "cpu", probe) is None
    assert len(calls) == 1


def test_backward_refusal_keys_by_name() -> None:
    def passing() -> None:
        pass

    def failing() -> None:
        raise ValueError("")

    assert backward_refusal("a", "cpu", passing) is None
    assert backward_refusal("b", "cpu", failing) == "ValueError"  # an empty message names the error


def _kernels(with_probe: bool = False) -> list[tuple[str, str, str, str]]:
    """(arch, backend, module, attr) of every optional kernel of every registered mixer (`Mixer.kernels`);
    only those that probe their backward if `with_probe`."""
    return [(arch, backend, kernel.module, kernel.attr) for arch in list_archs()
            for backend, kernel in get(arch).kernels.items() if kernel.probe is not None or not with_probe]


def test_every_kernel_mixer_is_listed() -> None:
    """The tables below come from the registry: every mixer with a fused kernel is in them."""
    fla = {"mamba2", "rwkv", "linear_attention", "retnet", "gla", "deltanet", "gated_deltanet", "kda",
           "rwkv7"}
    assert {arch for arch, *_ in _kernels(with_probe=True)} >= fla  # fla's kernels probe their backward
    assert {arch for arch, *_ in _kernels()} >= fla | {"mamba", "mamba3", "swa"}


def _refusing_fla(*args, **kwargs):
    v = kwargs["v"] if "v" in kwargs else args[2]
    return RefusingBackward.apply(v * 1.0), None


@pytest.mark.parametrize("arch,backend,module,attr", _kernels(with_probe=True))
def test_mixer_trains_on_reference_when_fla_refuses_backward(arch, backend, module, attr,
                                                             monkeypatch) -> None:
    install_kernel(monkeypatch, arch, module, attr, _refusing_fla)
    torch.manual_seed(0)
    mixer = create(arch, d_model=32)
    x = torch.randn(2, 21, 32, requires_grad=True)
    y = mixer.set_backend(backend)(x)
    y.sum().backward()  # would raise, had the fla path run
    assert mixer.last_backend == f"chunked ({backend} backward refused: {REFUSAL})"
    torch.testing.assert_close(y, mixer.set_backend("chunked")(x))


# -- archs/ops/common.py: the plumbing the mixers share -------------------------------------------------
@pytest.mark.parametrize("arch,backend,module,attr", _kernels())
def test_float64_runs_the_reference_and_says_so(arch, backend, module, attr, monkeypatch) -> None:
    def no_float64_build(*args, **kwargs):
        raise AssertionError("the fused kernel was called with float64 input")

    install_kernel(monkeypatch, arch, module, attr, no_float64_build)
    torch.manual_seed(0)
    mixer = create(arch, d_model=32).double().set_backend(backend)
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    y = mixer(x)
    reference = mixer.reference_backend
    assert mixer.last_backend == f"{reference} ({backend} has no float64 kernels)"
    torch.testing.assert_close(y, mixer.set_backend(reference)(x), rtol=0, atol=0)


def test_backward_is_probed_only_when_a_gradient_is_needed(monkeypatch) -> None:
    calls = []

    def counting_fla(*args, **kwargs):
        calls.append(1)
        v = kwargs["v"] if "v" in kwargs else args[2]
        return RefusingBackward.apply(v * 1.0), None

    install_kernel(monkeypatch, "mamba2", "fla.ops.simple_gla", "chunk_simple_gla", counting_fla)
    mixer = create("mamba2", d_model=32).set_backend("fla")
    with torch.no_grad():
        mixer(torch.randn(1, 5, 32))
    assert mixer.last_backend == "fla" and len(calls) == 1  # the forward only, no probe
    mixer(torch.randn(1, 5, 32))  # parameters need gradients: probe (refused), then the reference
    assert mixer.last_backend.startswith("chunked (fla backward refused") and len(calls) == 2


@pytest.mark.parametrize("arch", list_archs())
def test_kernels_report_why_they_cannot_run_on_cpu(arch: str) -> None:
    cls = get(arch)
    assert set(cls.kernels) <= set(cls.backends) and cls.backends[-1] not in cls.kernels
    for backend in cls.kernels:
        assert "needs a CUDA device" in cls.backend_unavailable(backend, "cpu")
        assert backend not in cls.available_backends("cpu")


def test_state_dtype_is_at_least_float32() -> None:
    assert [state_dtype(d) for d in (torch.bfloat16, torch.float16, torch.float32, torch.float64)] == [
        torch.float32, torch.float32, torch.float32, torch.float64]


def test_dt_bias_init_puts_softplus_in_range_and_a_inits_are_negative() -> None:
    torch.manual_seed(0)
    dt = torch.nn.functional.softplus(dt_bias_init(1000, 0.001, 0.1))
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert dt.log().std() > 1.0  # log-uniform over two decades, not clustered
    assert torch.equal(-s4d_real_a_log(3, 4).exp(), -torch.arange(1.0, 5.0).repeat(3, 1))
    A = -a_log_uniform(100).exp()
    assert A.min() >= -16 and A.max() <= -1
