"""`archbench profile`: where one decode step's time goes, beside its bytes-moved bound.

It builds the very cell the scaling experiment times in decode mode (`scaling.decode_call`: the model's
Backbone prefilled with n tokens, then one step as served: compiled, eager or a CUDA graph), times it
with the project's timer under the same guard-free stance, computes the bound as a decode row does
(parameters + state read + state changed, over the copy bandwidth measured for a working set of that
size), and profiles it (bench/measure/profile.py). A compiled step is compiled with its kernels named,
so the table shows inductor's own kernels beside the Python around them.

Glossary
  n          context: tokens prefilled before the timed step
  bound      bound_bytes / copy bandwidth at that working set: the least time one step can take here
  wrapper    Dynamo's and AOTAutograd's Python around the compiled kernels (per call)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from archbench.bench.experiments import decode
from archbench.bench.experiments.scaling import ScalingSpec, build_backbone, decode_call
from archbench.bench.measure import copy_bandwidth, device_name, time_call
from archbench.bench.measure.profile import OpTime, enable_kernel_names, op_profile
from archbench.bench.runs.store import slug, write_atomic

TOP = 15  # rows of the printed table; the written JSON keeps every op


@dataclass(frozen=True)
class DecodeProfile:
    spec: ScalingSpec
    path: str  # how the step ran: compiled | eager | cudagraph | eager (compile failed: ...)
    device_name: str
    threads: int
    median_s: float  # the project's timer, as a decode row's time_median_s
    min_s: float
    reps: int
    bound_bytes: int
    bound_bandwidth: float
    bound_s: float
    profiled_s: float  # wall seconds per step under the profiler
    ops: list[OpTime]

    @property
    def wrapper_s(self) -> float:
        return sum(op.self_s for op in self.ops if op.where == "wrapper")


def profile_decode(spec: ScalingSpec, reps: int = 200, budget_s: float = 1.0) -> DecodeProfile:
    device = torch.device(spec.device)
    model = build_backbone(spec)
    names = enable_kernel_names() if spec.compile_step else contextlib.nullcontext()
    with names:
        dec = decode_call(model, spec)
    with decode.serving() if spec.compile_step else contextlib.nullcontext():
        stats = time_call(dec.call, device, budget_s=budget_s)
        ops, wall = op_profile(dec.call, device, reps=reps)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    bound_bytes = params + dec.state_read + dec.state_written
    bandwidth, _ = copy_bandwidth(device, bound_bytes)
    return DecodeProfile(spec, dec.path, device_name(device), torch.get_num_threads(), stats.median_s,
                         stats.min_s, stats.reps, bound_bytes, bandwidth, bound_bytes / bandwidth, wall, ops)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def markdown(p: DecodeProfile, top: int = TOP) -> str:
    s = p.spec
    lines = [
        f"# decode step profile: {s.model.name} ×{s.model.depth}, d_model {s.model.d_model}, "
        f"batch {s.batch}, context n = {s.seq_len}, {s.dtype}, {p.path} ({p.device_name}, "
        f"{p.threads} thread{'s' * (p.threads > 1)})",
        "",
        f"- step time (the project's timer, {p.reps} reps): median {_us(p.median_s)} µs, "
        f"min {_us(p.min_s)} µs",
        f"- bound: {p.bound_bytes / 1e6:.2f} MB read and written / {p.bound_bandwidth / 1e9:.1f} GB/s copy "
        f"bandwidth at that working set = {_us(p.bound_s)} µs; "
        f"median / bound = {p.median_s / p.bound_s:.1f}×, min / bound = {p.min_s / p.bound_s:.1f}×",
        f"- under the profiler: {_us(p.profiled_s)} µs per step, of which Python around the compiled graph "
        f"(Dynamo, AOTAutograd: 'wrapper') {_us(p.wrapper_s)} µs",
        "",
        "| op | where | self µs / step | share | calls / step |",
        "|:---|:---|---:|---:|---:|",
    ]
    for op in p.ops[:top]:
        name = op.name if len(op.name) <= 70 else op.name[:67] + "..."
        lines.append(f"| {name} | {op.where} | {_us(op.self_s)} | {op.share:.0%} | {op.calls:g} |")
    if len(p.ops) > top:
        rest = p.ops[top:]
        lines.append(f"| ({len(rest)} more) | | {_us(sum(o.self_s for o in rest))} | "
                     f"{sum(o.share for o in rest):.0%} | |")
    return "\n".join(lines) + "\n"


def file_stem(p: DecodeProfile) -> str:
    """profile_<model>_<path>_L<depth>_d<d_model>_b<batch>_n<n>, the model's name slugged: pattern letters
    may be any character ('/' and '.' included), and a file name must stay one name inside --out. A
    name the slug had to cut keeps a checksum of the whole, so two long names stay two files."""
    s = p.spec
    kind = slug(p.path.split(" ")[0])  # "eager (compile failed: ...)" -> eager
    name = slug(s.model.name, limit=80)
    if len(slug(s.model.name, limit=10**6)) > 80:
        name += f"-{zlib.crc32(s.model.name.encode()):08x}"
    return f"profile_{name}_{kind}_L{s.model.depth}_d{s.model.d_model}_b{s.batch}_n{s.seq_len}"


def write(p: DecodeProfile, out: Path) -> tuple[Path, Path]:
    """OUT/<file_stem>.{md,json}, each written whole or not at all; returns both paths."""
    stem = file_stem(p)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    record = {k: v for k, v in dataclasses.asdict(p).items() if k not in ("spec", "ops")}
    record["spec"] = dataclasses.asdict(p.spec)
    record["ops"] = [dataclasses.asdict(op) for op in p.ops]
    write_atomic(md, markdown(p).encode("utf-8"))
    write_atomic(js, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    return md, js
