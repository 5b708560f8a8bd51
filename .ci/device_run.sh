#!/usr/bin/env bash
# The GPU device check, run BY HAND on a lent GPU machine (not part of CI, not part of the package):
# one device call for the GPU suite. Runs from the repository root on that machine, where
# nothing can reach a package index: archbench goes on the path without pip, optional wheels
# carried in .whl/ (e.g. fla-core) are unpacked first, then
#   1. the device checks and fast-path parity tests (pytest -m gpu, and the conformance suite),
#   2. the GPU scaling suite (prefill / train / decode, n = 1k ... 64k, batch 1 and 8, NVML energy),
# each logged to $OUT; rows of finished cells land in $OUT/results/raw even if the time runs out.
# The report is regenerated on the workstation from those rows ($OUT brings back at most 8 files).
#
#   bash .ci/device_run.sh                                      # on the GPU machine
#   DEVICE=cpu SUITE_ARGS="--models attention --lens 256" bash .ci/device_run.sh   # a dry run here
set -uo pipefail
OUT="${OUT:-runs/device}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
# archbench's folders as the namespace package they install as (see pyproject.toml).
ns="$(mktemp -d)/ns"
mkdir -p "$ns/archbench"
for pkg in archs tasks bench; do ln -sfn "$PWD/$pkg" "$ns/archbench/$pkg"; done
export PYTHONPATH="$ns:${PYTHONPATH:-}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"; } \
  | tee "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m "gpu or not slow" tests/harness/test_gpu.py \
  tests/harness/test_generation.py tests/layers/test_conformance.py \
  -k "gpu or fast_matches_reference or cuda" 2>&1 | tee "$OUT/parity.log"
timeout "${SUITE_SECONDS:-330}" python3 -m archbench.bench.cli run scaling --device "$DEVICE" \
  --time-limit 60 --out "$OUT/results" ${SUITE_ARGS:-} 2>&1 | tail -n 80 | tee "$OUT/suite.log"
