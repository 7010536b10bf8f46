"""Mean NDVI per WorldCover class of a cube, computed lazily on a local dask cluster.

Usage::

    python examples/dask_ndvi.py [CUBE.zarr]      # default: the embedded Brandenburg sample

Prints the dashboard address, then one ``class name: mean NDVI`` line per class present.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster

from senland_geo.classes import WORLDCOVER


def ndvi_by_class(cube: str | Path) -> dict[str, float]:
    """Open ``cube`` lazily and return the mean NDVI (over time and pixels) per class."""
    ds = xr.open_zarr(cube, consolidated=False, decode_coords="all")
    red = ds["reflectance"].sel(band="B04").astype("float32")
    nir = ds["reflectance"].sel(band="B08").astype("float32")
    ndvi = ((nir - red) / (nir + red)).where((nir + red) > 0).mean("time")  # still lazy
    labels = ds["labels"]
    result = {}
    for c in WORLDCOVER.classes:
        value = float(ndvi.where(labels == c.code).mean().compute())
        if not np.isnan(value):
            result[c.name] = value
    return result


def main() -> None:
    """Start a small cluster, compute, print."""
    if len(sys.argv) > 1:
        cube = Path(sys.argv[1])
    else:
        from senland_geo.pipeline import cached_cube
        from senland_geo.regions import get_region

        cube = cached_cube(get_region("brandenburg"))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:  # fmt: skip
        print(f"dashboard: {client.dashboard_link}")
        for name, value in ndvi_by_class(cube).items():
            print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
