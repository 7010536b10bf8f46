"""Region-level workflows behind the CLI: cube cache, train, predict."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from senland_geo.build import build_region_cube
from senland_geo.errors import UserError
from senland_geo.regions import Region, get_region

#: Checkpoints shipped in the package: region name -> file under senland_geo/checkpoints.
PACKAGED_CHECKPOINTS: dict[str, str] = {
    "brandenburg": "brandenburg-unet-resnet34-slim.pt",
}


def cache_dir() -> Path:
    """Folder for cached cubes (``$SENLAND_GEO_CACHE`` or ``~/.cache/senland-geo``)."""
    root = os.environ.get("SENLAND_GEO_CACHE") or Path.home() / ".cache" / "senland-geo"
    return Path(root)


def resolve_region(
    name: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Region:
    """Look up a region and apply command-line overrides, validating them.

    Raises:
        UserError: Unknown region or an invalid override (the message names the value).
    """
    region = get_region(name)
    changes: dict[str, Any] = {}
    if bbox is not None:
        changes.update(bbox=tuple(bbox), grid_bounds=None)
    if start is not None or end is not None:
        changes["time_range"] = (start or region.time_range[0], end or region.time_range[1])
    if not changes:
        return region
    try:
        return region.replace(**changes)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def default_checkpoint(region: Region) -> Path:
    """The checkpoint shipped for a region.

    Raises:
        UserError: None is shipped for this region.
    """
    name = PACKAGED_CHECKPOINTS.get(region.name)
    if name is None:
        raise UserError(
            f"no checkpoint is shipped for region {region.name!r}; train one with "
            f"'senland-geo train' and pass it with --checkpoint"
        )
    return Path(str(files("senland_geo") / "checkpoints" / name))


def cube_key(region: Region, catalog: str | None, composite: str) -> str:
    """A stable cache key for a region's cube."""
    payload = json.dumps([region.to_dict(), catalog, composite], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _cube_path(region: Region, catalog: str | None, composite: str) -> Path:
    folder = cache_dir() / "cubes"
    return folder / f"{region.name}-{composite}-{cube_key(region, catalog, composite)}.zarr"


def _is_complete(path: Path) -> bool:
    from senland_geo import store

    if not path.exists():
        return False
    try:
        store.open_cube(path)
    except UserError:
        return False  # incomplete: rebuild
    return True


def cached_cube(
    region: Region,
    *,
    catalog: str | None = None,
    composite: str = "median",
    label_tile_root: str | None = None,
) -> Path:
    """Return the region's cube store, building it into the cache when missing."""
    path = _cube_path(region, catalog, composite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_complete(path):
        return path
    return build_region_cube(
        region,
        path,
        catalog=catalog,
        composite=composite,
        overwrite=True,
        label_tile_root=label_tile_root,
    )


OFFLINE_OPTIONS = (
    "offline options: --catalog PATH of a local static STAC catalog with its COGs, "
    "--cube PATH of a cube built earlier with 'senland-geo cube', a cube already in the cache "
    "($SENLAND_GEO_CACHE), or --region brandenburg (the packaged sample)"
)


def check_reachable(catalog: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a remote catalog can't be reached.

    Args:
        catalog: Provider name, URL or local path (local paths are not probed).
        timeout: Seconds to wait for a TCP connection.

    Raises:
        UserError: The host does not resolve or refuses the connection; the message names
            the offline options.
    """
    import socket
    from urllib.parse import urlsplit

    from senland_geo import stac

    href = stac.PROVIDERS.get(catalog, catalog)
    if not href.startswith(("http://", "https://")):
        return
    parts = urlsplit(href)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot reach catalog {href} ({reason}; no network?); {OFFLINE_OPTIONS}"
        ) from None


def predict_cube_for_region(
    region: Region,
    meta: dict[str, Any],
    *,
    catalog: str | None = None,
    label_tile_root: str | None = None,
) -> Path:
    """Find or build the cube a checkpoint needs for a region (labels are not needed).

    A labelled cube already cached (e.g. by ``train``) is reused; otherwise the cube is
    built without labels, so prediction does not depend on the label source.

    Raises:
        UserError: The catalog is unreachable (with the offline options), nothing covers
            the bbox, or reading the imagery failed.
    """
    composite = "monthly" if meta.get("temporal") else "median"
    for candidate in (region, region.replace(labels=None)):
        path = _cube_path(candidate, catalog, composite)
        if _is_complete(path):
            return path
    check_reachable(catalog or region.catalog)
    from rasterio.errors import RasterioIOError

    try:
        return cached_cube(
            region.replace(labels=None),
            catalog=catalog,
            composite=composite,
            label_tile_root=label_tile_root,
        )
    except (OSError, RasterioIOError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"reading imagery for region {region.name!r} failed: {first}; retry, or use the "
            f"{OFFLINE_OPTIONS}"
        ) from None


def predict_region(
    region_name: str | None,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    catalog: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    start: str | None = None,
    end: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    blend: str = "hann",
    block: int = 512,
    batch_size: int | None = None,
    progress: bool = True,
    scheduler: str | None = "local",
    workers: int | None = None,
    probabilities: str | Path | None = None,
    quicklook: str | Path | None = None,
    cube: str | Path | None = None,
    label_tile_root: str | None = None,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Map a region: build or reuse its cube, run the model, write a COG.

    Args:
        region_name: Region plugin name (may be None when ``cube`` is given).
        out: Destination ``.tif``.
        checkpoint: Model checkpoint (default: the one shipped for the region).
        catalog: Override of the region's catalog.
        bbox: Override of the region's bbox.
        start: Override of the season start.
        end: Override of the season end.
        tile: Tile: the core each model pass predicts, in pixels (a multiple of 32;
            default :data:`senland_geo.predict.DEFAULT_TILE`).
        overlap: Overlap of neighbouring model inputs in pixels (a multiple of 64): the
            model sees ``overlap / 2`` pixels of context on each side of a tile (default
            :data:`senland_geo.predict.DEFAULT_OVERLAP`).
        blend: ``hann`` (overlapping predictions averaged with cosine-tapered weights) or
            ``crop`` (each input's core kept); see :func:`senland_geo.predict.predict_cube`.
        block: Pixels of a tile row predicted as one unit of work (one dask task); does
            not change the map.
        batch_size: Model inputs per forward pass (default: about 0.5 Mpx per pass).
        progress: Show progress bars.
        scheduler: ``"local"`` (a dask LocalCluster, the default), a dask scheduler
            address, or None to predict in this process.
        workers: LocalCluster workers (default 1 using every core).
        probabilities: Also write class probabilities to this ``.tif``.
        quicklook: Also write a PNG preview here.
        cube: Predict this cube store instead of building the region's.
        label_tile_root: Where WorldCover tiles are read from, if a cube is built with labels.
        stats: Filled with timings (see :func:`senland_geo.predict.predict_cube`).

    Returns:
        The map path.
    """
    from senland_geo import checkpoint as ckpt
    from senland_geo.predict import (
        DEFAULT_OVERLAP,
        DEFAULT_TILE,
        check_blend,
        check_compatible,
        check_output_path,
        check_tiling,
        predict_cube,
    )

    tile = DEFAULT_TILE if tile is None else tile
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    out = check_output_path(out)
    check_tiling(tile, overlap, block)
    check_blend(blend)
    if region_name is None and cube is None:
        raise UserError("give --region NAME or --cube PATH")
    region = resolve_region(region_name, bbox=bbox, start=start, end=end) if region_name else None
    if checkpoint is None:
        if region is None:
            raise UserError("--cube needs --checkpoint (the model to run on it)")
        checkpoint = default_checkpoint(region)
    checkpoint = Path(checkpoint)
    meta = ckpt.read_meta(checkpoint)
    provenance: dict[str, Any] = {}
    if region is not None:
        check_compatible(meta, list(region.bands) + ["SCL"], region.classes)
        provenance = {
            "region": region.name,
            "catalog": catalog or region.catalog,
            "bbox": json.dumps(list(region.bbox)),
            "time_range": "/".join(region.time_range),
        }
    if cube is None:
        assert region is not None
        cube = predict_cube_for_region(
            region, meta, catalog=catalog, label_tile_root=label_tile_root
        )
    return predict_cube(
        cube,
        checkpoint,
        out,
        tile=tile,
        overlap=overlap,
        blend=blend,
        block=block,
        batch_size=batch_size,
        progress=progress,
        provenance=provenance,
        scheduler=scheduler,
        workers=workers,
        probabilities=probabilities,
        quicklook=quicklook,
        stats=stats,
    )
