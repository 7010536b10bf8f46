"""Region -> STAC search -> lazy cube -> composite -> labels -> Zarr store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from senland_geo import __version__, cube, labels, stac, store
from senland_geo.errors import UserError
from senland_geo.regions import Region

COMPOSITES = ("median", "monthly", "none")

#: Spatial chunk of the SCL cube the all-cloudy check reads (small: the first chunk with
#: a clear pixel ends the check, so it usually costs one chunk of SCL).
CHECK_CHUNKSIZE = 256


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
    scheduler: str | None = None,
    progress: bool = False,
    chunksize: int | None = None,
    report: list[store.WriteReport] | None = None,
    compression: str = "lz4",
) -> Path:
    """Build a region's cube and store it as Zarr with labels and provenance.

    Args:
        region: What, where and when.
        out: Destination ``*.zarr`` folder.
        catalog: Override of the region's catalog.
        composite: ``median`` (one cloudless image), ``monthly`` (time series) or
            ``none`` (every scene).
        season: Inclusive month window, e.g. ``(1, 7)`` for January-July; scenes outside
            it are left out of every composite.
        max_cloud: Scene cloud-cover ceiling in percent.
        bbox: Override of the region's bbox (EPSG:4326); the grid is derived from it.
        overwrite: Replace an existing store.
        label_tile_root: Where WorldCover tiles are read from (default:
            ``$SENLAND_WORLDCOVER_ROOT``, else the public bucket).
        scheduler: ``local`` (a dask.distributed LocalCluster), a scheduler address,
            ``threads``/``sync``, or None for dask's current scheduler (see
            :func:`senland_geo.distributed.dask_scheduler`).
        progress: Show a progress bar counting written chunks.
        chunksize: Spatial chunk size in pixels (default: sized to the memory budget).
        report: If given, the store's :class:`~senland_geo.store.WriteReport` is appended.
        compression: Chunk compression, one of :data:`senland_geo.store.COMPRESSIONS`.

    Returns:
        The written store path.

    Raises:
        UserError: Bad options, nothing found, every scene cloudy, or unreadable imagery.
    """
    from senland_geo.distributed import dask_scheduler

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
    label_tile_root = label_tile_root or os.environ.get("SENLAND_WORLDCOVER_ROOT") or None
    items = stac.search(region, catalog, max_cloud=max_cloud)
    has_scl = all("SCL" in item.assets for item in items)
    bands = list(region.bands) + (["SCL"] if has_scl else [])
    chunksize = chunksize or cube.chunksize_for(len(items), len(bands), maximum=512)
    with dask_scheduler(scheduler):

        def stacked(names: list[str]) -> xr.DataArray:
            return cube.select_season(cube.stack(items, region, names, chunksize=chunksize), season)

        check = None
        if has_scl:
            scl = cube.stack(items, region, ["SCL"], chunksize=min(chunksize, CHECK_CHUNKSIZE))
            check = _start_cloud_check(cube.select_season(scl, season), region)
        if composite == "median":
            result = cube.composite_median(stacked(bands))
        elif composite == "monthly":
            result = cube.composite_monthly(stacked(bands))
        else:  # the scenes as they are: SCL is not stored, so it is not read
            result = stacked(list(region.bands))
        # Its first blocks are read on the I/O pool while the store is prepared.
        prefetch = store.prefetch_blocks(result.data, out, (chunksize, chunksize))
        try:
            return _finish(
                result, items, region, out, check, prefetch,
                catalog=catalog, composite=composite, season=season, max_cloud=max_cloud,
                label_tile_root=label_tile_root, chunksize=chunksize, overwrite=overwrite,
                progress=progress, report=report, compression=compression,
            )  # fmt: skip
        finally:
            if prefetch is not None:
                prefetch.cancel()


def _finish(
    result: xr.DataArray,
    items: list,
    region: Region,
    out: Path,
    check: Callable[[], None] | None,
    prefetch: store.BlockPrefetch | None,
    *,
    catalog: str | None,
    composite: str,
    season: tuple[int, int] | None,
    max_cloud: float | None,
    label_tile_root: str | None,
    chunksize: int,
    overwrite: bool,
    progress: bool,
    report: list[store.WriteReport] | None,
    compression: str,
) -> Path:
    """The rest of :func:`build_region_cube`: cloud check outcome, labels, store write."""
    grid = store.grid_of(result)
    if check is not None:
        check()  # raises if every scene is cloudy, before labels are fetched
    label_array = labels.labels_for_grid(region.labels, grid, items, tile_root=label_tile_root)
    label_da = None
    if label_array is not None:
        table = region.classes
        label_da = xr.DataArray(
            label_array,
            dims=("y", "x"),
            coords={"y": result["y"], "x": result["x"]},
            attrs={
                "source": region.labels,
                "class_table": table.name,
                "flag_values": table.codes,
                "flag_meanings": " ".join(n.replace(" ", "_") for n in table.names),
                "flag_colors": " ".join(c.color for c in table.classes),
                "nodata": 0,
            },
        )
    ds = store.cube_to_dataset(
        result,
        label_da,
        attrs={
            "region": region.to_dict(),
            "catalog": catalog or region.catalog,
            "provider": stac.resolve_catalog(catalog or region.catalog).href,
            "composite": composite,
            "season": list(season) if season else None,
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
    if label_da is not None:
        ds["labels"].attrs.update(label_da.attrs)
    return store.write_cube(
        ds,
        out,
        chunks=(chunksize, chunksize),
        overwrite=overwrite,
        progress=progress,
        report=report,
        compression=compression,
        prefetch=prefetch,
    )


def _start_cloud_check(scl: xr.DataArray, region: Region) -> Callable[[], None]:
    """Start :func:`_check_not_all_cloudy`; the returned function waits for its outcome.

    On dask's threaded scheduler the check (a read of one SCL chunk, mostly in GDAL, which
    releases the GIL) runs on a thread while the caller builds the cube's graph (20-40 ms
    of Python); otherwise it runs now.
    """
    threads = store._threaded_workers(store.in_process_scheduler())
    if not threads:
        _check_not_all_cloudy(scl, region)
        return lambda: None
    import dask.local

    # On one thread of the pool the store writes with (its GDAL setup is then reused),
    # computed there synchronously (the threaded scheduler would start a pool of its own).
    future = store.shared_pool(threads).submit(
        _check_not_all_cloudy, scl, region, dask.local.get_sync
    )
    return future.result


def _check_not_all_cloudy(scl: xr.DataArray, region: Region, scheduler: Any = None) -> None:
    """Raise if no pixel of any scene is clear.

    Reads the SCL cube ``(time, 1, y, x)`` chunk by chunk (on the synchronous scheduler one
    at a time by direct calls, otherwise one, then two, four... at a time with dask) and
    stops at the first chunk with a clear pixel (usually the first), so the check costs a
    chunk of SCL rather than a second read of the whole band. The outcome is that
    of checking every pixel: the error needs every chunk read and found without a clear
    pixel.

    Args:
        scl: The SCL cube.
        region: Named in the error.
        scheduler: dask scheduler (default: :func:`senland_geo.store.in_process_scheduler`).

    Raises:
        UserError: No clear pixel, or the SCL imagery could not be read.
    """
    import dask
    import dask.array as da
    import dask.local
    import numpy as np

    data = scl.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data))
    blocks = list(np.ndindex(*data.numblocks))
    invalid = list(cube.SCL_INVALID)
    scheduler = scheduler or store.in_process_scheduler()
    if scheduler is dask.local.get_sync:
        # One block at a time in this thread: a plain aligned read is a direct call, and
        # numpy tests it (no dask graph per block).
        for block in blocks:
            with store.imagery_errors_as_user_errors():
                values = store._block_source(data, block)()
            if not np.isin(values, invalid).all():
                return
    else:
        start, step = 0, 1
        while start < len(blocks):
            batch = blocks[start : start + step]
            flags = [(~da.isin(data.blocks[b], invalid)).any() for b in batch]
            start, step = start + step, 2 * step
            with store.imagery_errors_as_user_errors():
                found = dask.compute(*flags, scheduler=scheduler)
            if any(found):
                return
    raise UserError(
        f"every scene of region {region.name!r} is cloud, shadow, cirrus, snow or no data "
        f"in {region.datetime} ({scl.sizes['time']} scenes, SCL checked); widen the "
        "dates, the --season or the bbox, or choose another --catalog"
    )
