"""archs/kernels.py: optional kernel imports and the once-per-device backward probe."""

import math
import sys
import types

import pytest
import torch

from archbench.archs import create, get, kernels
from archbench.archs.kernels import backward_refusal, optional_kernel

MISSING = "archbench_test_no_such_kernel_module"


@pytest.fixture(autouse=True)
def fresh_caches():
    kernels.clear_caches()
    yield
    kernels.clear_caches()  # leave no test's fake answer behind for the mixers


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
    kernels.clear_caches()
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


REFUSAL = "Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results (see #640)"


class _RefusingBackward(torch.autograd.Function):
    """Identity whose backward raises like fla on Hopper with Triton < 3.7.1."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(REFUSAL + "\nPlease upgrade Triton")


def _refusing_fla(*args, **kwargs):
    v = kwargs["v"] if "v" in kwargs else args[2]
    return _RefusingBackward.apply(v * 1.0), None


@pytest.mark.parametrize("arch,module,attr", [("mamba2", "fla.ops.simple_gla", "chunk_simple_gla"),
                                              ("rwkv", "fla.ops.rwkv6", "chunk_rwkv6"),
                                              ("deltanet", "fla.ops.gated_delta_rule",
                                               "chunk_gated_delta_rule"),
                                              ("gated_deltanet", "fla.ops.gated_delta_rule",
                                               "chunk_gated_delta_rule"),
                                              ("kda", "fla.ops.kda", "chunk_kda")])
def test_mixer_trains_on_reference_when_fla_refuses_backward(arch, module, attr, monkeypatch) -> None:
    fake = types.ModuleType(module)
    setattr(fake, attr, _refusing_fla)
    for name in ("fla", "fla.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module, fake)
    monkeypatch.setattr(get(arch), "backend_unavailable", classmethod(lambda cls, b, d: None))  # no CUDA here
    torch.manual_seed(0)
    mixer = create(arch, d_model=32)
    x = torch.randn(2, 21, 32, requires_grad=True)
    y = mixer.set_backend("fla")(x)
    y.sum().backward()  # would raise, had the fla path run
    assert mixer.last_backend == f"chunked (fla backward refused: {REFUSAL})"
    torch.testing.assert_close(y, mixer.set_backend("chunked")(x))
