"""pytest-benchmark ingestion for `archbench report`: one table of every benchmark in the JSON files
pytest-benchmark wrote, plus a provenance line (machine, commit) per file for the index.

The files read are those under <results>/raw/pytest-benchmark/ (the committed ones), and those given
with `archbench report --benchmarks PATH`: a file that `--benchmark-json` wrote, or a folder read with
its subfolders, such as pytest-benchmark's own store `.benchmarks/` (`--benchmark-save`,
`--benchmark-autosave`), whose runs sit in one subfolder per machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from archbench.bench.report.format import NA, fmt_seconds, is_missing
from archbench.bench.report.outputs import Outputs
from archbench.bench.runs.store import CorruptResultError, regular_files


def benchmark_files(folder: Path, given: Iterable[Path] = ()) -> list[Path]:
    """folder/*.json, then each given file, or each *.json under a given folder (sorted), once each."""
    paths = sorted(folder.glob("*.json"))
    for path in map(Path, given):
        paths += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return list({p.resolve(): p for p in regular_files(paths)}.values())  # a FIFO would block the report


def pytest_benchmark_tables(out: Outputs, folder: Path, given: Iterable[Path] = ()) -> list[str]:
    """Table of every benchmark in folder/*.json and the `given` files or folders (`benchmark_files`);
    returns provenance lines (machine, commit) per file."""
    recs, prov = [], []
    for f in benchmark_files(folder, given):
        try:
            data = json.loads(f.read_text("utf-8"))
            benches = data.get("benchmarks", [])
        except (ValueError, AttributeError) as exc:
            raise CorruptResultError(f"unreadable pytest-benchmark file {f}: {exc}") from None
        machine = data.get("machine_info") or {}
        cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
        commit = data.get("commit_info") or {}
        where = cpu.get("brand_raw") or machine.get("node") or "unknown machine"
        dirty = "+dirty" if commit.get("dirty") else ""
        prov.append(f"`{f.name}`: {where}, commit {str(commit.get('id') or 'unknown')[:12]}{dirty}")
        for b in benches:
            st = b.get("stats") or {}
            rec = {"file": f.name, "group": b.get("group") or "", "name": b.get("name"),
                   "params": json.dumps(b["params"], sort_keys=True) if b.get("params") else "",
                   "median_s": st.get("median"), "min_s": st.get("min"), "max_s": st.get("max"),
                   "rounds": st.get("rounds")}
            for k, v in sorted((b.get("extra_info") or {}).items()):
                rec[k if k not in rec else f"extra_{k}"] = json.dumps(v, sort_keys=True) if isinstance(
                    v, dict | list) else v
            recs.append(rec)
    if not recs:
        return prov
    df = pd.DataFrame.from_records(recs)
    base = ["group", "name", "params", "file", "median_s", "min_s", "max_s", "rounds"]
    df = df[base + sorted(c for c in df.columns if c not in base)]
    df = df.sort_values(["group", "name", "params", "file"], kind="stable").reset_index(drop=True)
    md = df.copy()
    for c in ("median_s", "min_s", "max_s"):
        md[c] = [NA if is_missing(v) else fmt_seconds(v) for v in md[c]]
    md = md.astype(object).map(lambda v: NA if is_missing(v) else str(v))
    md = md.rename(columns={"median_s": "median", "min_s": "min", "max_s": "max"})
    out.table("pytest-benchmark", "pytest_benchmark", "pytest-benchmark runs (median, min, max per call; "
              "extra_info fields as columns)", md, df)
    _train_speed(out, df)
    _op_speed(out, df)
    _peer_speed(out, df)
    return prov


def _op_speed(out: Outputs, df: pd.DataFrame) -> None:
    """bench/test_op_speed.py's figures: per op and length, the call's time inside its worker and its share
    of the matmul peak on the chunked form's FLOP yardstick, prefill and train side by side (the newest
    file wins where two measured the same benchmark)."""
    need = {"op", "mode", "seq_len", "worker_median_s", "frac_of_peak"}
    if not need <= set(df.columns):
        return
    t = df[df["group"].str.startswith("op ") & df["op"].notna()]
    if t.empty:
        return
    t = t.drop_duplicates(["op", "mode", "seq_len"], keep="last")
    raw = t[["op", "mode", "seq_len", "chunk", "worker_median_s", "flops_per_s", "frac_of_peak",
             "matmul_peak_flops_per_s"]].sort_values(["op", "mode", "seq_len"]).reset_index(drop=True)
    cells = raw.assign(text=[f"{fmt_seconds(s)} · {f:.0%}" for s, f in zip(raw["worker_median_s"],
                                                                         raw["frac_of_peak"], strict=True)])
    md = cells.pivot(index="op", columns=["mode", "seq_len"], values="text")
    md.columns = ["decode (per step)" if mode == "decode" else f"{mode} n={n}" for mode, n in md.columns]
    if "time_shares" in t.columns:  # where the longest prefill's time went (files before it: n/a)
        longest = t[(t["mode"] == "prefill") & t["time_shares"].notna()].sort_values("seq_len")
        longest = longest.drop_duplicates("op", keep="last").set_index("op")
        shares = {op: json.loads(v) for op, v in longest["time_shares"].items()}
        n = longest["seq_len"].max() if len(longest) else None
        md[f"prefill n={n}: matmul / copies / other ops / Python"] = pd.Series(
            {op: " / ".join(f"{v[k]:.0%}" for k in ("matmul", "copies", "other ops", "python"))
             for op, v in shares.items()})
        raw = raw.merge(longest["time_shares"].rename("longest_prefill_time_shares"), how="left",
                        left_on="op", right_index=True)
    md = md.reset_index().fillna(NA)
    out.table("op speed", "op_speed", "The chunked ops on their own (bench/test_op_speed.py; each op in a "
              "fresh worker, one thread, batch 1, 4 heads of 64, float32): the call's median time · its "
              "share of the single-core matmul peak on the chunked form's matmul FLOPs, 2Q(K + V) + 4KV "
              "per token and head at Q = 64 (× 3 for train) — one yardstick for every op, whatever chunk "
              "it runs in (the row's `chunk`), not each op's exact count; "
              "decode: the op's one-token step, its time per step · its share on the state's read and "
              "write, 4KV per head; last column: a prefill call at the longest n under the profiler, the "
              "shares of its time in matmuls, copies, other ops (decays, masks, exps) and Python — what "
              "bounds an op far from the peak", md, raw)


def _peer_speed(out: Outputs, df: pd.DataFrame) -> None:
    """bench/test_peer_speed.py's figures: per op and peer, the op's median time over the peer's, prefill
    and train at each length (the newest file wins where two measured the same benchmark)."""
    need = {"op", "peer", "mode", "seq_len", "ours_median_s", "peer_median_s", "ratio"}
    if not need <= set(df.columns):
        return
    t = df[df["group"].str.startswith("peer ") & df["peer"].notna()]
    if t.empty:
        return
    t = t.drop_duplicates(["op", "peer", "mode", "seq_len"], keep="last")
    for col in ("round_ratio_q1", "round_ratio_q3"):  # absent from files written before the spread
        if col not in t.columns:
            t = t.assign(**{col: float("nan")})
    raw = t[["op", "peer", "package", "package_version", "source", "mode", "seq_len", "ours_median_s",
             "peer_median_s", "ratio", "round_ratio_q1", "round_ratio_q3", "load_1m"]]
    raw = raw.sort_values(["op", "peer", "mode", "seq_len"]).reset_index(drop=True)
    spread = ["" if is_missing(lo) else f" [{lo:.2f}–{hi:.2f}]"
              for lo, hi in zip(raw["round_ratio_q1"], raw["round_ratio_q3"], strict=True)]
    medians = zip(raw["ratio"], spread, raw["ours_median_s"], raw["peer_median_s"], strict=True)
    cells = raw.assign(text=[f"{r:.2f}{sp} ({fmt_seconds(a)} / {fmt_seconds(b)})" for r, sp, a, b in medians],
                       pair=[f"{o} · {p} ({pkg} {v})" for o, p, pkg, v in zip(
                           raw["op"], raw["peer"], raw["package"], raw["package_version"], strict=True)])
    md = cells.pivot(index="pair", columns=["mode", "seq_len"], values="text")
    md.columns = [f"{mode} n={n}" for mode, n in md.columns]
    loads = cells.groupby("pair")["load_1m"].agg(lambda v: f"{v.min():.1f}–{v.max():.1f}")
    md = md.join(loads.rename("load (1 min)")).reset_index().rename(columns={"pair": "op · peer"}).fillna(NA)
    out.table("op speed", "peer_speed", "archbench's chunked ops against the published pure-PyTorch forms "
              "of the same recurrences (bench/test_peer_speed.py; both in one fresh worker, interleaved "
              "rounds, one thread, batch 1, 4 heads of 64, float32, outputs checked equal first): the op's "
              "median time over the peer's (below 1: archbench faster), [the quartiles of the rounds' own "
              "ratios], (the two medians); n/a where the peer's backward fails or the pair was not run", md,
              raw)


def _train_speed(out: Outputs, df: pd.DataFrame) -> None:
    """bench/test_train_speed.py's figures side by side: examples/s per mixer, eager and compiled loss,
    their ratio, and the step's FLOP bound (the newest file wins where two measured the same benchmark).
    Rows from files written before the bound was stored show n/a there."""
    need = {"mixer", "backend", "examples_per_s", "warmup_s"}
    if not need <= set(df.columns):
        return
    t = df[df["group"].str.startswith("train step") & df["mixer"].notna()].copy()
    if t.empty:
        return
    t["kind"] = t["backend"].astype(str).str.split(" ").str[0]  # "eager" | "compiled" (+ a failure note)
    t = t.drop_duplicates(["group", "mixer", "kind"], keep="last")
    for col in ("bound_examples_per_s", "frac_of_bound"):  # absent from files written before the bound
        if col not in t.columns:
            t[col] = float("nan")
    for group, g in t.groupby("group"):
        w = g.pivot(index="mixer", columns="kind", values="examples_per_s")
        warm = g.pivot(index="mixer", columns="kind", values="warmup_s")
        # Each row's share of its own bound: the two backends' rows may come from different files.
        kinds = ["eager", "compiled"]
        bounds = g.pivot(index="mixer", columns="kind", values="bound_examples_per_s").reindex(columns=kinds)
        fracs = g.pivot(index="mixer", columns="kind", values="frac_of_bound").reindex(columns=kinds)
        raw = pd.DataFrame({"mixer": w.index, "eager_examples_per_s": w.get("eager"),
                            "compiled_examples_per_s": w.get("compiled"),
                            "compile_warmup_s": warm.get("compiled")}).reset_index(drop=True)
        raw["speedup"] = raw["compiled_examples_per_s"] / raw["eager_examples_per_s"]
        raw["bound_examples_per_s"] = bounds["compiled"].where(fracs["compiled"].notna(),
                                                               bounds["eager"]).to_numpy()
        raw["compiled_frac_of_bound"] = fracs["compiled"].to_numpy()
        raw["eager_frac_of_bound"] = fracs["eager"].to_numpy()
        frac = [f"{c:.3f}" if not is_missing(c) else f"{e:.3f} (eager)" if not is_missing(e) else NA
                for c, e in zip(raw["compiled_frac_of_bound"], raw["eager_frac_of_bound"], strict=True)]

        md = pd.DataFrame({"mixer": raw["mixer"],
                           "eager (examples/s)": _fmt(raw["eager_examples_per_s"]),
                           "compiled (examples/s)": _fmt(raw["compiled_examples_per_s"]),
                           "compiled / eager": _fmt(raw["speedup"], "{:.2f}×"),
                           "compile + warm-up (s)": _fmt(raw["compile_warmup_s"]),
                           "bound (examples/s)": _fmt(raw["bound_examples_per_s"]),
                           "compiled / bound": frac})
        name = "".join(c if c.isalnum() else "-" for c in group.removeprefix("train step ")).strip("-")
        stem = f"train_speed_{name}"
        out.table("training speed", stem, f"Training examples/s per mixer, eager vs compiled loss — {group} "
                  "(bench/test_train_speed.py; median of the timed steps). Bound: the step's analytic "
                  "FLOPs (forward × 3 for forward + backward) over the measured matmul peak on the "
                  "benchmark's threads (one by default), i.e. examples/s if every FLOP ran at the speed "
                  "of a large matmul: an upper bound no real step reaches, since most of a recurrent "
                  "step is not matmul. Compiled / bound is each row's share of its own bound, eager's "
                  "(so marked) where the compiled row is missing or has none", md, raw)


def _fmt(values: pd.Series, pattern: str = "{:.0f}") -> list[str]:
    return [NA if is_missing(v) else pattern.format(v) for v in values]
