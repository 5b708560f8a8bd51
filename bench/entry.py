"""The `archbench` console command's entry point, kept free of heavy imports.

The CLI imports torch (a second or more) once its options have parsed (bench/cli.py `heavy_imports`).
A Ctrl-C in that time would raise KeyboardInterrupt inside torch's (or numpy's) import and print a
traceback — or worse, leave a C extension half initialised, so that the import fails with some other
error. So while those modules import (`ctrl_c_exits`), SIGINT exits at once with one line and status
130; after that, Ctrl-C is a KeyboardInterrupt again, which the CLI's `main` turns into the same line
(and the run loop into "rerun to resume").
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"archbench: interrupted\n")
    os._exit(130)  # nothing to clean up yet: no row store is open, no cell has run


@contextlib.contextmanager
def ctrl_c_exits() -> Iterator[None]:
    """Within the block, Ctrl-C ends the process at once with one line (exit status 130)."""
    quick_exit = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not if SIGINT is ignored
    if quick_exit:
        signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        if quick_exit:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    with ctrl_c_exits():
        from archbench.bench.cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
