"""The built-in mixers' parallel (chunked) and recurrent forms agree to 1e-10 relative in float64, at the
lengths that cross their chunk boundaries and after a prefill that crosses one.

The conformance suite holds every mixer, plugins included, to its PARITY_TOL (1e-6), the bar a plugin
written in another style must clear; the built-ins are exact reformulations of one recurrence, so they
are held here to the bar that says so (their float64 differences are rounding, around 1e-15), and a
built-in whose forms drift apart by more than rounding fails here before it would fail there.
"""

import pytest

from archbench.archs import BUILTINS
from archbench.bench import conformance

EXACT = 1e-10


@pytest.mark.parametrize("check", ["parallel_equals_recurrent", "prefill_then_step"])
@pytest.mark.parametrize("arch", BUILTINS)
def test_forms_agree_to_rounding(arch: str, check: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conformance, "PARITY_TOL", EXACT)
    conformance.CHECKS[check](arch)  # raises AssertionError naming the length and the figure
