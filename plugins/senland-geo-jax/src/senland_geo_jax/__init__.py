"""JAX/Flax backend for senland-geo (entry point ``senland_geo.backends: jax``).

Importing this package is cheap; jax, flax and optax are imported by the submodules
(:mod:`senland_geo_jax.model`, :mod:`senland_geo_jax.train`, :mod:`senland_geo_jax.bench`)
and by :class:`JaxBackend` methods when first used. The device is chosen by JAX itself,
through the ``JAX_PLATFORMS`` environment variable (``cpu``, ``cuda``, ...).
"""

from importlib.metadata import PackageNotFoundError, version

from senland_geo_jax.backend import JaxBackend

try:
    __version__ = version("senland-geo-jax")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["JaxBackend", "__version__"]
