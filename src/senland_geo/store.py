"""Zarr (v3) storage of cubes with their georeferencing.

A store is written under a temporary name and renamed at the end, so an interrupted
write never looks like a complete cube. The result opens with plain
``xarray.open_zarr`` (CRS in the ``spatial_ref`` coordinate, band names and dates as
coordinates, provenance in attributes).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr

from senland_geo.errors import UserError

COMPLETE_ATTR = "senland_geo_complete"


def cube_to_dataset(
    cube: xr.DataArray,
    labels: xr.DataArray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Bundle a cube (and optional label raster on its grid) into one Dataset."""
    crs = cube.rio.crs
    cube = cube.assign_coords(band=np.asarray([str(b) for b in cube["band"].values], dtype=object))
    ds = cube.to_dataset(name="reflectance")
    if labels is not None:
        ds["labels"] = labels.astype("uint8").reset_coords(drop=True)
    ds = ds.rio.write_crs(crs)
    ds = ds.rio.write_transform(cube.rio.transform())
    ds.attrs.update(
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in (attrs or {}).items()}
    )
    return ds


def write_cube(
    ds: xr.Dataset,
    path: str | Path,
    *,
    chunks: tuple[int, int] = (256, 256),
    overwrite: bool = False,
) -> Path:
    """Write a cube dataset to a Zarr v3 store atomically.

    Args:
        ds: From :func:`cube_to_dataset`.
        path: Destination folder (``*.zarr``).
        chunks: Spatial chunk size; time and band are kept whole in every chunk so a
            patch is one read.
        overwrite: Replace an existing complete store.

    Returns:
        The store path.

    Raises:
        UserError: The destination exists (and ``overwrite`` is False) or its folder is
            missing.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(
            f"output folder {path.parent} does not exist; create it or pick another --out"
        )
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; delete it or pass --overwrite")
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    ry, rx = chunks
    encoding_chunks = {
        "reflectance": {"chunks": (ds.sizes["time"], ds.sizes["band"], ry, rx)},
    }
    if "labels" in ds:
        encoding_chunks["labels"] = {"chunks": (ry, rx)}
    ds = ds.chunk({"time": -1, "band": -1, "y": ry, "x": rx})
    for var in ds.data_vars:
        ds[var].encoding = {}
    ds.attrs[COMPLETE_ATTR] = False
    ds.to_zarr(tmp, mode="w", zarr_format=3, encoding=encoding_chunks, consolidated=False)
    # Commit: mark complete, then move into place.
    import zarr

    root = zarr.open_group(tmp, mode="r+")
    root.attrs[COMPLETE_ATTR] = True
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube store lazily, with CRS and transform restored.

    Raises:
        UserError: The store is missing or was not completely written.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"cube {path} does not exist; build it with 'senland-geo cube'")
    ds = xr.open_zarr(path, consolidated=False, decode_coords="all")
    if not ds.attrs.get(COMPLETE_ATTR, False):
        raise UserError(f"cube {path} is incomplete (an interrupted write); rebuild it")
    return ds


def grid_of(ds: xr.Dataset | xr.DataArray) -> dict[str, Any]:
    """Return the grid of a cube: CRS, affine transform, (height, width), bounds."""
    transform = ds.rio.transform()
    return {
        "crs": ds.rio.crs,
        "transform": transform,
        "shape": (ds.sizes["y"], ds.sizes["x"]),
        "bounds": ds.rio.bounds(),
        "res": float(abs(transform.a)),
    }


def band_names(ds: xr.Dataset) -> list[str]:
    """Return the band names of a cube dataset."""
    return [str(b) for b in np.asarray(ds["band"].values)]
