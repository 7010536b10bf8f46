"""JAX/Flax backend for senland-geo (entry point ``senland_geo.backends: jax``).

Importing this package is cheap; jax, flax and optax are imported by the submodules
(:mod:`senland_geo_jax.model`, :mod:`senland_geo_jax.train`, :mod:`senland_geo_jax.bench`)
and by :class:`JaxBackend` methods when first used. The device is chosen by JAX itself,
through the ``JAX_PLATFORMS`` environment variable (``cpu``, ``cuda``, ...).

Importing it also applies :func:`senland_geo_jax.xla_defaults.apply` (XLA:CPU flags
chosen from the CPU's features, e.g. no YNNPACK on CPUs without AVX-512), which must
happen before JAX runs its first computation.
"""

from importlib.metadata import PackageNotFoundError, version

from senland_geo_jax import xla_defaults

XLA_FLAGS_ADDED = xla_defaults.apply()

from senland_geo_jax.backend import JaxBackend  # noqa: E402

try:
    __version__ = version("senland-geo-jax")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["XLA_FLAGS_ADDED", "JaxBackend", "__version__"]
