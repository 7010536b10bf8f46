"""Region -> STAC search -> lazy cube -> composite -> labels -> Zarr store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from senland_geo import __version__, cube, labels, stac, store
from senland_geo.errors import UserError
from senland_geo.regions import Region

COMPOSITES = ("median", "monthly", "none")


def build_region_cube(
    region: Region,
    out: str | Path,
    *,
    catalog: str | None = None,
    composite: str = "median",
    season: tuple[int, int] | None = None,
    max_cloud: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    overwrite: bool = False,
    label_tile_root: str | None = None,
) -> Path:
    """Build a region's cube and store it as Zarr with labels and provenance.

    Args:
        region: What, where and when.
        out: Destination ``*.zarr`` folder.
        catalog: Override of the region's catalog.
        composite: ``median`` (one cloudless image), ``monthly`` (time series) or
            ``none`` (every scene).
        season: Inclusive month window for ``monthly``, e.g. ``(1, 7)``.
        max_cloud: Scene cloud-cover ceiling in percent.
        bbox: Override of the region's bbox (EPSG:4326); the grid is derived from it.
        overwrite: Replace an existing store.
        label_tile_root: Where WorldCover tiles are read from (default: public bucket).

    Returns:
        The written store path.
    """
    if composite not in COMPOSITES:
        raise UserError(f"composite {composite!r} unknown; choose one of {', '.join(COMPOSITES)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(
            f"output folder {out.parent} does not exist; create it or pick another --out"
        )
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; delete it or pass --overwrite")
    if bbox is not None:
        region = region.replace(bbox=tuple(bbox), grid_bounds=None)
    items = stac.search(region, catalog, max_cloud=max_cloud)
    has_scl = all("SCL" in item.assets for item in items)
    bands = list(region.bands) + (["SCL"] if has_scl else [])
    stacked = cube.stack(items, region, bands)
    if composite == "median":
        result = cube.composite_median(stacked)
    elif composite == "monthly":
        result = cube.composite_monthly(stacked, season)
    else:
        result = stacked.drop_sel(band="SCL") if has_scl else stacked
    grid = store.grid_of(result)
    label_array = labels.labels_for_grid(region.labels, grid, items, tile_root=label_tile_root)
    label_da = None
    if label_array is not None:
        label_da = xr.DataArray(
            label_array, dims=("y", "x"), coords={"y": result["y"], "x": result["x"]}
        )
    ds = store.cube_to_dataset(
        result,
        label_da,
        attrs={
            "region": region.to_dict(),
            "catalog": catalog or region.catalog,
            "composite": composite,
            "items": [item.id for item in items],
            "query": {
                "collections": list(region.collections),
                "bbox": list(region.bbox),
                "datetime": region.datetime,
                "max_cloud": max_cloud,
            },
            "class_table": region.class_table,
            "software": f"senland-geo {__version__}",
        },
    )
    valid = np.asarray((result != 0).any("band").any("time"))
    if not valid.any():
        raise UserError(
            f"every pixel of region {region.name!r} is cloudy or empty in {region.datetime}; "
            "widen the dates or raise --max-cloud"
        )
    return store.write_cube(ds, out, overwrite=overwrite)
