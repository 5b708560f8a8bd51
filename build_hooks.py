"""Build hook named in pyproject.toml (`[tool.setuptools.cmdclass]`): pytest files that live in a package
folder stay out of the wheel. bench/test_benchmarks.py, bench/test_train_speed.py and their
bench/conftest.py sit in bench/ so that `pytest bench/ --benchmark-only` finds them, but they are not
part of `archbench.bench`.

setuptools copies every `*.py` of a listed package and has no setting that leaves a module out
(`exclude-package-data` filters data files only), hence this subclass of its `build_py`. It is not
installed itself: only the packages listed in pyproject.toml are.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from setuptools.command.build_py import build_py

NOT_SHIPPED = ("test_*.py", "conftest.py")  # pytest's default file pattern, and its per-folder hooks


class BuildPy(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules  # (package, module, file)
                if not any(fnmatch(Path(m[2]).name, pattern) for pattern in NOT_SHIPPED)]
