"""Shared by the local and the Ray run-loop tests: Ctrl-C (or SIGTERM) to a real `archbench run` ends
it with one line and exit 128 + signum, and the same command again gives every cell exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import default_stop_signals


def assert_interrupt_then_rerun_writes_each_cell_once(tmp_path: Path, *extra_args: str,
                                                      signum: int = signal.SIGINT) -> None:
    argv = [sys.executable, "-m", "archbench.bench.cli", "run", "scaling", "--models", "attention,mamba",
            "--depth", "1", "--modes", "prefill,decode", "--lens", "32,64,128", "--d-model", "32",
            "--budget", "0.3", *extra_args, "--out", str(tmp_path)]
    # SIG_DFL in the child (helpers.default_stop_signals): a test run launched in the background inherits
    # SIGINT ignored, and then Python installs no KeyboardInterrupt handler (the real Ctrl-C case has it).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
                            preexec_fn=default_stop_signals)
    raw = tmp_path / "raw"
    deadline = time.time() + 240
    while time.time() < deadline and not (raw.exists() and any(
            len(p.read_text().splitlines()) >= 2 for p in raw.glob("*.jsonl"))):
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err and "received" not in err, err[-2000:]  # nor a C++ crash dump
    assert err.strip().splitlines()[-1].endswith("finished cells are saved; rerun the same command to "
                                                 "resume"), err[-2000:]
    partial = sum(len(p.read_text().splitlines()) for p in raw.glob("*.jsonl"))
    assert 2 <= partial < 12
    done = subprocess.run(argv, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    keys = [json.dumps(json.loads(line)["spec"], sort_keys=True) for p in raw.glob("*.jsonl")
            for line in p.read_text().splitlines()]
    assert len(keys) == 12 and len(set(keys)) == 12
