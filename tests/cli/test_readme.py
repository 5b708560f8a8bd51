"""The README's commands: the two at the top are what CI runs and what a new user copies; every
`archbench` line in it and in docs/ parses with the real CLI (so a renamed option cannot leave them
stale); docs/usage.md names every option of `archbench run`; the README stays a guide."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import ROOT

from archbench.bench.cli import build_parser

README = (ROOT / "README.md").read_text()
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
USAGE = DOCS["docs/usage.md"]


def _first_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_top_of_readme_has_exactly_the_two_commands() -> None:
    main, tests = _first_block()
    assert main.startswith("pip install -e . && archbench run quick")
    assert tests == 'pip install -e ".[dev]" && pytest'


def test_ci_runs_the_readme_test_command_as_written() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _first_block()[1] in ci


def _archbench_commands(text: str = README) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                if part.startswith("archbench "):
                    commands.append(part)
    return commands


@pytest.mark.parametrize("command", [*_archbench_commands(), *(c for text in DOCS.values()
                                                                for c in _archbench_commands(text))])
def test_readme_archbench_commands_parse(command: str, capsys) -> None:
    argv = shlex.split(command)[1:]
    if argv in (["--version"], ["--help"]):  # answered by argparse, which exits 0
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(argv)
        assert done.value.code == 0 and capsys.readouterr().out.startswith(("archbench ", "usage:"))
        return
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_readme_mentions_some_archbench_commands() -> None:
    assert len(_archbench_commands()) >= 5


def test_usage_names_every_option_of_archbench_run() -> None:
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    options = [o for action in run._actions for o in action.option_strings if o.startswith("--")]
    missing = [o for o in options if o not in ("--help", "--d-models") and f"`{o}`" not in USAGE]
    assert missing == []


def test_readme_is_a_guide_with_the_headline_first() -> None:
    lines = README.splitlines()
    assert len(lines) <= 350
    first = "\n".join(lines[:40])
    assert "<!-- archbench:results:start -->" in first  # the generated headline figure and table
    assert re.search(r"!\[[^\]]*\]\(results/frontier_[^)]*_headline\.png\)", first), "no headline figure"


def test_readme_and_docs_links_resolve() -> None:
    """Every relative link in the README and docs/ names a file or folder of the repository (the
    results site is written by `archbench report` and may not be there before its first run)."""
    broken = []
    for name, text in {"README.md": README, **DOCS}.items():
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not target.startswith("results/site/") \
                    and not (base / target).exists():
                broken.append(f"{name}: {target}")
    assert broken == []
