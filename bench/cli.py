"""The `archbench` command: list, check, run, report.

Bad input (an unknown model, task, grid or device, a malformed length, a number out of its range, a
list where one value belongs, an empty value, a filter that selects no cell, a corrupt result file or
a row that does not fit the schema, an `--out` that cannot hold rows or that another run is writing, a
`--readme` without the markers, a results folder holding files archbench did not write) ends with one
line on stderr that names the valid choices and exit status 2 — never a traceback — and rows already
written stay on disk. A row that cannot be written (a full disk) stops the run with one line and exit
status 1, every row before it intact. SIGTERM and SIGHUP stop a command as Ctrl-C does (finished rows
kept), with one line naming the signal and exit status 128 + its number.

Imports are lazy: this module loads without torch, so `archbench --help`, `--version` and a usage
error in the options answer at once; torch and the registries load after the options parse, under
bench/entry.py's guard that turns a Ctrl-C during that import into one line (`heavy_imports`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import signal
import sys
import threading
import warnings
from importlib import metadata
from pathlib import Path

from archbench.bench.entry import ctrl_c_exits

DTYPES = ["float32", "float64", "bfloat16", "float16"]
MAX_SECONDS = 1e6  # ~12 days: longer than any cell, and inside setitimer's range (the time limit's alarm)
SEEDS = 2**32  # numpy's seeds are [0, 2**32)
# `list` builds each mixer at d_model 64 and `check` runs tiny models: far below these on any machine,
# so reaching one means a plugin that hangs, not a slow one.
LIST_TIME_LIMIT_S = 60.0
CHECK_TIME_LIMIT_S = 1800.0


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No prefix of an option stands for it: `--model` is not `--models`, `--len` not `--lens` (a
        # typo would otherwise run a grid other than the one meant, without a word).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # No option of archbench is a dash and a digit, so a value such as "-5G", "-.5" or "-inf" is a
        # value (that its option's parser refuses, naming what it takes), not an unknown option that
        # leaves the option before it "expected one argument".
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)

    def error(self, message: str):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty (or blank) value given to any option or argument is refused here, for every command at
    once: read as "not given" it would silently mean the default (`--models ''` running every mixer,
    `--out ''` writing into the working folder). No default is an empty string, so one found in `args`
    was typed."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[args.command]._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, list):  # a repeatable option (--benchmarks): each value given
            value = next((v for v in value if isinstance(v, str) and not v.strip()), None)
        if not isinstance(value, str) or value.strip():
            continue
        takes = f"one of: {', '.join(action.choices)}" if action.choices else \
            (action.help or "a value").replace("%%", "%")
        if action.dest in ("models", "model"):
            from archbench.archs import list_models

            takes += f"; models: {', '.join(list_models())}"
        elif action.dest == "task":
            from archbench.tasks import list_tasks

            takes += f"; tasks: {', '.join(list_tasks())}"
        if action.option_strings:
            raise UsageError(f"{action.option_strings[0]} is empty; leave it out for its default, or give "
                             f"{takes}")
        raise UsageError(f"{action.metavar or action.dest} is empty; give {takes}")


def _device(value: str | None, here: bool = True) -> str:
    """A valid device (None: the default one here); `here`: it must exist on this machine (not so for a
    cluster's driver)."""
    import torch

    if value is None:
        return default_device()
    if here and value == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but no CUDA device is available here; valid: cpu")
    if value not in ("cpu", "cuda"):
        from archbench.archs.registry import unknown_name

        raise UsageError(unknown_name("device", value, ["cpu", "cuda"]))
    return value


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from archbench.archs import MIXERS, PRESETS, create, list_archs, list_models
    from archbench.archs.isolation import guarded
    from archbench.archs.presets import CONV_FAMILY, lookup
    from archbench.bench.runs.cell import CellTimeout, time_limit

    names = list_archs(args.pattern)
    presets = [n for n in list_models(args.pattern) if n in PRESETS]
    if not names and not presets:
        raise UsageError(f"no mixer matches {args.pattern!r}; registered: {', '.join(list_archs())}")
    device = default_device()
    table = Table("name", "complexity", "origin", f"backends usable on {device}", "state bytes (1k / 4k)")
    for name in names:
        try:  # each mixer under the time limit, as a cell is: a plugin's __init__ may hang
            with guarded() as changed, time_limit(args.time_limit):
                cls = MIXERS.get(name)
                mixer = create(name, 64)
                states = f"{mixer.state_bytes(1, 1024):,} / {mixer.state_bytes(1, 4096):,}"
                backends = ", ".join(cls.available_backends(device))
            if changed:
                backends = f"error: it changed {'; '.join(changed)} (put back)"
            table.add_row(name, mixer.complexity, str(MIXERS.origin(name)), backends, states)
        except KeyboardInterrupt:
            raise
        except CellTimeout as exc:
            table.add_row(name, "?", str(MIXERS.origin(name)), f"error: timeout: {exc} (--time-limit)", "")
        except BaseException as exc:  # a broken plugin (sys.exit() included) still gets a row
            table.add_row(name, "?", str(MIXERS.origin(name)), f"error: {exc}", "")
    console = Console()
    if names:
        console.print(table)
    if presets:  # hybrid recipes over registered mixers: names `--models` takes beside the mixers
        recipes = Table("preset", "unit pattern", "depth", "mixers", "source",
                        title="presets (layer patterns)")
        for name in presets:
            p = PRESETS[name]
            recipes.add_row(name, p.unit, p.fit, ", ".join(f"{k}={v}" for k, v in p.mixers.items()), p.source)
        family = lookup(f"{CONV_FAMILY}MIXER")  # any registered mixer in M
        recipes.add_row(f"{CONV_FAMILY}MIXER", family.unit, family.fit,
                        ", ".join(f"{k}={v}" for k, v in family.mixers.items()), family.source)
        console.print(recipes)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Each NAME is a mixer, checked at its defaults and its class's conformance configs, or a mixer with
    Config fields, 'rglru(d_conv=2)', checked at that config."""
    from archbench.archs import MIXERS, ConfigFieldError
    from archbench.archs.names import coerce, parse_name
    from archbench.bench.conformance import run_checks

    todo = []
    for text in args.names:  # unknown names and bad fields fail before any work
        try:
            name, named = parse_name(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if ":" in name:
            raise UsageError(f"check takes mixers, not patterns: {text!r}; e.g. 'mamba2' or "
                             "'mamba2(d_state=8)'")
        cls = MIXERS.get(name)
        try:
            configs = [coerce(cls.Config, f"mixer {name!r}", named["M"])] if named else None
            for cfg in configs or ():
                cls.Config(**cfg)  # a value its Config refuses (mamba3(a_activation=exp)) is a usage error
        except (ConfigFieldError, ValueError) as e:
            raise UsageError(str(e)) from None
        todo.append((text, name, configs))
    failed = 0
    for text, name, configs in todo:
        for v in run_checks(name, time_limit_s=args.time_limit, configs=configs):
            print(f"{v.status.upper():4}  {text}  {v.check}: {v.detail}")
            failed += v.status == "fail"
    print(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


def _names(value: str, valid: list[str], what: str) -> list[str]:
    from archbench.archs.registry import unknown_name

    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UsageError(unknown_name(what, unknown or value, valid))
    return names


def _one(value: str, valid: list[str], what: str, option: str) -> str:
    names = _names(value, valid, what)
    if len(names) > 1:
        raise UsageError(f"{option} takes one {what}, got {value!r}")
    return names[0]


def _models(value: str) -> list[str]:
    """'attention,mamba2(d_state=32),MMA:M=mamba2,A=attention' -> three models (archs/names.py splits
    them); an unknown name, config field or value is a usage error naming the valid ones."""
    from archbench.archs import ConfigFieldError, UnknownNameError, list_models, resolve_model
    from archbench.archs.model import MODEL_HINT
    from archbench.archs.names import parse_name, split_models
    from archbench.archs.presets import CONV_FAMILY, lookup
    from archbench.archs.registry import unknown_name

    models = split_models(value)
    valid = list_models()
    try:
        unknown = [parse_name(m)[0] for m in models if ":" not in m and parse_name(m)[0] not in valid
                   and not parse_name(m)[0].startswith(CONV_FAMILY)]
    except ValueError as e:
        raise UsageError(str(e)) from None
    if unknown or not models:
        raise UsageError(unknown_name("model", unknown or value, valid, MODEL_HINT))
    for m in models:
        base = parse_name(m)[0]
        preset = None if ":" in base else lookup(base)
        unit = base.split(":", 1)[0] if ":" in base else preset.unit if preset else "M"
        try:  # the configs in a name are checked here, before any cell runs
            resolve_model(m, len(unit), 64)
        except (ValueError, UnknownNameError, ConfigFieldError) as e:
            raise UsageError(str(e.args[0]) if e.args else str(e)) from None  # a KeyError's str quotes it
    return models


# An example of each list option's values, for its error message (a length takes "4k" too).
LIST_EXAMPLES = {"--lens": "512,1024,4k", "--prompt-len": "4k,8k", "--d-model": "64,128"}
SINGLE_EXAMPLES = {"--depth": "4", "--batch": "8", "--workers": "2", "--threads": "1", "--max-batch": "256",
                   "--max-examples": "8k", "--num-kv-pairs": "8", "--vocab-size": "8192", "--gen-len": "32",
                   "--n": "4096", "--reps": "200"}


def _lengths(value: str, what: str = "--lens") -> list[int]:
    """'512,1024,4k' -> [512, 1024, 4096]; anything else is a usage error. Also parses the other lists
    of positive integers (--d-model, --prompt-len), whose errors name them instead of lengths."""
    noun = "length" if what == "--lens" else "value"
    out = []
    for item in value.split(","):
        number = _positive(item)
        if number is None:
            raise UsageError(f"malformed {noun} {item.strip()!r} in {what}; {what} takes positive integers, "
                             f"e.g. {LIST_EXAMPLES.get(what, '1,2,4')}")
        out.append(number)
    return out


def _positive(item: str) -> int | None:
    """'4096' or '4k' (x 1024) -> the integer when it is positive, else None."""
    text = item.strip().lower()
    scale = 1024 if text.endswith("k") else 1
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() and int(digits) > 0 else None


def _single(value: str, what: str) -> int:
    """One positive integer (--depth, --batch, --workers, --threads, ...; '4k' = 4096)."""
    number = _positive(value)
    if "," in value:
        raise UsageError(f"{what} takes one value, got {value!r}")
    if number is None:
        raise UsageError(f"malformed value {value.strip()!r} in {what}; {what} takes one positive integer, "
                         f"e.g. {SINGLE_EXAMPLES.get(what, '2')}")
    return number


def _count(value: str, what: str) -> int:
    """A non-negative integer (--mlp-ratio 0 means no MLP)."""
    if not value.strip().isdigit():
        raise UsageError(f"malformed value {value!r} in {what}; {what} takes one integer >= 0")
    return int(value)


def _rates(value: str) -> list[float]:
    out = []
    for item in value.split(","):
        try:
            lr = float(item)
        except ValueError:
            lr = float("nan")
        if not math.isfinite(lr) or lr <= 0:
            raise UsageError(f"malformed learning rate {item.strip()!r} in --lrs; --lrs takes positive "
                             "numbers, e.g. 1e-3,3e-3")
        out.append(lr)
    return out


def _seconds(option: str, example: str, zero: str | None = None):
    """An argparse type: one finite number of seconds in (0, MAX_SECONDS], or [0, ...] where 0 means
    something (`zero` says what)."""
    low = f">= 0 ({zero})" if zero else "> 0"

    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (0 <= seconds if zero else 0 < seconds) or not seconds <= MAX_SECONDS:  # nan fails both
            raise UsageError(f"malformed value {value!r} in {option}; {option} takes one number of seconds "
                             f"{low} and <= {MAX_SECONDS:.0e}, e.g. {example}")
        return seconds

    return parse


def _seed(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) >= SEEDS:
        raise UsageError(f"malformed value {value!r} in --seed; --seed takes one integer in [0, 2**32), "
                         "e.g. 0")
    return int(text)


def _size(value: str, device: str) -> int:
    """'512M', '2G', '1048576' (bytes; K/M/G/T are powers of 1024) or '25%' (of the device's memory)."""
    text = value.strip().upper().removesuffix("B")
    try:
        if text.endswith("%"):
            from archbench.bench.measure.device import memory_bytes

            pct = float(text[:-1])
            if not 0 < pct < math.inf:  # checked before the device is asked (nan fails too)
                raise ValueError(pct)
            total = memory_bytes(device)
            if total is None:
                raise UsageError(f"cannot read the memory of device {device!r}; give --memory-budget in "
                                 "bytes")
            size = total * pct / 100
        else:
            scale = 1024 ** ("KMGT".index(text[-1]) + 1) if text and text[-1] in "KMGT" else 1
            size = float(text[:-1] if scale > 1 else text) * scale
        size = int(size) if math.isfinite(size) else 0  # inf, 1e400: no size (int() would overflow)
    except ValueError:
        size = 0
    if size <= 0:
        raise UsageError(f"malformed --memory-budget {value!r}; give bytes such as 512M, 2G, 1073741824, "
                         "or a share of the device's memory such as 25%")
    return size


def _num_kv_pairs(value: str, task: str) -> int:
    from archbench.tasks import get

    fields = [f.name for f in dataclasses.fields(get(task).Config)]
    if "num_kv_pairs" not in fields:
        raise UsageError(f"--num-kv-pairs sets MQAR's K; task {task!r} has no such field (its fields: "
                         f"{', '.join(fields)})")
    return _single(value, "--num-kv-pairs")


def _executor(args: argparse.Namespace):
    """The executor --executor names, connected (a Ray cluster is reached before any cell is planned)."""
    import torch

    from archbench.bench.runs.executors import EXECUTORS, ExecutorError

    threads = _single(args.threads, "--threads") if args.threads else None
    if args.executor == "local":
        if args.address or args.workers:
            raise UsageError("--address and --workers go with --executor ray")
        if threads:
            torch.set_num_threads(threads)  # every cell runs in this process
        return EXECUTORS["local"]()
    workers = _single(args.workers, "--workers") if args.workers else None
    try:
        executor = EXECUTORS["ray"](address=args.address, workers=workers, threads=threads or 1)
        executor.connect()
    except ExecutorError as exc:
        raise UsageError(str(exc)) from None
    return executor


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from archbench.bench import grids
    from archbench.bench.experiments.decode import DECODE_BACKENDS
    from archbench.bench.experiments.scaling import MODES
    from archbench.bench.runs import loop, store
    from archbench.bench.runs.executors import ExecutorError
    from archbench.bench.runs.out_dir import default_out_dir
    from archbench.bench.runs.plans import write_plan
    from archbench.bench.runs.schema import cell_key, read_rows
    from archbench.bench.runs.summary import summary_tables
    from archbench.tasks import list_tasks

    try:
        grid = grids.load(args.suite)
    except grids.GridError as exc:
        raise UsageError(str(exc)) from None
    # A grid may take task names beyond the registered tasks (the frontier grid's "none": its cost cells).
    task_choices = list_tasks() + list(getattr(grid, "TASK_CHOICES", ()))
    task = _one(args.task, task_choices, "task", "--task") if args.task else None
    device = _device(args.device, here=args.executor == "local")
    gen_len = _single(args.gen_len, "--gen-len") if args.gen_len else None
    if gen_len == 1:
        raise UsageError("--gen-len takes an integer >= 2: the first token comes from the prefill, the rest "
                         "from decode steps")
    options = grids.Params(
        device=device,
        models=_models(args.models) if args.models else None,
        depth=_single(args.depth, "--depth") if args.depth else None,
        mlp_ratio=_count(args.mlp_ratio, "--mlp-ratio") if args.mlp_ratio is not None else None,
        lens=_lengths(args.lens) if args.lens else None,
        modes=_names(args.modes, list(MODES), "mode") if args.modes else None,
        d_models=_lengths(args.d_model, "--d-model") if args.d_model else None,
        batch=_single(args.batch, "--batch") if args.batch else None,
        dtype=_one(args.dtype, DTYPES, "dtype", "--dtype") if args.dtype else None,
        task=task,
        num_kv_pairs=_num_kv_pairs(args.num_kv_pairs, task if task not in (None, "none") else "mqar")
        if args.num_kv_pairs else None,
        vocab_size=_single(args.vocab_size, "--vocab-size") if args.vocab_size else None,
        lrs=_rates(args.lrs) if args.lrs else None,
        max_examples=_single(args.max_examples, "--max-examples") if args.max_examples else None,
        seed=args.seed,
        decode_backend=_one(args.decode_backend, list(DECODE_BACKENDS), "decode backend", "--decode-backend")
        if args.decode_backend else None,
        memory_budget=_size(args.memory_budget, device) if args.memory_budget else None,
        prompt_lens=_lengths(args.prompt_len, "--prompt-len") if args.prompt_len else None,
        gen_len=gen_len,
        max_batch=_single(args.max_batch, "--max-batch") if args.max_batch else None,
    )
    try:
        plan = grids.plan(args.suite, options, grid)
    except grids.GridError as exc:
        raise UsageError(str(exc)) from None
    if args.out is None and args.retry_failed:
        raise UsageError("--retry-failed runs again the failed cells of an earlier run: give its folder as "
                         "--out (without --out a run writes to a fresh folder under runs/)")
    # Without --out, a fresh git-ignored folder (bench/runs/out_dir.py says why); a dry run then has
    # nothing stored to count and leaves no folder behind.
    fresh = args.out is None
    out_dir = default_out_dir(plan.grid) if fresh else Path(args.out)
    stored = []
    if not (fresh and args.dry_run):
        with store.RunLock(out_dir):  # an --out that cannot hold rows, that a run holds, or whose rows
            stored = read_rows(out_dir / "raw")  # are damaged: refused now, in one line (the loop
            # checks all of it again, under the lock it holds for the run)
            if not options.given():  # the grid as it is defined: its plan goes beside the rows (the
                # report counts stored and left cells from it, bench/runs/plans.py)
                write_plan(out_dir / "raw", plan.grid, options.device,
                           [(part, cell_key(c.spec)) for part, c in zip(plan.parts, plan.cells, strict=True)])
    if args.dry_run:
        return _print_plan(plan, stored, options.device)
    executor = _executor(args)
    console = Console(stderr=True)
    for note in plan.notes:
        console.print(f"note: {note}")
    console.print(f"archbench run {plan.grid}: {len(plan.cells)} cells on {options.device}, "
                  f"rows -> {out_dir}/raw/" + (" (retrying failed cells)" if args.retry_failed else "") +
                  (" (a fresh folder: --out names another)" if fresh else ""), soft_wrap=True)
    resume = f"rerun with --out {out_dir} to resume" if fresh else "rerun the same command to resume"
    stdout = sys.stdout  # captured before the progress bar, which redirects sys.stdout on a terminal
    log = None if stdout.isatty() else lambda line: print(line, file=stdout, flush=True)
    try:
        rows = loop.run_cells(plan.cells, out_dir, time_limit_s=args.time_limit, budget_s=args.budget,
                              retry_failed=args.retry_failed, executor=executor, console=console, log=log)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP: the run loop's (Terminated) or main's
        signum = getattr(exc, "signum", None)
        if signum is None:
            how, status = interrupted_by()
        else:
            how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            status = 128 + signum
        console.print(f"{how}: finished cells are saved; {resume}", soft_wrap=True)
        return status
    except ExecutorError as exc:  # a cluster without a node fit for the cells, or one that cannot run them
        raise UsageError(str(exc)) from None
    finally:
        getattr(executor, "close", lambda: None)()
    if rows:  # a log file is not a terminal: the tables fit 80 columns there (summary.py)
        out = Console()
        out = out if out.is_terminal else Console(width=80)
        for table in summary_tables(rows):
            out.print(table)
    else:
        console.print("nothing to do: every cell is already in the row store")
    console.print(f"rows in {out_dir}/raw/; tables and plots: archbench report --results {out_dir}",
                  soft_wrap=True)
    return 0


def _print_plan(plan, stored, device: str) -> int:
    """`--dry-run`: each part's cells, how many are stored for this machine (what a run here skips: a
    recall cell trained on any machine of this device kind counts, schema `place`) and how many only
    for another machine (a timing there is not one here: the run measures them again)."""
    from rich.console import Console
    from rich.table import Table

    from archbench.bench.runs.provenance import provenance
    from archbench.bench.runs.schema import cell_key, place

    prov = provenance(device, "float32")
    here = prov["device_name"]
    done_here = {r.cell for r in stored if r.place == place(r.kind, prov)}
    done_elsewhere = {r.cell for r in stored} - done_here
    table = Table("part", "cells", "stored here", "stored elsewhere only", "left here",
                  title=f"grid {plan.grid} on {here}: nothing run (--dry-run)")
    counts: dict[str, list[int]] = {}
    for part, cell in zip(plan.parts, plan.cells, strict=True):
        c = counts.setdefault(part or "-", [0, 0, 0])
        key = cell_key(cell.spec)
        c[0] += 1
        c[1] += key in done_here
        c[2] += key in done_elsewhere
    for part, (n, have, elsewhere) in counts.items():
        table.add_row(part, str(n), str(have), str(elsewhere), str(n - have))
    Console(width=100).print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from archbench.bench.report import ForeignFileError, ReadmeError, write_report

    results = Path(args.results)
    benchmarks = [Path(b) for b in args.benchmarks or ()]
    for path in benchmarks:
        if not path.exists():
            raise UsageError(f"--benchmarks {path}: no such file or folder; give a JSON file that "
                             "pytest --benchmark-json wrote, or a folder of them such as .benchmarks")
    try:
        has_raw = (results / "raw").is_dir()
    except OSError as exc:  # a name the file system refuses (too long)
        raise UsageError(f"cannot read --results {results}: {exc.strerror or exc}") from None
    if not has_raw and not benchmarks:  # benchmarks alone make a report of their own
        raise UsageError(f"no raw rows at {results / 'raw'}; run 'archbench run SUITE --out {results}' first")
    readme = Path(args.readme) if args.readme else None
    try:
        written = write_report(results, readme=readme, benchmarks=benchmarks)
    except (ReadmeError, ForeignFileError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {len(written)} files under {results}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """One decode step of MODEL at context n, timed and profiled beside its bound."""
    import torch

    from archbench.archs import resolve_model
    from archbench.bench.experiments import decode
    from archbench.bench.experiments.decode_profile import markdown, profile_decode, write
    from archbench.bench.experiments.scaling import Scaling, ScalingSpec
    from archbench.bench.grids.common import default_dtype
    from archbench.bench.runs.out_dir import default_out_dir

    device = _device(args.device)
    models = _models(args.model)
    if len(models) > 1:
        raise UsageError(f"profile takes one model, got {args.model!r}")
    n, depth, d_model, batch, reps = (_single(v, o) for v, o in (
        (args.n, "--n"), (args.depth, "--depth"), (args.d_model, "--d-model"), (args.batch, "--batch"),
        (args.reps, "--reps")))
    mlp_ratio = _count(args.mlp_ratio, "--mlp-ratio")
    dtype = _one(args.dtype, DTYPES, "dtype", "--dtype") if args.dtype else default_dtype(device)
    try:
        path = decode.resolve(_one(args.decode_backend, list(decode.DECODE_BACKENDS), "decode backend",
                                   "--decode-backend"), device)
        model = resolve_model(models[0], depth, d_model, mlp_ratio)
    except ValueError as exc:  # cudagraph on a cpu, a depth the pattern cannot tile
        raise UsageError(str(exc)) from None
    spec = ScalingSpec(model, mode="decode", seq_len=n, batch=batch, device=device, dtype=dtype,
                       compile_step=path == "compiled", cuda_graph=path == "cudagraph")
    if (reason := Scaling.skip_reason(spec)) is not None:
        raise UsageError(f"model {models[0]!r} cannot decode: {reason}")
    if args.threads:
        torch.set_num_threads(_single(args.threads, "--threads"))
    result = profile_decode(spec, reps=reps)
    md, js = write(result, Path(args.out) if args.out else default_out_dir("profile"))
    print(markdown(result), end="")
    print(f"wrote {md} and {js}")
    return 0


def _version() -> str:
    """'archbench 0.1.0 (torch 2.13.0, Python 3.12.3)': from the installed metadata, importing nothing."""
    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"archbench {installed('archbench')} (torch {installed('torch')}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered mixers, their complexity, origin and usable backends")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'mamba*'")
    p.add_argument("--time-limit", type=_seconds("--time-limit", "60"), default=LIST_TIME_LIMIT_S,
                   help=f"seconds to build each mixer before it is listed as timed out (default: "
                        f"{LIST_TIME_LIMIT_S:g})")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", help="run the conformance checks on registered mixers")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="a mixer (checked at its defaults and its class's conformance configs), or a mixer "
                        "with Config fields, 'rglru(d_conv=2)' (checked at that config)")
    p.add_argument("--time-limit", type=_seconds("--time-limit", "600"), default=CHECK_TIME_LIMIT_S,
                   help=f"seconds for all the checks of one mixer; the checks left then fail (default: "
                        f"{CHECK_TIME_LIMIT_S:g})")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run a grid of cells, appending rows to OUT/raw/ (resumable)")
    p.add_argument("suite", metavar="grid", help="quick | scaling | retrieval | full | generation | "
                   "frontier | plateau, or a path to a grid file (a copy of one in bench/grids/, edited)")
    p.add_argument("--models", "--archs", dest="models",
                   help="comma-separated models: mixers (pure stacks), presets, conv+MIXER (a short conv "
                        "before the mixer), or patterns such as 'MMMA:M=mamba2,A=attention', a mixer with "
                        "Config fields such as 'mamba2(d_state=32)' (default: the grid's)")
    p.add_argument("--depth", help="layers per model (default: 4 scaling, 2 retrieval)")
    p.add_argument("--mlp-ratio", help="MLP width ratio of every block; 0 = no MLP (default: 0)")
    p.add_argument("--lens", help="comma-separated sequence lengths, e.g. 512,1024,4k (replace the scaling "
                                  "lengths; select points of a retrieval grid)")
    p.add_argument("--modes", help="comma-separated: prefill, train, decode")
    p.add_argument("--d-model", "--d-models", dest="d_model", help="model width(s), comma-separated")
    p.add_argument("--batch", help="batch size (scaling; generation: this one batch instead of the sweep)")
    p.add_argument("--dtype", help=f"one of: {', '.join(DTYPES)} (default: float32 on cpu, bfloat16 on cuda "
                                   "for scaling; float32 for retrieval)")
    p.add_argument("--task", help="retrieval task, with its own grid (default: mqar)")
    p.add_argument("--num-kv-pairs", help="MQAR's K at every point of the grid (retrieval)")
    p.add_argument("--max-examples", help="training examples per retrieval cell, e.g. 8k (default: the "
                                           "grid's budget)")
    p.add_argument("--vocab-size", help="task vocabulary (retrieval; default: the grid's); the LM's "
                                        "(generation; default: 4096)")
    p.add_argument("--lrs", help="comma-separated learning rates for every model (retrieval; default: the "
                                 "grid's per-model rates)")
    p.add_argument("--decode-backend", help="decode step: auto (compiled on cpu, a CUDA graph on cuda), "
                                            "eager, compiled, cudagraph (decode cells, generation)")
    p.add_argument("--memory-budget", help="generation: bytes the batch may use, e.g. 1G or 25%% "
                                           "(default: 25%% of the device's memory)")
    p.add_argument("--prompt-len", help="generation: prompt length(s) P, e.g. 4k,8k (default: 4k)")
    p.add_argument("--gen-len", help="generation: tokens generated per sequence G (default: 32)")
    p.add_argument("--max-batch", help="generation: the largest batch of the doubling sweep (default: "
                                       "256 cpu, 4096 cuda)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", help="folder for the rows (OUT/raw/*.jsonl). Default: a fresh "
                                 "runs/GRID-<UTC time>/ (git-ignored), so a run never writes into the "
                                 "committed results/ unless asked to. Name a folder to resume a run there or "
                                 "add to it; '--out results' regenerates the committed rows")
    p.add_argument("--dry-run", action="store_true",
                   help="list each part's cells and how many are stored, and store the grid's plan; "
                        "run nothing")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the cells of --out that failed (error, timeout, oom) and the longer cells "
                        "skipped after them; the old rows stay, the report takes the newest")
    p.add_argument("--time-limit", type=_seconds("--time-limit", "120"), default=None,
                   help="seconds per cell before it times out (default: 120 scaling, 3600 retrieval)")
    p.add_argument("--budget", type=_seconds("--budget", "1", zero="the fewest repeats"), default=1.0,
                   help="seconds of timed repeats per cell (scaling)")
    p.add_argument("--seed", type=_seed, default=0, help="an integer in [0, 2**32) (default: 0)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where cells run: local (this process, one after another) or ray (one Ray task per "
                        "cell; pip install -e \".[ray]\")")
    p.add_argument("--address", help="ray: a running cluster to join, 'auto' or HOST:PORT (default: start a "
                                      "local Ray instance)")
    p.add_argument("--workers", help="ray: cells run at once by the local instance it starts (default: one "
                                      "per CPU / --threads)")
    p.add_argument("--threads", help="torch threads per cell, and the CPUs a Ray task reserves (default: "
                                      "torch's own locally, 1 on ray)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("profile", help="time and profile one decode step of MODEL beside its bytes-moved "
                                       "bound; a top-ops table, written to OUT")
    p.add_argument("model", help="a mixer, a preset, or a pattern such as 'MMMA:M=mamba2,A=attention'")
    p.add_argument("--n", default="4096", help="context before the step, e.g. 1024 or 16k (default: 4096)")
    p.add_argument("--decode-backend", default="auto", help="auto (compiled on cpu, a CUDA graph on cuda), "
                                                            "eager, compiled, cudagraph")
    p.add_argument("--depth", default="4", help="layers (default: 4)")
    p.add_argument("--d-model", default="256", help="model width (default: 256)")
    p.add_argument("--mlp-ratio", default="0", help="MLP width ratio; 0 = no MLP (default: 0)")
    p.add_argument("--batch", default="1", help="batch size (default: 1)")
    p.add_argument("--dtype", help=f"one of: {', '.join(DTYPES)} (default: float32 on cpu, bfloat16 on cuda)")
    p.add_argument("--reps", default="200", help="profiled steps (default: 200)")
    p.add_argument("--threads", help="torch threads (default: torch's own)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", help="folder for the table (.md) and every op (.json) (default: a fresh "
                                 "runs/profile-<UTC time>/, git-ignored)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("report", help="regenerate tables and plots in RESULTS from RESULTS/raw")
    p.add_argument("--results", default="results")
    p.add_argument("--readme", default=None, help="also refresh the headline figure and table between the "
                   "archbench:results markers in this README")
    p.add_argument("--benchmarks", action="append", metavar="PATH",
                   help="also read this pytest-benchmark JSON file, or every *.json under this folder (e.g. "
                        "pytest-benchmark's .benchmarks/); repeatable. RESULTS/raw/pytest-benchmark/ is "
                        "always read")
    p.set_defaults(func=cmd_report)
    return parser


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_stopped_by: list[int] = []  # the SIGTERM or SIGHUP that stopped this command, if one did


def _stop(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: stop as Ctrl-C does, through Ctrl-C's own handler where it has one, so the
    signal is held where Ctrl-C is held (around the torch profiler's registration) and the run loop
    keeps every finished row; where Ctrl-C is ignored or has no Python handler, stop at once."""
    _stopped_by.append(signum)
    ctrl_c = signal.getsignal(signal.SIGINT)
    if callable(ctrl_c):
        ctrl_c(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _stop_on_signals() -> dict[int, object]:
    """Route SIGTERM and SIGHUP to `_stop` where they would kill the process without a word (their
    default); a handler installed by someone else stays. Returns what to put back."""
    _stopped_by.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    return {s: signal.signal(s, _stop) for s, h in previous.items() if h is signal.SIG_DFL}


def interrupted_by() -> tuple[str, int]:
    """How the last Ctrl-C-like stop came: ("interrupted", 130) or ("stopped by SIGTERM", 143)."""
    if _stopped_by:
        return f"stopped by {signal.Signals(_stopped_by[-1]).name}", 128 + _stopped_by[-1]
    return "interrupted", 130


def _ascii_safe_stdout() -> None:
    """Characters the terminal's encoding lacks (PYTHONIOENCODING=ascii; the tables hold '…', '²', 'µ')
    print as '?' rather than end the command with UnicodeEncodeError."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):  # a stream that cannot change (closed, detached): leave it
            pass


_PACKAGE = str(Path(__file__).resolve().parents[1])  # archs/, tasks/, bench/ live under it
_plain_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """archbench's own warnings (a skipped torn line or FIFO, a plugin that failed to load) as one line
    for the user; anyone else's (torch's) as Python prints them."""
    if str(Path(filename).resolve()).startswith(_PACKAGE) and issubclass(category, UserWarning):
        return f"archbench: warning: {message}\n"
    return _plain_format(message, category, filename, lineno, line)


def _loaded(*names: str) -> tuple[type, ...]:
    """The exception classes 'module:Class' whose modules are loaded: one whose module is not cannot
    have been raised, and importing it just to name it in an `except` would load torch."""
    return tuple(getattr(sys.modules[m], c) for m, c in (n.split(":") for n in names) if m in sys.modules)


def heavy_imports() -> None:
    """torch and the registries, loaded once the options have parsed (so `--help` never waits for
    them), with a Ctrl-C during the import one line (bench/entry.py)."""
    with ctrl_c_exits():
        import torch  # noqa: F401

        import archbench.archs  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    _ascii_safe_stdout()
    restore = _stop_on_signals()
    warnings.formatwarning = _format_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        heavy_imports()
        _refuse_empty(parser, args)
        return args.func(args)
    except (UsageError, *_loaded("archbench.archs.registry:UnknownNameError",
                                 "archbench.bench.runs.store:CorruptResultError",
                                 "archbench.bench.runs.schema:RowSchemaError",
                                 "archbench.bench.runs.store:StoreUnusableError")) as exc:
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 2
    except _loaded("archbench.bench.runs.store:RowWriteError") as exc:  # a full disk: no traceback either
        print(f"archbench: error: {exc}; make room (disk space, the file-size limit) and rerun the same "
              "command to resume", file=sys.stderr)
        return 1
    except OSError as exc:  # writing the report (or any file) failed: say which and why, on one line
        # archbench's own messages name the file in their text ("cannot write X: ..."); the system's
        # carry it as `filename`, which str() shows
        text = exc.strerror if exc.filename is None and exc.strerror else exc
        print(f"archbench: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside the run loop (which says how to resume): no traceback
        how, status = interrupted_by()
        print(f"archbench: {how}", file=sys.stderr)
        return status
    finally:
        warnings.formatwarning = _plain_format
        for signum, handler in restore.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
