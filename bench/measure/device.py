"""The device a measurement runs on: its name, and waiting for its queued work.

Glossary
  device  "cpu", "cuda", "cuda:1" or a torch.device
"""

from __future__ import annotations

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
