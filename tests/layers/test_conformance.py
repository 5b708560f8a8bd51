"""Every registered mixer — built-in or installed plugin — must pass every conformance check; and the
checks catch a chunked path whose state is not carried across chunk boundaries."""

import pytest
import torch
from helpers.linear_attention_fixture import LinearAttention, LinearAttentionNoCarry

from archbench.archs import MIXERS, Mixer, list_archs
from archbench.bench.conformance import (
    CHECKS,
    ODD_LEN,
    CheckSkipped,
    boundary_lengths,
    prefill_splits,
    run_checks,
)

FIXTURE = "test_linear_attention"


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("arch", list_archs())
def test_conformance(arch: str, check: str) -> None:
    try:
        CHECKS[check](arch)
    except CheckSkipped as exc:
        pytest.skip(str(exc))


def test_lengths_straddle_the_chunk_boundaries() -> None:
    assert boundary_lengths(64) == [1, 63, 65, 131]
    assert boundary_lengths(1) == [1, 2, 5]  # no empty sequence
    assert boundary_lengths(None) == [1, ODD_LEN]
    splits, total = prefill_splits(8)
    assert splits == [9, 16] and total == 19  # one prefix crosses a boundary, one ends on it


def test_linear_attention_fixture_passes() -> None:
    with MIXERS.registered(FIXTURE, LinearAttention):
        verdicts = run_checks(FIXTURE)
    assert {v.status for v in verdicts} <= {"pass", "skip"}, [v for v in verdicts if v.status == "fail"]
    assert FIXTURE not in list_archs()  # unregistered again


def test_dropped_cross_chunk_state_fails_the_checks() -> None:
    # The bug is invisible at the one length the checks used to run (T=37 < chunk 64) ...
    torch.manual_seed(0)
    broken = LinearAttentionNoCarry(32, LinearAttentionNoCarry.Config()).double()
    x = torch.randn(1, ODD_LEN, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(broken(x), Mixer.prefill(broken, x)[0])  # parallel == token by token
    # ... and the boundary lengths catch it, in both parity checks.
    with MIXERS.registered(FIXTURE, LinearAttentionNoCarry):
        failed = {v.check: v.detail for v in run_checks(FIXTURE) if v.status == "fail"}
    assert set(failed) == {"parallel_equals_recurrent", "prefill_then_step"}, failed
    worst_len = int(failed["parallel_equals_recurrent"].split("at T=")[1].split()[0])
    assert worst_len > LinearAttention.chunk_size  # found past the first boundary


def test_check_command_exits_1_for_the_broken_fixture(cli) -> None:
    with MIXERS.registered(FIXTURE, LinearAttentionNoCarry):
        code, out, _ = cli("check", FIXTURE)
    assert code == 1
    assert f"FAIL  {FIXTURE}  parallel_equals_recurrent" in out and "check(s) failed" in out
