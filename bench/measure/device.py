"""The device a measurement runs on: its name, and waiting for its queued work; whether torch's
compiler can run in this process at all.

Glossary
  device  "cpu", "cuda", "cuda:1" or a torch.device
"""

from __future__ import annotations

import functools
import os
import platform

import torch

Device = torch.device | str


def is_cuda(device: Device) -> bool:
    return torch.device(device).type == "cuda"


def sync(device: Device) -> None:
    """Wait for queued kernels on `device` (CUDA); a no-op elsewhere, where calls are synchronous."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def device_name(device: Device) -> str:
    """GPU marketing name, or the CPU model and logical CPU count."""
    if is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({os.cpu_count()} CPUs)"


def memory_bytes(device: Device) -> int | None:
    """Total memory of `device`: the GPU's, or the machine's RAM (MemTotal); None if unknown."""
    if is_cuda(device):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@functools.cache
def compiler_error() -> str | None:
    """Why torch's compiler (Dynamo and inductor) cannot be imported in this process, or None.

    Importing it makes inductor's cache folder (TORCHINDUCTOR_CACHE_DIR, else one under the temp
    folder); where that folder cannot be made the import fails half way, and every later import fails
    with an unrelated error ("Artifact of type=precompile already registered"). So the first import
    is made here, once, and the cause is kept: compiling falls back to eager naming it, and the
    profiler (which imports inductor too) is not used. Callers ask before anything imports it.
    """
    try:
        import torch._inductor  # noqa: F401 - imports torch._dynamo, which makes the cache folder
    except Exception as exc:
        cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # set by inductor to the folder it tried
        if cache:
            try:
                os.makedirs(cache, exist_ok=True)
            except OSError as err:
                return f"{type(err).__name__}: TORCHINDUCTOR_CACHE_DIR={cache}: {err.strerror or err}"
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return None
