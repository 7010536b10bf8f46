"""ESA WorldCover 10 m (2020 v100, 2021 v200) as a label source.

WorldCover is published as 3 x 3 degree Cloud-Optimized GeoTIFF tiles in EPSG:4326 (pixel
1/12000 degree), named by their south-west corner (``N00E006`` covers 0..3 N, 6..9 E), on a
public bucket::

    https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/ESA_WorldCover_10m_2021_v200_N00E006_Map.tif
    https://esa-worldcover.s3.eu-central-1.amazonaws.com/v100/2020/map/ESA_WorldCover_10m_2020_v100_N00E006_Map.tif

:func:`worldcover_labels` finds the tiles under a target grid, reads only the windows it
needs (GDAL ``/vsicurl`` for HTTP, plain files otherwise), and warps them with nearest
neighbour onto the grid, so the codes (10, 20, ... 100, see
:data:`senland_geo.classes.WORLDCOVER`) are kept. Tiles that do not exist (open ocean has
none) give 0, the no-data code; any other read failure raises :class:`WorldCoverError`.
"""

from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from senland_geo.classes import NODATA_CODE, WORLDCOVER
from senland_geo.errors import UserError

if TYPE_CHECKING:
    import xarray as xr
    from affine import Affine

#: Root of the public WorldCover bucket (HTTPS, no credentials).
PUBLIC_ROOT = "https://esa-worldcover.s3.eu-central-1.amazonaws.com"

#: Path of a map tile under a root, per product year.
TILE_TEMPLATES: dict[str, str] = {
    "2020": "v100/2020/map/ESA_WorldCover_10m_2020_v100_{tile}_Map.tif",
    "2021": "v200/2021/map/ESA_WorldCover_10m_2021_v200_{tile}_Map.tif",
}

#: WorldCover codes (no-data 0 excluded).
CODES: tuple[int, ...] = tuple(WORLDCOVER.codes)

#: GDAL settings for reading COGs over HTTP.
GDAL_HTTP_ENV: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "VSI_CACHE": True,
}


class WorldCoverError(UserError):
    """A WorldCover tile could not be read (other than "tile does not exist")."""


@dataclass(frozen=True)
class TargetGrid:
    """A north-up raster grid: where labels are written.

    Attributes:
        transform: Affine transform of the upper-left corner (pixel edges).
        shape: ``(height, width)`` in pixels.
        crs: CRS as an ``EPSG:xxxx`` string (anything rasterio accepts).
    """

    transform: Affine
    shape: tuple[int, int]
    crs: str

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.shape)
        if h <= 0 or w <= 0:
            raise ValueError(f"target grid shape {self.shape!r} must be positive (height, width)")
        if self.transform.b != 0 or self.transform.d != 0 or self.transform.e >= 0:
            raise ValueError(
                f"target grid transform {tuple(self.transform)[:6]} must be north-up "
                "(no rotation, negative y pixel size)"
            )
        object.__setattr__(self, "shape", (h, w))

    @classmethod
    def from_bounds(cls, bounds: Sequence[float], resolution: float, crs: str | int) -> TargetGrid:
        """Grid covering ``bounds`` (west, south, east, north in ``crs``), snapped outward.

        Pixel edges fall on multiples of ``resolution``, as on Sentinel-2 grids.
        """
        from affine import Affine

        if not resolution > 0:
            raise ValueError(f"resolution {resolution!r} must be positive")
        west, south, east, north = (float(v) for v in bounds)
        if west >= east or south >= north:
            raise ValueError(f"bounds {tuple(bounds)} must be (west, south, east, north)")
        x0 = math.floor(west / resolution) * resolution
        y0 = math.ceil(north / resolution) * resolution
        width = math.ceil(round((east - x0) / resolution, 6))
        height = math.ceil(round((y0 - south) / resolution, 6))
        return cls(Affine(resolution, 0, x0, 0, -resolution, y0), (height, width), _crs_str(crs))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in the grid's CRS."""
        t, (h, w) = self.transform, self.shape
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)

    def bbox_4326(self) -> tuple[float, float, float, float]:
        """The grid's footprint as a lon/lat bbox (densified edges)."""
        from rasterio.warp import transform_bounds

        return transform_bounds(self.crs, "EPSG:4326", *self.bounds, densify_pts=21)


def _crs_str(crs: str | int) -> str:
    return f"EPSG:{crs}" if isinstance(crs, int) else str(crs)


def tile_name(lat: int, lon: int) -> str:
    """Name of the tile whose south-west corner is ``(lat, lon)``, e.g. ``N00E006``.

    Raises:
        ValueError: The corner is not on the 3-degree grid.
    """
    if lat % 3 or lon % 3:
        raise ValueError(
            f"WorldCover tile corner ({lat}, {lon}) must be multiples of 3 degrees; "
            "use tiles_for_bbox() to find the tiles of an area"
        )
    return f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}"


