"""Label sources: label rasters brought onto a cube's grid (nearest neighbour).

Sources:

* ``embedded``: the ``labels`` asset of the catalog's items (the packaged sample);
* ``esa-worldcover-2021`` / ``esa-worldcover-2020``: ESA WorldCover tiles
  (see :mod:`senland_geo.worldcover`).

Label codes are kept as they are (WorldCover 10...100); 0 means unlabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from senland_geo.errors import UserError

SOURCES = ("embedded", "esa-worldcover-2021", "esa-worldcover-2020")


def reproject_nearest(src_path: str, grid: dict[str, Any]) -> np.ndarray:
    """Read a single-band label raster onto ``grid`` with nearest-neighbour resampling."""
    out = np.zeros(grid["shape"], dtype=np.uint8)
    with rasterio.open(src_path) as src:
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            dst_transform=grid["transform"],
            dst_crs=grid["crs"],
            dst_nodata=0,
            resampling=Resampling.nearest,
        )
    return out


def labels_for_grid(
    source: str | None,
    grid: dict[str, Any],
    items: Sequence[pystac.Item] = (),
    *,
    tile_root: str | None = None,
) -> np.ndarray | None:
    """Return the labels of ``source`` on ``grid`` as a uint8 array, or None.

    Args:
        source: Label source name (see :data:`SOURCES`) or None for no labels.
        grid: Target grid (``crs``, ``transform``, ``shape``), e.g. from
            :func:`senland_geo.store.grid_of`.
        items: The cube's items (the ``embedded`` source reads their ``labels`` asset).
        tile_root: Folder or URL holding WorldCover tiles (default: the public bucket).

    Raises:
        UserError: Unknown source, or no item carries a labels asset.
    """
    if source is None:
        return None
    if source == "embedded":
        for item in items:
            if "labels" in item.assets:
                return reproject_nearest(item.assets["labels"].get_absolute_href(), grid)
        raise UserError("label source 'embedded' needs an item with a 'labels' asset; none has")
    if source.startswith("esa-worldcover-"):
        from senland_geo import worldcover

        year = source.rsplit("-", 1)[1]
        return worldcover.worldcover_labels(
            epsg=grid["crs"].to_epsg(),
            transform=grid["transform"],
            shape=grid["shape"],
            version=year,
            tile_root=tile_root,
        )
    raise UserError(f"unknown label source {source!r}; choose one of {', '.join(SOURCES)}")
