"""senland-geo: land cover and crop types from Sentinel-2 with plugin-based deep learning.

Importing the package is cheap: heavy stacks (torch, dask.distributed, jax) are imported
only by the modules that use them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("senland-geo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