def tiles_for_bbox(bbox: Sequence[float]) -> list[str]:
    """Names of the 3 x 3 degree tiles intersecting ``bbox`` (west, south, east, north).

    A bbox edge lying exactly on a tile edge does not pull in the neighbouring tile.

    Example:
        >>> tiles_for_bbox((6.4, 0.0, 6.8, 0.5))
        ['N00E006']
        >>> tiles_for_bbox((-16.45, 12.42, -16.05, 12.72))
        ['N12W018']
    """
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ValueError(
            f"bbox {tuple(bbox)} must be (west, south, east, north) in degrees, "
            "west < east, south < north"
        )
    lats = range(math.floor(south / 3) * 3, math.ceil(north / 3) * 3, 3)
    lons = range(math.floor(west / 3) * 3, math.ceil(east / 3) * 3, 3)
    return [tile_name(la, lo) for la in lats for lo in lons if -90 <= la < 90 and lo < 180]


def tile_url(tile: str, version: str = "2021", tile_root: str | os.PathLike | None = None) -> str:
    """URL or path of a map tile.

    Args:
        tile: Tile name, e.g. ``N00E006``.
        version: Product year, ``"2020"`` (v100) or ``"2021"`` (v200).
        tile_root: Public bucket if None; else an ``http(s)://`` or ``s3://`` root, or a local
            directory laid out like the bucket (``v200/2021/map/...``).
    """
    template = _template(version)
    rel = template.format(tile=tile)
    if tile_root is None:
        return f"{PUBLIC_ROOT}/{rel}"
    root = os.fspath(tile_root)
    if "://" in root:
        return f"{root.rstrip('/')}/{rel}"
    return str(Path(root) / rel)


def _template(version: str) -> str:
    try:
        return TILE_TEMPLATES[str(version)]
    except KeyError:
        raise ValueError(
            f"WorldCover version {version!r} unknown; choose one of {', '.join(TILE_TEMPLATES)}"
        ) from None


def gdal_path(url: str) -> str:
    """GDAL path of a tile URL: ``/vsicurl/`` for HTTP, ``/vsis3/`` for S3, else unchanged."""
    if url.startswith(("http://", "https://")):
        return f"/vsicurl/{url}"
    if url.startswith("s3://"):
        return f"/vsis3/{url[5:]}"
    return url


def _tile_exists(url: str, retries: int = 3, backoff: float = 0.3) -> bool:
    """Whether a tile exists: False for 404 (or S3's 403 for a missing key).

    Raises:
        WorldCoverError: The server kept failing (5xx, connection refused, timeout).
    """
    if "://" not in url:
        return Path(url).is_file()
    if url.startswith("s3://"):
        return True  # let GDAL decide; credentials/config are the user's
    last: Exception | None = None
    for attempt in range(retries):
        request = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=30):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or (exc.code == 403 and "amazonaws.com" in url):
                return False
            last = exc
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc
        if attempt + 1 < retries:
            time.sleep(backoff * 2**attempt)
    raise WorldCoverError(
        f"cannot reach WorldCover tile {url}: {last}; check the network or tile_root"
    )


def resolve_grid(
    bbox: Sequence[float] | None = None,
    epsg: int | str | None = None,
    resolution: float = 10.0,
    *,
    bounds: Sequence[float] | None = None,
    transform: Affine | None = None,
    shape: tuple[int, int] | None = None,
    grid: TargetGrid | None = None,
) -> TargetGrid:
    """Build the target grid from one of: ``grid``; ``transform`` + ``shape`` (+ ``epsg``);
    ``bounds`` in ``epsg`` + ``resolution``; or a lon/lat ``bbox`` + ``epsg`` + ``resolution``.
    """  # noqa: D205
    if grid is not None:
        return grid
    if transform is not None or shape is not None:
        if transform is None or shape is None or epsg is None:
            raise ValueError("a target grid needs transform, shape and epsg together")
        return TargetGrid(transform, tuple(shape), _crs_str(epsg))  # type: ignore[arg-type]
    if epsg is None:
        raise ValueError("give epsg (e.g. 32628) with bbox or bounds, or a TargetGrid")
    if bounds is not None:
        return TargetGrid.from_bounds(bounds, resolution, epsg)
    if bbox is not None:
        from rasterio.warp import transform_bounds

        utm = transform_bounds("EPSG:4326", _crs_str(epsg), *bbox, densify_pts=21)
        return TargetGrid.from_bounds(utm, resolution, epsg)
    raise ValueError("give a target: bbox, bounds, transform + shape, or grid")


