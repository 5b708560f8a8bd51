"""Conformance cannot be fooled: a decode cache kept outside the state, and a `linear` claim
with a quadratic forward or `flops()`, pass every check the suite had before, and fail the new ones;
every built-in passes them (tests/layers/test_conformance.py runs every check on every registered mixer)."""

import pytest
from helpers.lying_mixers_fixture import (
    ListCacheAttention,
    PairwiseFormOnly,
    PairwiseLinearAttention,
    QuadraticFlopsOnly,
)

from archbench.archs import MIXERS
from archbench.bench.conformance import run_checks

NAME = "test_liar"
NEW_CHECKS = {"step_uses_only_its_state", "linear_cost"}


def failures(cls: type) -> dict[str, str]:
    with MIXERS.registered(NAME, cls):
        verdicts = run_checks(NAME)
    assert {v.check for v in verdicts} >= NEW_CHECKS
    return {v.check: v.detail for v in verdicts if v.status == "fail"}


def test_a_kv_cache_outside_the_state_fails_both_new_checks() -> None:
    failed = failures(ListCacheAttention)
    assert set(failed) == NEW_CHECKS, failed  # every older check is fooled: state_bytes reads 4 B
    assert "cache outside the state" in failed["step_uses_only_its_state"]
    assert "step after" in failed["linear_cost"] or "forward" in failed["linear_cost"]


@pytest.mark.parametrize("cls, what", [
    (PairwiseLinearAttention, "flops()"),  # both lies; flops() is checked first
    (PairwiseFormOnly, "forward work"),  # the (B, T, T, D) forward, with a linear flops() to hide it
    (QuadraticFlopsOnly, "flops()"),  # a right chunked forward whose own flops() say T²
])
def test_a_linear_claim_that_grows_faster_than_T_fails_linear_cost(cls, what: str) -> None:
    failed = failures(cls)
    assert set(failed) == {"linear_cost"}, failed
    assert f"declares complexity 'linear' but its {what} grows" in failed["linear_cost"]


def test_check_command_fails_the_liars(cli) -> None:
    with MIXERS.registered(NAME, ListCacheAttention):
        code, out, _ = cli("check", NAME)
    assert code == 1
    assert f"FAIL  {NAME}  step_uses_only_its_state" in out and f"FAIL  {NAME}  linear_cost" in out
