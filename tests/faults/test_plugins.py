"""Plugins: the README's example plugin loads through its entry point and passes the conformance
suite; a broken plugin warns and is skipped; ARCHBENCH_DISABLE_PLUGINS turns loading off; a plugin
whose `__init__` hangs gets a timeout in `archbench list` and `check`, which go on.

The README's plugin is "installed" as a dist-info folder on PYTHONPATH (what pip would write), and
each of its cases runs in a fresh interpreter, so the registry of this test process stays untouched;
the hanging plugin is registered in this process for the duration of its test.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT
from helpers.linear_attention_fixture import LinearAttention

import archbench.bench.cli as cli_module
from archbench.archs import MIXERS
from archbench.archs.registry import Origin
from archbench.bench.conformance import CHECKS

tomllib = pytest.importorskip("tomllib")
README = ROOT / "README.md"

PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from archbench.archs import MIXERS, list_archs
    names = list_archs()
out = {"names": names, "warnings": [str(w.message) for w in caught]}
if "ema" in names:
    from archbench.bench.conformance import run_checks
    out["origin"] = str(MIXERS.origin("ema"))
    out["verdicts"] = {v.check: v.status for v in run_checks("ema")}
print(json.dumps(out))
"""


def readme_block(language: str, after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)


def install_fake_dist(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[archbench.archs]\n{lines}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The README's plugin, plus two broken ones: one whose import fails, one calling sys.exit()."""
    project = tomllib.loads(readme_block("toml", "archbench_ema.py"))
    module = project["tool"]["setuptools"]["py-modules"][0]
    (tmp_path / f"{module}.py").write_text(readme_block("python", "archbench_ema.py"))
    install_fake_dist(tmp_path, project["project"]["name"], project["project"]["version"],
                      project["project"]["entry-points"]["archbench.archs"])
    (tmp_path / "archbench_broken.py").write_text("raise ImportError('needs a library that is not here')\n")
    install_fake_dist(tmp_path, "archbench-broken", "0.0.1", {"broken": "archbench_broken"})
    (tmp_path / "archbench_exits.py").write_text("import sys\nsys.exit('this plugin needs a GPU')\n")
    install_fake_dist(tmp_path, "archbench-exits", "0.0.1", {"exits": "archbench_exits"})
    return tmp_path


def probe(site: Path, **env: str) -> dict:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    done = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_readme_plugin_registers_and_passes_the_suite(site: Path) -> None:
    out = probe(site)
    assert "ema" in out["names"] and "attention" in out["names"]
    assert out["origin"] == "plugin archbench-ema 0.1.0"
    assert set(out["verdicts"].values()) <= {"pass", "skip"}, out["verdicts"]
    assert out["verdicts"]["parallel_equals_recurrent"] == "pass"


def test_broken_plugin_warns_and_is_skipped(site: Path) -> None:
    out = probe(site)
    assert "broken" not in out["names"]
    assert any("skipping mixer plugin 'broken'" in w for w in out["warnings"]), out["warnings"]
    assert "exits" not in out["names"] and "attention" in out["names"]  # sys.exit() ends nothing
    assert any("skipping mixer plugin 'exits' (archbench_exits): SystemExit: this plugin needs a GPU"
               in w for w in out["warnings"]), out["warnings"]


def test_disable_switch_turns_plugins_off(site: Path) -> None:
    out = probe(site, ARCHBENCH_DISABLE_PLUGINS="1")
    assert "ema" not in out["names"] and "attention" in out["names"]
    assert out["warnings"] == []


# -- a plugin that hangs: list and check end at their time limit --------------------------------------------
class HangsInInit(LinearAttention):
    def __init__(self, d_model, cfg):
        super().__init__(d_model, cfg)
        while True:
            time.sleep(0.01)


def test_list_gives_a_hanging_plugin_a_timeout_row_and_lists_the_rest(cli, monkeypatch) -> None:
    monkeypatch.setattr(cli_module, "LIST_TIME_LIMIT_S", 0.5)  # the default, shortened
    monkeypatch.setenv("COLUMNS", "300")  # one line per row
    with MIXERS.registered("test_hangs", HangsInInit, Origin("plugin", "archbench-hangs", "0.1")):
        started = time.monotonic()
        code, out, err = cli("list", "[at]*")
    assert code == 0 and time.monotonic() - started < 30, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "error: timeout: exceeded 0.5 s" in rows["test_hangs"] and "attention" in rows


def test_check_fails_a_hanging_plugin_at_its_time_limit(cli) -> None:
    with MIXERS.registered("test_hangs", HangsInInit):
        started = time.monotonic()
        code, out, _ = cli("check", "test_hangs", "--time-limit", "1")
    assert code == 1 and time.monotonic() - started < 30
    lines = out.strip().splitlines()
    assert lines[0] == "FAIL  test_hangs  shape_and_gradients: timeout: all the checks exceeded 1 s"
    assert all(line.endswith("not run: the time limit was reached") for line in lines[1:-1])
    assert len(lines) == 1 + len(CHECKS) and lines[-1] == f"{len(CHECKS)} check(s) failed"