def worldcover_labels(
    bbox: Sequence[float] | None = None,
    epsg: int | str | None = None,
    resolution: float = 10.0,
    *,
    bounds: Sequence[float] | None = None,
    transform: Affine | None = None,
    shape: tuple[int, int] | None = None,
    grid: TargetGrid | None = None,
    version: str = "2021",
    tile_root: str | os.PathLike | None = None,
    as_dataarray: bool = False,
) -> np.ndarray | xr.DataArray:
    """WorldCover codes on a target grid (nearest neighbour; 0 where there is no tile/data).

    The target grid is, in order of precedence: ``grid``; ``transform`` + ``shape`` in
    ``epsg``; ``bounds`` (west, south, east, north in ``epsg``) at ``resolution``; or the
    lon/lat ``bbox`` projected to ``epsg`` at ``resolution`` (edges snapped outward to
    multiples of ``resolution``).

    Args:
        bbox: ``(west, south, east, north)`` in degrees.
        epsg: EPSG code (or CRS string) of the target grid, e.g. 32628.
        resolution: Target pixel size in CRS units (metres for UTM).
        bounds: Target bounds in the target CRS.
        transform: Target affine transform (with ``shape``).
        shape: Target ``(height, width)``.
        grid: A ready :class:`TargetGrid`.
        version: ``"2021"`` (v200) or ``"2020"`` (v100).
        tile_root: Where the tiles are: None for the public bucket, an ``http(s)://`` URL or a
            local directory with the bucket's layout (``v200/2021/map/...``).
        as_dataarray: Return an ``xarray.DataArray`` (dims ``y, x``, pixel-centre coords, CRS
            written with rioxarray) instead of a numpy array.

    Returns:
        uint8 array of shape ``(height, width)`` holding WorldCover codes (0 = no data).

    Raises:
        WorldCoverError: A tile exists but could not be read, or the server keeps failing.
        ValueError: Bad target grid or version.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.vrt import WarpedVRT

    _template(version)
    target = resolve_grid(
        bbox, epsg, resolution, bounds=bounds, transform=transform, shape=shape, grid=grid
    )
    h, w = target.shape
    out = np.zeros((h, w), dtype=np.uint8)
    tiles = tiles_for_bbox(_clamp_bbox(target.bbox_4326()))
    used: list[str] = []
    with rasterio.Env(**GDAL_HTTP_ENV):
        for tile in tiles:
            url = tile_url(tile, version, tile_root)
            if not _tile_exists(url):
                continue  # no tile: open ocean (or outside the product)
            try:
                with rasterio.open(gdal_path(url)) as src:
                    with WarpedVRT(
                        src,
                        crs=target.crs,
                        transform=target.transform,
                        width=w,
                        height=h,
                        resampling=Resampling.nearest,
                        src_nodata=NODATA_CODE,
                        nodata=NODATA_CODE,
                        # ~exact transformer: true pixel-centre nearest (0 is rejected)
                        tolerance=1e-9,
                        dtype="uint8",
                    ) as vrt:
                        data = vrt.read(1)
            except RasterioIOError as exc:
                raise WorldCoverError(f"cannot read WorldCover tile {url}: {exc}") from exc
            np.copyto(out, data, where=(out == NODATA_CODE) & (data != NODATA_CODE))
            used.append(tile)
    if not as_dataarray:
        return out
    return _to_dataarray(out, target, version, used)


def _clamp_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    west, south, east, north = bbox
    return (max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0))


def _to_dataarray(
    data: np.ndarray, target: TargetGrid, version: str, tiles: list[str]
) -> xr.DataArray:
    import xarray as xr

    t, (h, w) = target.transform, target.shape
    x = t.c + (np.arange(w) + 0.5) * t.a
    y = t.f + (np.arange(h) + 0.5) * t.e
    da = xr.DataArray(
        data,
        dims=("y", "x"),
        coords={"y": y, "x": x},
        name="worldcover",
        attrs={
            "source": f"ESA WorldCover {version} ({_template(version).split('/')[0]})",
            "tiles": ",".join(tiles),
            "class_table": WORLDCOVER.name,
            "nodata": NODATA_CODE,
            "license": "CC-BY-4.0, (c) ESA WorldCover project",
        },
    )
    try:
        import rioxarray  # noqa: F401

        da = da.rio.write_crs(target.crs).rio.write_transform(t).rio.write_nodata(NODATA_CODE)
    except ImportError:  # pragma: no cover - rioxarray is a core dependency
        da.attrs["crs"] = target.crs
    return da
