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


def cached_cube(
    region: Region,
    *,
    catalog: str | None = None,
    composite: str = "median",
    label_tile_root: str | None = None,
) -> Path:
    """Return the region's cube store, building it into the cache when missing."""
    folder = cache_dir() / "cubes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{region.name}-{composite}-{cube_key(region, catalog, composite)}.zarr"
    if path.exists():
        from senland_geo import store

        try:
            store.open_cube(path)
            return path
        except UserError:
            pass  # incomplete: rebuild
    return build_region_cube(
        region,
        path,
        catalog=catalog,
        composite=composite,
        overwrite=True,
        label_tile_root=label_tile_root,
    )


def predict_region(
    region_name: str,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    catalog: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    start: str | None = None,
    end: str | None = None,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Map a region: build or reuse its cube, run the model, write a COG.

    Args:
        region_name: Region plugin name.
        out: Destination ``.tif``.
        checkpoint: Model checkpoint (default: the one shipped for the region).
        catalog: Override of the region's catalog.
        bbox: Override of the region's bbox.
        start: Override of the season start.
        end: Override of the season end.
        tile: Tile size.
        overlap: Tile overlap.
        batch_size: Tiles per forward pass.
        progress: Show progress bars.

    Returns:
        The map path.
    """
    from senland_geo import checkpoint as ckpt
    from senland_geo.predict import check_compatible, check_output_path, predict_cube

    out = check_output_path(out)
    region = resolve_region(region_name, bbox=bbox, start=start, end=end)
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint(region)
    meta = ckpt.read_meta(checkpoint)
    check_compatible(meta, list(region.bands) + ["SCL"], region.classes)
    composite = "monthly" if meta.get("temporal") else "median"
    cube = cached_cube(region, catalog=catalog, composite=composite)
    return predict_cube(
        cube,
        checkpoint,
        out,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        progress=progress,
        provenance={"region": region.name, "catalog": catalog or region.catalog},
    )
