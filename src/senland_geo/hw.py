"""Hardware introspection: what really ran, read from the machine, never assumed."""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any


@cache
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform module elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def physical_cores() -> int:
    """Number of physical cores available to this process (psutil when present)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return min(n, len(os.sched_getaffinity(0)))
    except (ImportError, AttributeError):
        pass
    return os.cpu_count() or 1


def ram_gib() -> float:
    """Total RAM in GiB."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def describe(device: str = "cpu") -> dict[str, Any]:
    """Describe the engine a run uses: CPU or GPU, threads, memory, library versions.

    Args:
        device: ``cpu`` or ``cuda[:N]``; the GPU fields are read only for CUDA.

    Returns:
        A JSON-serialisable dict; ``engine`` is a one-line label for figures.
    """
    import torch

    info: dict[str, Any] = {
        "device": device,
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(ram_gib(), 1),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
        info["engine"] = f"GPU {props.name}"
    else:
        info["engine"] = f"CPU {info['cpu_model']} ({info['torch_threads']} threads)"
    return info
