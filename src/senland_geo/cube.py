"""Lazy Sentinel-2 cubes: stack, mask and composite (nothing is computed here).

Every cube is an ``xarray.DataArray`` with dims ``(time, band, y, x)``, band coordinate
holding Sentinel-2 band names, dask-backed, with the CRS attached by rioxarray.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from stackstac.prepare import prepare_items, to_coords
from stackstac.to_dask import items_to_dask

from senland_geo import aligned_read, composite
from senland_geo.errors import UserError
from senland_geo.regions import Region

#: Scene classification (SCL) values that are not clear ground: no data, saturated or
#: defective, cloud shadow, cloud medium/high probability, thin cirrus, snow or ice.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)

DIMS = ("time", "band", "y", "x")

#: Read errors stackstac.stack turns into no data by default (its ``errors_as_nodata``).
STACKSTAC_ERRORS_AS_NODATA: tuple[Exception, ...] = (RasterioIOError("HTTP response code: 404"),)

#: GDAL settings for reading COGs over HTTP: no directory listing, retries on 429/5xx.
GDAL_ENV: dict[str, object] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.jp2",
    "GDAL_HTTP_MAX_RETRY": 4,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
}


def chunksize_for(
    n_time: int, n_bands: int, *, memory_budget: int = 256 * 2**20, maximum: int = 1024
) -> int:
    """Spatial chunk size (pixels, a multiple of 64) keeping one composite task in budget.

    A median composite task holds the uint16 ``(time, band, y, x)`` block of one chunk, a
    masked copy it sorts and a few per-pixel planes (about 5 bytes per value; 8 are
    budgeted, leaving room for a rechunk from stackstac's per-band chunks); this picks the
    largest square chunk whose block fits ``memory_budget`` bytes, so a dask worker stays
    within memory.

    Args:
        n_time: Scenes in the cube.
        n_bands: Bands in the cube.
        memory_budget: Bytes one task may use.
        maximum: Upper bound for the chunk side.
    """
    per_pixel = 8 * max(1, n_time) * max(1, n_bands)
    side = int((memory_budget / per_pixel) ** 0.5) // 64 * 64
    return max(64, min(maximum, side))


def stack(
    items: Sequence[pystac.Item],
    region: Region,
    bands: Sequence[str],
    *,
    bounds: tuple[float, float, float, float] | None = None,
    chunksize: int = 512,
    direct: bool = True,
) -> xr.DataArray:
    """Stack items into a lazy uint16 cube on the region's grid.

    When every asset is already on the output grid (same CRS, pixel a whole multiple of
    the output pixel, origin on an output pixel corner), the pixels are read by
    :mod:`senland_geo.aligned_read`: one task per spatial chunk reads every date and band
    (dask chunks ``(time, band, chunksize, chunksize)``). Otherwise stackstac reads them
    (chunks ``(1, 1, chunksize, chunksize)``). Both give the same values, coordinates and
    dtype.

    Args:
        items: Normalised items (Sentinel-2 band names as asset keys).
        region: Gives the output EPSG, resolution and (default) bounds.
        bands: Band names to stack, e.g. ``("B02", ..., "SCL")``.
        bounds: Override of the output bounds in ``region.epsg``.
        chunksize: Spatial dask chunk size in pixels.
        direct: Use the direct reads when the grid allows (False: always stackstac).

    Returns:
        A dask-backed DataArray ``(time, band, y, x)``, 0 where there is no data.

    Raises:
        UserError: An item lacks a requested band.
    """
    for item in items:
        missing = [b for b in bands if b not in item.assets]
        if missing:
            raise UserError(
                f"item {item.id} has no asset for bands {missing} (it has {sorted(item.assets)}); "
                "choose bands the collection provides"
            )
    bounds = bounds or region.output_bounds()
    # Plain dicts: pystac's to_dict() would try to resolve root links over the network.
    # Sorted by date as stackstac.stack(sortby_date="asc") sorts them.
    plain = sorted(
        (item.to_dict(include_self_link=False, transform_hrefs=False) for item in items),
        key=lambda item: item["properties"].get("datetime", "") or "",
    )
    gdal_env = stackstac.DEFAULT_GDAL_ENV.updated(always=GDAL_ENV)
    # stackstac.stack's own steps (prepare, dask array, coordinates), so the asset table is
    # prepared once for both paths and stackstac's graph is built only when it is used.
    table, spec, ids, plain = prepare_items(
        plain,
        assets=list(bands),
        epsg=region.epsg,
        resolution=region.resolution,
        bounds=bounds,
        rescale=False,
        dtype=np.dtype("uint16"),
    )
    expected = (
        round((bounds[3] - bounds[1]) / region.resolution),
        round((bounds[2] - bounds[0]) / region.resolution),
    )
    if tuple(spec.shape) != expected:  # stackstac may silently guess a grid
        raise RuntimeError(f"stackstac built grid {tuple(spec.shape)}, expected {expected}")
    plan = None
    if direct:
        plan = aligned_read.plan_prepared(
            table, spec, ids, plain, list(bands), epsg=region.epsg, gdal_env=gdal_env
        )
    if plan is not None:
        data = aligned_read.aligned_array(plan, chunksize)
    else:
        data = items_to_dask(
            table,
            spec,
            chunksize=(1, 1, chunksize, chunksize),
            dtype=np.dtype("uint16"),
            resampling=Resampling.nearest,
            fill_value=np.uint16(0),
            rescale=False,
            gdal_env=gdal_env,
            errors_as_nodata=STACKSTAC_ERRORS_AS_NODATA,
        )
    coords, _dims = to_coords(
        plain, list(ids), spec, xy_coords="center", properties=False, band_coords=False
    )
    cube = xr.DataArray(
        data,
        dims=DIMS,
        coords={
            "time": np.asarray(coords["time"]).astype("datetime64[ns]"),
            "band": [str(b) for b in ids],
            "y": coords["y"],
            "x": coords["x"],
        },
        name="reflectance",
    )
    return cube.rio.write_crs(f"EPSG:{region.epsg}")


def valid_mask(cube: xr.DataArray) -> xr.DataArray:
    """Return a lazy boolean ``(time, y, x)`` mask of clear, observed pixels.

    Uses the SCL band when the cube has one; pixels where every reflectance band is 0
    (outside the swath) are invalid in any case.
    """
    reflectance = cube.drop_sel(band="SCL") if "SCL" in cube["band"] else cube
    observed = (reflectance != 0).any("band")
    if "SCL" in cube["band"]:
        scl = cube.sel(band="SCL")
        observed = observed & ~scl.isin(list(SCL_INVALID))
    return observed.rename("valid")


def select_season(cube: xr.DataArray, months: tuple[int, int] | None) -> xr.DataArray:
    """Keep the scenes whose month lies in the inclusive window ``months``.

    A window like ``(11, 3)`` wraps over the new year (November to March).

    Raises:
        UserError: The window is invalid or no scene falls in it.
    """
    if months is None:
        return cube
    first, last = (int(m) for m in months)
    if not (1 <= first <= 12 and 1 <= last <= 12):
        raise UserError(f"season {months!r} must be two month numbers 1..12, e.g. --season 1 7")
    m = cube["time"].dt.month
    keep = (m >= first) & (m <= last) if first <= last else (m >= first) | (m <= last)
    out = cube.sel(time=keep)
    if out.sizes["time"] == 0:
        raise UserError(f"no scenes fall in months {first}..{last}; widen --season")
    return out


def _composite(cube: xr.DataArray, groups: list[list[int]], times: np.ndarray) -> xr.DataArray:
    """Median composite per group of time steps (see :mod:`senland_geo.composite`)."""
    has_scl = "SCL" in cube["band"]
    bands = [str(b) for b in cube["band"].values]
    scl = bands.index("SCL") if has_scl else None
    data = composite.median_array(cube.data, groups=groups, scl=scl, invalid=SCL_INVALID)
    out = xr.DataArray(
        data,
        dims=DIMS,
        coords={
            "time": np.asarray(times).astype("datetime64[ns]"),
            "band": [b for b in bands if b != "SCL"],
            "y": cube["y"],
            "x": cube["x"],
        },
        name="reflectance",
    )
    return out.rio.write_crs(cube.rio.crs)


def composite_median(cube: xr.DataArray) -> xr.DataArray:
    """Cloudless median composite over time, as a one-step cube ``(1, band, y, x)``.

    Masked pixels (see :func:`valid_mask`) and band values of 0 (no data, e.g. a 10 m
    band outside the swath where the 20 m SCL says otherwise) are left out of the median;
    pixels never clear are 0 (no data). The SCL band, if present, is dropped. An even
    number of values gives the mean of the middle two rounded half to even. Computed
    exactly on uint16, one task per spatial chunk (:mod:`senland_geo.composite`).
    """
    n_time = cube.sizes["time"]
    return _composite(cube, [list(range(n_time))], cube["time"].values[:1])


def composite_monthly(cube: xr.DataArray, months: tuple[int, int] | None = None) -> xr.DataArray:
    """Monthly median composites ``(month, band, y, x)``, optionally within a season.

    Args:
        cube: Stacked cube with or without SCL.
        months: Inclusive ``(first, last)`` month numbers, e.g. ``(1, 7)`` for January-July.

    Returns:
        One time step per calendar month from the first scene's to the last one's, stamped
        at the month start (a month without scenes is all 0); medians as in
        :func:`composite_median`.
    """
    cube = select_season(cube, months)
    times = pd.DatetimeIndex(cube["time"].values)
    starts = pd.date_range(times.min().to_period("M").to_timestamp(), times.max(), freq="MS")
    month = times.to_period("M")
    groups = [list(np.flatnonzero(month == s.to_period("M"))) for s in starts]
    return _composite(cube, groups, starts.values)
