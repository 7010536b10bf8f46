"""XLA:CPU flags the plugin sets before JAX starts, chosen from the CPU's features.

jaxlib 0.10 sends XLA:CPU convolutions and dots to YNNPACK by default. On a CPU without
AVX-512 (measured: AMD EPYC Zen 1, AVX2 only, 2 cores) the unet-gn training step costs
about 1.4x the CPU time with YNNPACK than with XLA's own (Eigen) kernels, so there the
plugin turns YNNPACK fusions off (``--xla_cpu_experimental_ynn_fusion_type=``). On
AVX-512 CPUs the default stays (there YNNPACK was as fast or faster, docs/performance.md).

Flags are read from ``XLA_FLAGS`` when JAX creates its CPU client, so this must run
before the first JAX computation; :mod:`senland_geo_jax` calls it on import. Nothing is
changed when ``XLA_FLAGS`` already names a YNNPACK option or when
``SENLAND_JAX_XLA_DEFAULTS=0``.
"""

from __future__ import annotations

import os

#: The flag that turns YNNPACK fusions off (empty fusion-type list).
NO_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="

#: Set to ``0`` to keep XLA's own defaults.
OPT_OUT_ENV = "SENLAND_JAX_XLA_DEFAULTS"


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor in ``path`` (empty if unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def recommended_flags(flags: set[str]) -> list[str]:
    """XLA flags for a CPU with these features (empty list: XLA's defaults are best)."""
    if not flags or "avx512f" in flags:
        return []
    return [NO_YNN_FLAG]


def apply(environ: dict[str, str] | None = None, flags: set[str] | None = None) -> list[str]:
    """Append :func:`recommended_flags` to ``XLA_FLAGS`` unless the user chose otherwise.

    Args:
        environ: Environment to change (default ``os.environ``).
        flags: CPU flags (default: read from ``/proc/cpuinfo``).

    Returns:
        The flags added (empty when nothing changed).
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip() == "0":
        return []
    current = env.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in current:
        return []
    added = recommended_flags(cpu_flags() if flags is None else flags)
    if added:
        env["XLA_FLAGS"] = " ".join([*current.split(), *added])
    return added
