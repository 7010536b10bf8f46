"""Hardware introspection: what really ran, read from the machine, never assumed."""

from __future__ import annotations

import os
import platform
import re
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


@cache
def cpu_flags() -> dict[str, bool]:
    """The SIMD features that decide which kernels oneDNN and MKL can use."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        name: name in flags
        for name in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    }


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``... from /proc/cpuinfo (``unknown`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _config_version(pattern: str) -> str | None:
    import torch

    match = re.search(pattern, torch.__config__.show())
    return match.group(1) if match else None


@cache
def library_versions() -> dict[str, str | None]:
    """Versions of the numeric libraries behind torch (read from its build config).

    jax/jaxlib are read from the installed distributions, without importing them.
    """
    from importlib import metadata

    import torch

    out: dict[str, str | None] = {
        "torch": str(torch.__version__),
        "mkl": _config_version(r"Math Kernel Library Version ([\w.\-]+)"),
        "onednn": _config_version(r"MKL-DNN v([\d.]+)"),
        "openmp": _config_version(r"OpenMP (\d+)"),
        "cpu_capability": _config_version(r"CPU capability usage: (\w+)"),
        "python": platform.python_version(),
    }
    for dist in ("numpy", "jax", "jaxlib", "flax"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


#: Environment variables that change which kernels or how many threads run.
PERF_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_AFFINITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "LD_PRELOAD",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
)


def gpus() -> list[dict[str, Any]]:
    """The CUDA GPUs torch really sees (empty without one); never guessed."""
    import torch

    if not (torch.backends.cuda.is_built() and torch.cuda.is_available()):
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return out


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


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
        "cpu_vendor": cpu_vendor(),
        "cpu_flags": cpu_flags(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "libraries": library_versions(),
        "mkldnn_enabled": bool(
            torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        ),
        "env": {k: os.environ[k] for k in PERF_ENV if k in os.environ},
        "load_average": load_average(),
        "cuda_available": bool(torch.backends.cuda.is_built() and torch.cuda.is_available()),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
        info["engine"] = (
            f"GPU {props.name} ({info['gpu_memory_gib']} GiB, CUDA {torch.version.cuda})"
        )
    else:
        info["engine"] = (
            f"CPU {info['cpu_model']} ({info['torch_threads']} threads, "
            f"{info['physical_cores']} cores)"
        )
    return info
