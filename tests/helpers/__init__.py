"""Code the test files share by import (pytest's fixtures are in tests/conftest.py instead).

`tests` is on sys.path (pyproject.toml: `pythonpath`), so a test file in any folder imports these as
`from helpers.op_parity import ...`:

    op_parity                 a fast op against its sequential reference, values and gradients
    stand_ins                 stand-ins for the optional CUDA kernels, so their plumbing runs on CPU
    linear_attention_fixture  a small chunked mixer, right and with its state carry broken
    lying_mixers_fixture      mixers that lie to the conformance suite
    interrupt_resume          Ctrl-C to a real `archbench run`, then the same command again
    runs                      tiny cells, a stand-in result and training config for run-loop tests
    rows                      rows built through the schema and written where `archbench report` reads
    disk                      filling a small real filesystem to a given free space
"""

import signal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: README.md, pyproject.toml, .ci/


def default_stop_signals() -> None:
    """A `preexec_fn` for a child `archbench` a test stops by a signal: SIGINT and SIGHUP back to their
    default. A test run started in the background inherits SIGINT ignored, and one under `nohup` SIGHUP
    ignored; archbench rightly leaves an ignored signal ignored, so the child would not stop."""
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
