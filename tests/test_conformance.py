"""Every registered mixer — built-in or installed plugin — must pass every conformance check."""

import pytest

from archbench.archs import list_archs
from archbench.bench.conformance import CHECKS, CheckSkipped


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("arch", list_archs())
def test_conformance(arch: str, check: str) -> None:
    try:
        CHECKS[check](arch)
    except CheckSkipped as exc:
        pytest.skip(str(exc))
