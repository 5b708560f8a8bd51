"""pytest-benchmark: archbench's chunked ops against the published pure-PyTorch forms of the same
recurrences (fla's naive ops, transformers' torch fallbacks), side by side in one fresh worker per pair.

One round is one call of the op and one of its peer on the same inputs (batch 1, 4 heads of 64, float32,
one torch thread), in an order that alternates round by round, after a warm-up round; the outputs are
checked equal (relative 1e-4) before any timing (bench/measure/peer_ops.py has the pairs and why one
process). `extra_info["ratio"]` is the op's median over the peer's median: below 1, archbench is
faster; both run in the allocator state op_timing fixes (bench/measure/op_timing.py). `prefill` runs
without gradients, `train` is forward and backward of the output's sum (a peer
whose autograd fails is skipped with the error), up to `TRAIN_MAX` tokens. The peers come with
`pip install 'archbench[peers]'`; a pair whose peer is absent is skipped. The whole set takes a while
(the token-loop peers are slow): select with `-k`.

    taskset -c 1 pytest bench/test_peer_speed.py --benchmark-only \\
        --benchmark-json=results/raw/pytest-benchmark/peer_speed.json
    ARCHBENCH_PEER_LENS=1024 pytest bench/test_peer_speed.py --benchmark-only -k retnet
"""

from __future__ import annotations

import os
import statistics

import pytest

from archbench.bench.measure.op_timing import allocator_state, one_at_a_time
from archbench.bench.measure.peer_ops import PEERS, PeerBackwardFails, PeerMissing, PeerWorker, peer_version

LENS = [int(n) for n in os.environ.get("ARCHBENCH_PEER_LENS", "1024,4096,16384").split(",")]
# Train only up to this length by default: the peers that loop over tokens or write their output slice by
# slice have a backward that grows like T² (autograd copies the whole output gradient at every slice),
# and fla's token-loop GLA had not finished its 16k train rounds after 30 minutes here.
TRAIN_MAX = int(os.environ.get("ARCHBENCH_PEER_TRAIN_MAX", "4096"))
CASES = [(mode, n) for mode in ("prefill", "train") for n in LENS if mode == "prefill" or n <= TRAIN_MAX]
ROUNDS = 7


@pytest.fixture(scope="module")
def workers():
    """One live worker at a time: a fresh one whenever the pair changes."""
    with one_at_a_time(PeerWorker) as get:
        yield get


@pytest.mark.parametrize(("mode", "n"), CASES)
@pytest.mark.parametrize("pair", list(PEERS), ids=lambda pair: pair.replace(" · ", " vs "))
def test_peer(benchmark, workers, pair: str, mode: str, n: int) -> None:
    worker = workers(pair)
    try:
        worker.round(mode, n)  # warm-up; checks the outputs agree
    except PeerMissing as exc:
        pytest.skip(str(exc))
    except PeerBackwardFails as exc:
        pytest.skip(f"the peer's backward fails: {exc}")
    rounds: list[tuple[float, float]] = []
    benchmark.group = f"peer {mode} n={n}"
    benchmark.pedantic(lambda: rounds.append(worker.round(mode, n)), rounds=ROUNDS, iterations=1)
    ours = statistics.median(r[0] for r in rounds)
    peer = statistics.median(r[1] for r in rounds)
    per_round = sorted(a / b for a, b in rounds)  # each round's own ratio: the spread of the figure
    quartiles = statistics.quantiles(per_round, n=4)
    spec = PEERS[pair]
    benchmark.extra_info.update(
        op=spec.op, peer=pair.split(" · ", 1)[1], package=spec.package, package_version=peer_version(pair),
        source=spec.source, mode=mode, seq_len=n, ours_median_s=ours, peer_median_s=peer, ratio=ours / peer,
        round_ratio_q1=quartiles[0], round_ratio_q3=quartiles[2],
        load_1m=round(os.getloadavg()[0], 2), threads=1, allocator=allocator_state())
