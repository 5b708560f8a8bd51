"""Shared by the fault tests: filling a small real filesystem (the `tiny_disk` fixture,
tests/faults/conftest.py) up to a given free space."""

from __future__ import annotations

import os
from pathlib import Path


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` up to `leave` bytes of free space."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
