"""What `pip install .` ships: every package folder of the code (a folder with an __init__.py under
archs/, tasks/ or bench/) is named in pyproject.toml's package list; setuptools installs only those, so
a folder left out is missing from a wheel while an editable install still finds it."""

from __future__ import annotations

import pytest
from helpers import ROOT


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    where = {package: ROOT / folder for package, folder in config["package-dir"].items()}
    found = {package + "".join(f".{part}" for part in init.parent.relative_to(root).parts)
             for package, root in where.items() for init in root.rglob("__init__.py")}
    assert found - listed == set(), f"package folders that a wheel would leave out: {sorted(found - listed)}"
    assert listed - found == set()
