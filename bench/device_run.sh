#!/usr/bin/env bash
# One device call (issue: GPU suite). Runs from the repository root on a lent GPU machine, where
# nothing can reach a package index: archbench is put on the path without installing, optional
# wheels carried in .whl/ (e.g. fla-core) are unpacked first, then
#   1. the fast-path parity tests (pytest -m gpu),
#   2. the GPU scaling suite (prefill / train / decode, n = 1k ... 64k, batch 1 and 8, NVML energy),
# each step logged to $OUT, with a time budget that leaves the rows of finished cells in $OUT.
set -uo pipefail
OUT="${OUT:-runs/device}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
# archbench's folders as the namespace package they install as, without pip (no index here).
mkdir -p /tmp/ns/archbench
for pkg in archs tasks bench; do ln -sfn "$PWD/$pkg" "/tmp/ns/archbench/$pkg"; done
export PYTHONPATH="/tmp/ns:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 120 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider 2>&1 | tee "$OUT/parity.log"
timeout "${SUITE_SECONDS:-330}" python3 -m archbench.bench.cli run scaling --device cuda \
  --time-limit 60 --out "$OUT/results" 2>&1 | tail -n 60 | tee "$OUT/suite.log"
# The report is regenerated on the workstation from the rows: $OUT brings back at most 8 files.
