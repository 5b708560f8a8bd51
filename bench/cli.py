"""The `archbench` command: list, check, run, report.

Bad input (an unknown mixer, task, suite or device, a malformed length, a corrupt result file) ends
with one line on stderr that names the valid choices and exit status 2 — never a traceback — and rows
already written stay on disk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from archbench.archs import MIXERS, UnknownNameError, list_archs, list_models
from archbench.bench.scaling import MODES

DTYPES = ["float32", "float64", "bfloat16", "float16"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _device(value: str) -> str:
    if value == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but no CUDA device is available here; choose from: cpu")
    if value not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {value!r}; choose from: cpu, cuda")
    return value


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from archbench.archs import create

    names = list_archs(args.pattern)
    if not names:
        raise UsageError(f"no architecture matches {args.pattern!r}; registered: {', '.join(list_archs())}")
    device = default_device()
    table = Table("name", "complexity", "origin", f"backends usable on {device}", "state bytes (1k / 4k)")
    for name in names:
        try:
            cls = MIXERS.get(name)
            mixer = create(name, 64)
            states = f"{mixer.state_bytes(1, 1024):,} / {mixer.state_bytes(1, 4096):,}"
            table.add_row(name, mixer.complexity, str(MIXERS.origin(name)),
                          ", ".join(cls.available_backends(device)), states)
        except Exception as exc:  # a broken plugin still gets a row
            table.add_row(name, "?", str(MIXERS.origin(name)), f"error: {exc}", "")
    Console().print(table)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from archbench.bench.conformance import run_checks

    for name in args.names:
        MIXERS.get(name)  # unknown names fail before any work
    failed = 0
    for name in args.names:
        for v in run_checks(name):
            print(f"{v.status.upper():4}  {name}  {v.check}: {v.detail}")
            failed += v.status == "fail"
    print(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


def _names(value: str, valid: list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(value)}; "
                         f"choose from: {', '.join(valid)}")
    return names


def _lengths(value: str, what: str = "--lens") -> list[int]:
    """'512,1024,4k' -> [512, 1024, 4096]; anything else is a usage error. Also parses the other
    positive-integer options (--d-model, --batch), whose errors name them instead of lengths."""
    noun = "length" if what == "--lens" else "value"
    out = []
    for item in value.split(","):
        text = item.strip().lower()
        scale = 1024 if text.endswith("k") else 1
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit() or int(digits) <= 0:
            raise UsageError(f"malformed {noun} {item.strip()!r} in {what}; {what} takes positive integers, "
                             "e.g. 512,1024,4k")
        out.append(int(digits) * scale)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from archbench.bench import runner, suites
    from archbench.tasks import list_tasks

    if args.suite not in suites.SUITES:
        raise UsageError(f"unknown suite {args.suite!r}; choose from: {', '.join(suites.SUITES)}")
    options = suites.Options(
        device=_device(args.device),
        archs=_names(args.archs, list_models(), "architecture") if args.archs else None,
        lens=_lengths(args.lens) if args.lens else None,
        modes=_names(args.modes, list(MODES), "mode") if args.modes else None,
        d_models=_lengths(args.d_model, "--d-model") if args.d_model else None,
        batch=_lengths(args.batch, "--batch")[0] if args.batch else None,
        dtype=_names(args.dtype, DTYPES, "dtype")[0] if args.dtype else None,
        task=_names(args.task, list_tasks(), "task")[0] if args.task else None,
        seed=args.seed,
    )
    cells = suites.build(args.suite, options)
    console = Console(stderr=True)
    console.print(f"archbench run {args.suite}: {len(cells)} cells on {options.device}, "
                  f"rows -> {args.out}/raw/")
    try:
        rows = runner.run_cells(cells, Path(args.out), time_limit_s=args.time_limit, budget_s=args.budget,
                                console=console)
    except KeyboardInterrupt:
        console.print("interrupted: finished cells are saved; rerun the same command to resume")
        return 130
    if rows:  # a log file is not a terminal: give the table room rather than 80 columns
        out = Console()
        out = out if out.is_terminal else Console(width=160)
        for table in runner.summary_tables(rows):
            out.print(table)
    else:
        console.print("nothing to do: every cell is already in the row store")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from archbench.bench.report import write_report

    results = Path(args.results)
    if not (results / "raw").is_dir():
        raise UsageError(f"no raw rows at {results / 'raw'}; run 'archbench run SUITE --out {results}' first")
    readme = Path(args.readme) if args.readme else None
    written = write_report(results, readme=readme)
    print(f"wrote {len(written)} files under {results}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered mixers, their complexity, origin and usable backends")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'mamba*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", help="run the conformance checks on registered mixers")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run a suite of cells, appending rows to OUT/raw/ (resumable)")
    p.add_argument("suite", help="quick | scaling | retrieval | full")
    p.add_argument("--archs", help="comma-separated mixer names (default: the suite's)")
    p.add_argument("--lens", help="comma-separated sequence lengths, e.g. 512,1024,4k")
    p.add_argument("--modes", help="comma-separated: prefill, train, decode")
    p.add_argument("--d-model", "--d-models", dest="d_model", help="model width(s), comma-separated")
    p.add_argument("--batch", help="batch size")
    p.add_argument("--dtype", help=f"one of: {', '.join(DTYPES)} (default: float32 on cpu, bfloat16 on cuda)")
    p.add_argument("--task", help="retrieval task (default: mqar)")
    p.add_argument("--device", default=default_device(), help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", default="results", help="results folder; rows go to OUT/raw/*.jsonl")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds per cell before it times out (default: 120 scaling, 3600 retrieval)")
    p.add_argument("--budget", type=float, default=1.0, help="seconds of timed repeats per cell")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="regenerate tables and plots in RESULTS from RESULTS/raw")
    p.add_argument("--results", default="results")
    p.add_argument("--readme", default=None, help="also refresh the tables between markers in this README")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from archbench.bench.store import CorruptResultError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, UnknownNameError, CorruptResultError) as exc:
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the run loop (which says how to resume): no traceback
        print("archbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
