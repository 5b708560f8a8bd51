"""archbench.tasks: synthetic in-context retrieval tasks, their contract and registry.

    import numpy as np
    from archbench.tasks import create, list_tasks
    task = create("mqar", seq_len=128, num_kv_pairs=8)    # unknown names or fields raise, listing choices
    inputs, targets = task.make(1000, np.random.default_rng(0))   # int64 (N, L); targets -100 if unscored
    longer = task.with_length(512)                        # the same task, tested beyond training length

External packages add tasks through the entry point group `archbench.tasks`.
"""

from __future__ import annotations

from typing import Any

from archbench.archs.registry import ConfigFieldError, Origin, Registry, UnknownNameError, build_config
from archbench.tasks.base import IGNORE, Task, TaskSpec

BUILTINS = ("mqar", "passkey", "copy", "selective_copy", "induction")
TASKS = Registry("task", "archbench.tasks", (f"archbench.tasks.{m}" for m in BUILTINS))
register = TASKS.register


def get(name: str) -> type[Task]:
    return TASKS.get(name)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a shell-style wildcard, built-ins and plugins alike."""
    return TASKS.names(pattern)


def create(name: str, **config_overrides: Any) -> Task:
    """A task whose `Config` is the defaults with `config_overrides` applied."""
    cls = get(name)
    return cls(build_config(cls.Config, f"task {name!r}", config_overrides))


__all__ = [
    "IGNORE", "Task", "TaskSpec", "register", "get", "create", "list_tasks", "TASKS", "Origin",
    "UnknownNameError", "ConfigFieldError",
]
