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

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: README.md, pyproject.toml, .ci/
