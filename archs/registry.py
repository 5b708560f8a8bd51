"""A name -> class registry with entry-point plugins, shared by mixers and tasks.

Built-ins register with a decorator; external packages register through an entry point group
(`archbench.archs`, `archbench.tasks`). Plugins load lazily on first lookup, a plugin that fails to
import warns and is skipped (never fatal — `sys.exit()` at import included: only Ctrl-C stops the
loading), and `ARCHBENCH_DISABLE_PLUGINS=1` turns loading off — the pytest plugin model. A plugin
that changes torch's settings or a signal handler as it is imported (`torch.set_num_threads`, Ctrl-C
ignored) has them put back, with a warning naming it (archs/isolation.py). Each entry keeps where it
came from (built-in, or distribution + version) so result rows can carry it as provenance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import importlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from archbench.archs.isolation import guarded


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def unknown_name(what: str, names: str | Iterable[str], valid: Iterable[str], hint: str = "") -> str:
    """The one wording of every unknown name the user typed (a model, a mixer, a grid, a mode...):
    "unknown mixer 'mamba4'; valid: attention, mamba, ...; did you mean 'mamba3'?". `hint` follows the
    valid names (other forms the option takes); the guess is difflib's closest valid name, when one is
    close enough to be a typo rather than a different word."""
    names = [names] if isinstance(names, str) else list(names)
    valid = list(valid)
    guesses = [g for n in names for g in difflib.get_close_matches(n, valid, n=1, cutoff=0.6)]
    text = f"unknown {what} {', '.join(map(repr, names))}; valid: {', '.join(valid)}{hint}"
    return text + (f"; did you mean {', '.join(map(repr, dict.fromkeys(guesses)))}?" if guesses else "")


class ConfigFieldError(TypeError):
    """An unknown config field; the message lists the valid ones."""


@dataclass(frozen=True)
class Origin:
    """Where a registered class came from: `builtin`, or a plugin distribution and version."""

    kind: str  # "builtin" | "plugin"
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.kind == "builtin":
            return "built-in"
        return f"plugin {self.distribution or '?'} {self.version or ''}".strip()


class Registry:
    """Registered classes of one kind (`what`), plus the plugins of one entry point group."""

    def __init__(self, what: str, group: str, builtin_modules: Iterable[str] = ()):
        self.what = what
        self.group = group
        self._builtin_modules = tuple(builtin_modules)  # imported on first lookup; they self-register
        self._classes: dict[str, type] = {}
        self._origins: dict[str, Origin] = {}
        self._loading: Origin | None = None
        self._loaded = False

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.what} {name!r} is already registered by {self._origins[name]}")
            cls.name = name
            self._classes[name] = cls
            self._origins[name] = self._loading or Origin("builtin")
            return cls

        return deco

    def unregister(self, name: str) -> type:
        """Remove `name` (an unknown name raises, listing the valid ones) and return its class."""
        cls = self.get(name)
        del self._classes[name], self._origins[name]
        return cls

    @contextlib.contextmanager
    def registered(self, name: str, cls: type, origin: Origin | None = None) -> Iterator[type]:
        """`cls` registered as `name` for the duration of a `with` block (tests, notebooks); as if a
        plugin distribution had registered it, when `origin` says which."""
        self._load()  # so that loading the built-ins later cannot collide with, or outlive, the block
        self._loading = origin
        try:
            self.register(name)(cls)
        finally:
            self._loading = None
        try:
            yield cls
        finally:
            self.unregister(name)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        if os.environ.get("ARCHBENCH_DISABLE_PLUGINS", "") not in ("", "0"):
            return
        for ep in entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            self._loading = Origin("plugin", dist.name if dist else None, dist.version if dist else None)
            try:
                with guarded() as changed:  # torch's settings and signal handlers put back after it
                    obj = ep.load()  # importing the module runs its @register decorators
                    if isinstance(obj, type) and getattr(obj, "name", None) not in self._classes:
                        self.register(ep.name)(obj)  # an entry point may also name the class itself
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a broken plugin, sys.exit() too, must not take the suite down
                warnings.warn(
                    f"archbench: skipping {self.what} plugin {ep.name!r} ({ep.value}): "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                if changed:
                    warnings.warn(f"archbench: {self.what} plugin {ep.name!r} ({ep.value}) changed "
                                  f"{'; '.join(changed)} as it was imported; put back", RuntimeWarning,
                                  stacklevel=2)
            finally:
                self._loading = None

    # -- lookup ---------------------------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._classes if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> type:
        self._load()
        if name not in self._classes:
            raise UnknownNameError(unknown_name(self.what, name, self.names()))
        return self._classes[name]

    def origin(self, name: str) -> Origin:
        self.get(name)
        return self._origins[name]

    def plugin_versions(self) -> dict[str, str]:
        """`{name: "dist version"}` for every plugin entry, for result provenance."""
        self._load()
        return {n: str(o) for n, o in self._origins.items() if o.kind == "plugin"}


def build_config(config_cls: type, what: str, overrides: dict[str, Any]) -> Any:
    """`config_cls(**overrides)`, but an unknown field is an error that names the valid ones."""
    fields = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigFieldError(
            f"unknown config field(s) {', '.join(map(repr, unknown))} for {what}; valid: {', '.join(fields)}"
        )
    return config_cls(**overrides)
