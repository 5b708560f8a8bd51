"""What registered code (a plugin's mixer above all) may not leave behind for the code that runs after
it: torch's process-wide settings and the signal handlers.

Cells of a sweep run one after another in one process (the local executor) or in reused Ray workers,
so a mixer that calls `torch.set_num_threads(1)` or `torch.set_grad_enabled(False)` in its `__init__`,
or sets Ctrl-C to be ignored, would otherwise change every later cell: one-thread figures in rows
that record two threads, train cells of other mixers failing for want of gradients, a sweep that
Ctrl-C no longer stops. `guarded()` takes the state before a block and puts it back after it, and
tells what the block changed: the registry guards each plugin's import with it, the run loop each cell
(bench/runs/cell.py), `archbench list` and `check` each mixer.

The RNG is left out: every cell seeds its own generators.

Glossary
  state    one setting: (what it is called in a message, how to read it, how to set it)
  changes  "what: before -> after" for each setting the block left different
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


def _deterministic() -> tuple[bool, bool]:
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


def _attr(obj: Any, name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return (lambda: getattr(obj, name)), (lambda value: setattr(obj, name, value))


# (name in messages, read, write). Order matters when restoring: the float32 matmul precision and
# allow_tf32 are two views of one setting, so the precision is put back first and allow_tf32 after.
STATE: tuple[tuple[str, Callable[[], Any], Callable[[Any], None]], ...] = (
    ("torch threads (torch.set_num_threads)", torch.get_num_threads, torch.set_num_threads),
    ("grad mode (torch.set_grad_enabled)", torch.is_grad_enabled, torch.set_grad_enabled),
    ("default dtype (torch.set_default_dtype)", torch.get_default_dtype, torch.set_default_dtype),
    ("default device (torch.set_default_device)", torch.get_default_device, torch.set_default_device),
    ("deterministic algorithms (torch.use_deterministic_algorithms)", _deterministic, _set_deterministic),
    ("anomaly detection (torch.autograd.set_detect_anomaly)", torch.is_anomaly_enabled,
     torch.autograd.set_detect_anomaly),
    ("float32 matmul precision (torch.set_float32_matmul_precision)", torch.get_float32_matmul_precision,
     torch.set_float32_matmul_precision),
    ("torch.backends.cuda.matmul.allow_tf32", *_attr(torch.backends.cuda.matmul, "allow_tf32")),
    ("torch.backends.cudnn.enabled", *_attr(torch.backends.cudnn, "enabled")),
    ("torch.backends.cudnn.benchmark", *_attr(torch.backends.cudnn, "benchmark")),
    ("torch.backends.cudnn.deterministic", *_attr(torch.backends.cudnn, "deterministic")),
    ("torch.backends.cudnn.allow_tf32", *_attr(torch.backends.cudnn, "allow_tf32")),
)


def _signal_state() -> dict[str, Any]:
    """The handler of each signal a user stops a run with, and the blocked set; {} off the main thread
    (where Python can neither read nor set handlers that matter)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    state: dict[str, Any] = {f"{signal.Signals(s).name} handler": signal.getsignal(s) for s in SIGNALS}
    if hasattr(signal, "pthread_sigmask"):
        state["blocked signals (signal.pthread_sigmask)"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return state


def _restore_signals(state: dict[str, Any]) -> None:
    for s in SIGNALS:
        handler = state.get(f"{signal.Signals(s).name} handler")
        if handler is not None:  # None: set outside Python, which cannot be put back from here
            signal.signal(s, handler)
    if (mask := state.get("blocked signals (signal.pthread_sigmask)")) is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def snapshot() -> dict[str, Any]:
    return {**{name: read() for name, read, _ in STATE}, **_signal_state()}


def restore(state: dict[str, Any]) -> None:
    for name, read, write in STATE:
        if read() != state[name]:
            write(state[name])
    _restore_signals(state)


def _show(value: Any) -> str:
    if callable(value):  # a signal handler
        return getattr(value, "__name__", None) or repr(value)
    if isinstance(value, set):
        return "{" + ", ".join(sorted(signal.Signals(s).name for s in value)) + "}" if value else "{}"
    if isinstance(value, signal.Handlers):
        return value.name
    return str(value)


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f"{name} {_show(before[name])} -> {_show(after[name])}" for name in before
            if name in after and after[name] != before[name]]


@contextlib.contextmanager
def guarded() -> Iterator[list[str]]:
    """Run the block, then put torch's settings and the signal handlers back as they were before it;
    the list yielded is filled, after the block, with what it had changed ([] when nothing)."""
    before = snapshot()
    changes: list[str] = []
    try:
        yield changes
    finally:
        changes.extend(diff(before, snapshot()))
        restore(before)
