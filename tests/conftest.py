"""Fixtures every folder of tests/ can take by name. Code the tests import (stand-in kernels, op
parity checks, test mixers, tiny cells and rows) is in tests/helpers/.

    ops/      each op of archs/ops/ against its sequential reference; kernels, RoPE, segments
    layers/   mixers and models: conformance over the registry, fast paths through stand-ins
    harness/  run loop, rows and store, grids, experiments, measurement, training, tasks, report
    cli/      the command line, its options, the README's commands
    faults/   full disks, damaged rows, Ctrl-C, plugins that break or exit
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
import torch

from archbench.archs import backends
from archbench.bench.cli import main
from archbench.bench.measure import peaks


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`archbench` in this process: `cli(*argv)` gives (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def fresh_kernel_caches() -> Iterator[None]:
    """No optional-kernel import or backward probe cached before the test, none left after it (so no
    test's stand-in kernel outlives it for the mixers)."""
    backends.clear_caches()
    yield
    backends.clear_caches()


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """torch on one thread for the test, the count restored after: tiny tensors, where extra threads only
    wait for each other on a loaded machine, and cells run in this process as each Ray cell runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def copy_bandwidth_1e9(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy-bandwidth probe answers 1e9 B/s at once (no half-second probes), from a fresh cache: a
    rate cached by an earlier test would bypass the stand-in."""
    monkeypatch.setattr(peaks, "_copy_bytes_per_s", lambda device, nbytes: 1e9)
    monkeypatch.setattr(peaks, "_copy_bandwidth", functools.cache(peaks._copy_bandwidth.__wrapped__))
