"""Write small synthetic-but-realistic Sentinel-2 L2A fixtures for the Senegal regions.

Seeded and deterministic: the same command writes the same pixels. Run it into any
directory (the tests run it into a session temporary directory)::

    python tests/data/senegal/make_data.py OUT_DIR

Layout written under ``OUT_DIR`` (about 4.5 MB in all)::

    manifest.json                          what was written: sets, grids, dates, cloud cover
    stac/collection.json                   the ``sentinel-2-l2a`` collection
    stac/items.json                        FeatureCollection of all items (templated hrefs)
    <set>/<item id>/<band>.tif             band-separate COGs (B02 ... B12, SCL)
    worldcover/<set>/v200/2021/map/ESA_WorldCover_10m_2021_v200_<tile>_Map.tif
    worldcover/<set>/v100/2020/map/ESA_WorldCover_10m_2020_v100_<tile>_Map.tif
    truth/<set>.tif                        the 10 m land-cover truth on the UTM grid

Fixture sets (``<set>``): ``casamance`` (4 dates, mixed cloud), ``dakar`` (3 dates) and
``sine-saloum`` (2 dates), where *every scene is cloudy*: every pixel of every date is cloud (SCL 8,
9), cirrus (10) or cloud shadow (3).

Images are 256 x 256 px at 10 m (B02, B03, B04, B08) and 128 x 128 px at 20 m (B05, B06,
B07, B8A, B11, B12, SCL) on the real UTM 28N grid (EPSG:32628), aligned with the Sentinel-2
MGRS tile each area falls in; uint16 (SCL uint8), DEFLATE, 256 px internal tiles, with
overviews. Reflectances are L2A digital numbers (reflectance x 10000, no BOA offset). The
WorldCover-like labels are uint8 COGs in EPSG:4326 at 1/12000 degree on the global WorldCover
pixel grid, laid out like the public bucket so ``tile_root=<base>/worldcover/<set>`` works.

STAC items follow Earth Search v1 (asset keys ``blue`` ... ``swir22``, ``scl``; ``eo``,
``proj`` with both ``proj:epsg`` and ``proj:code``, ``raster``, ``mgrs``/``grid`` fields and
``s2:mgrs_tile``). Their asset hrefs start with :data:`BASE_URL_TOKEN`; call
:func:`load_items` with the URL (or local directory) that serves ``OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_bounds, transform_geom
from scipy import ndimage

SEED = 20211
EPSG = 32628
SIZE = 256  # 10 m pixels per side
PAD = 24  # extra 10 m pixels around the truth map so labels cover the whole area
BASE_URL_TOKEN = "{{BASE_URL}}"
COLLECTION = "sentinel-2-l2a"
WC_RES = 1.0 / 12000.0  # WorldCover pixel size in degrees

#: Earth Search v1 asset key, Sentinel-2 band, resolution (m), centre wavelength, FWHM (um).
BANDS: tuple[tuple[str, str, int, float, float, str], ...] = (
    ("blue", "B02", 10, 0.49, 0.098, "Blue (band 2)"),
    ("green", "B03", 10, 0.56, 0.045, "Green (band 3)"),
    ("red", "B04", 10, 0.665, 0.038, "Red (band 4)"),
    ("rededge1", "B05", 20, 0.704, 0.019, "Red Edge 1 (band 5)"),
    ("rededge2", "B06", 20, 0.74, 0.018, "Red Edge 2 (band 6)"),
    ("rededge3", "B07", 20, 0.783, 0.028, "Red Edge 3 (band 7)"),
    ("nir", "B08", 10, 0.842, 0.145, "NIR 1 (band 8)"),
    ("nir08", "B8A", 20, 0.865, 0.033, "NIR 2 (band 8A)"),
    ("swir16", "B11", 20, 1.61, 0.143, "SWIR 1 (band 11)"),
    ("swir22", "B12", 20, 2.19, 0.242, "SWIR 2 (band 12)"),
)
BAND_ORDER = [b[1] for b in BANDS]

#: Dry-season surface reflectance x 10000 per WorldCover class, bands in BAND_ORDER.
SIGNATURES: dict[int, list[int]] = {
    10: [300, 550, 350, 900, 2200, 2700, 3000, 3100, 1800, 800],  # tree cover
    20: [550, 850, 950, 1350, 2000, 2300, 2500, 2600, 2900, 2000],  # shrubland
    30: [650, 950, 1150, 1500, 2100, 2400, 2600, 2700, 3100, 2200],  # grassland
    40: [750, 1050, 1350, 1650, 2000, 2300, 2450, 2600, 3300, 2500],  # cropland
    50: [1150, 1350, 1550, 1700, 1900, 2000, 2100, 2200, 2600, 2300],  # built-up
    60: [1350, 1750, 2250, 2500, 2700, 2800, 2900, 3000, 3700, 3200],  # bare / sparse
    80: [650, 750, 480, 350, 260, 230, 200, 180, 80, 50],  # water
    90: [400, 650, 550, 950, 1700, 2000, 2200, 2300, 1500, 700],  # herbaceous wetland
    95: [260, 460, 300, 700, 1700, 2100, 2300, 2400, 1200, 500],  # mangroves
}
VEGETATION = {10, 20, 30, 40, 90, 95}

# SCL codes (Sen2Cor scene classification).
SCL_NODATA, SCL_SATURATED, SCL_DARK, SCL_SHADOW, SCL_VEG, SCL_NOTVEG = 0, 1, 2, 3, 4, 5
SCL_WATER, SCL_UNCLASSIFIED, SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = (
    6, 7, 8, 9, 10, 11,
)  # fmt: skip


@dataclass(frozen=True)
class Scene:
    """One acquisition of a fixture set.

    Attributes:
        datetime: ISO UTC timestamp of the acquisition.
        platform: ``sentinel-2a`` or ``sentinel-2b``.
        cloud: Target fraction of cloudy (SCL 8/9/10) pixels.
        greenness: 0 (dry season) .. 1 (peak of the rainy season).
        nodata_corner: Leave a no-data triangle (swath edge) in the lower-left corner.
        all_masked: Every pixel is cloud, cirrus or shadow.
    """

    datetime: str
    platform: str
    cloud: float
    greenness: float
    nodata_corner: bool = False
    all_masked: bool = False


@dataclass(frozen=True)
class FixtureSet:
    """A fixture area: a 2.56 km square inside a region, with its scenes.

    Attributes:
        name: Set name (also the directory name).
        region: Name of the senland-geo region the square lies in.
        center: ``(lon, lat)`` of the square's centre.
        landscape: Generator of the land-cover truth (``river``, ``coast``, ``delta``).
        scenes: The acquisitions.
        all_cloudy: Whether every scene is fully cloud/shadow covered.
    """

    name: str
    region: str
    center: tuple[float, float]
    landscape: str
    scenes: tuple[Scene, ...]
    all_cloudy: bool = False


SETS: tuple[FixtureSet, ...] = (
    FixtureSet(
        "casamance",
        "casamance",
        (-16.27, 12.57),
        "river",
        (
            Scene("2021-01-13T11:35:41.024000Z", "sentinel-2a", 0.02, 0.30),
            Scene("2021-03-14T11:35:40.112000Z", "sentinel-2a", 0.35, 0.15),
            Scene("2021-04-18T11:35:42.870000Z", "sentinel-2b", 0.04, 0.10, nodata_corner=True),
            Scene("2021-10-20T11:35:45.301000Z", "sentinel-2a", 0.08, 0.95),
        ),
    ),
    FixtureSet(
        "dakar",
        "dakar",
        (-17.40, 14.72),
        "coast",
        (
            Scene("2021-01-05T11:36:49.410000Z", "sentinel-2b", 0.01, 0.15),
            Scene("2021-02-09T11:36:47.993000Z", "sentinel-2a", 0.25, 0.10),
            Scene("2021-03-21T11:36:51.207000Z", "sentinel-2b", 0.06, 0.05),
        ),
    ),
    FixtureSet(
        "sine-saloum",
        "sine-saloum",
        (-16.60, 13.88),
        "delta",
        (
            Scene("2021-07-24T11:35:55.000000Z", "sentinel-2b", 0.93, 0.80, all_masked=True),
            Scene("2021-09-07T11:35:58.000000Z", "sentinel-2a", 0.97, 1.00, all_masked=True),
        ),
        all_cloudy=True,
    ),
)


# --------------------------------------------------------------------------------------------
# Grid helpers
# --------------------------------------------------------------------------------------------
def utm_point(lon: float, lat: float) -> tuple[float, float]:
    """Project lon/lat to EPSG:32628."""
    from pyproj import Transformer

    t = Transformer.from_crs(4326, EPSG, always_xy=True)
    return t.transform(lon, lat)


def mgrs_tile(x: float, y: float, zone: int = 28) -> tuple[str, float, float]:
    """Return the MGRS tile id (e.g. ``28PCU``) and Sentinel-2 tile origin for a UTM point.

    The origin is the upper-left corner of the 109.8 km Sentinel-2 tile: the west edge of
    the 100 km square and 40 m above its north edge (as in tile 28QCH).
    """
    lon, lat = transform_geom(
        f"EPSG:{EPSG}", "EPSG:4326", {"type": "Point", "coordinates": (x, y)}
    )["coordinates"]
    band = "CDEFGHJKLMNPQRSTUVWX"[int((lat + 80) // 8)]
    cols = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zone - 1) % 3]
    col = cols[int(x // 100000) - 1]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    row = rows[(int(y // 100000) + (5 if zone % 2 == 0 else 0)) % 20]
    ulx = math.floor(x / 100000) * 100000.0
    uly = math.floor(y / 100000) * 100000.0 + 100000.0 + 40.0
    return f"{zone}{band}{col}{row}", ulx, uly


def worldcover_tile(lon: float, lat: float) -> str:
    """WorldCover 3x3 degree tile name of the tile holding ``(lon, lat)``."""
    la, lo = math.floor(lat / 3) * 3, math.floor(lon / 3) * 3
    return f"{'N' if la >= 0 else 'S'}{abs(la):02d}{'E' if lo >= 0 else 'W'}{abs(lo):03d}"


# --------------------------------------------------------------------------------------------
# Synthetic fields
# --------------------------------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean, unit std."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def landcover(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Return an ``n x n`` uint8 WorldCover-coded land-cover map for a landscape kind."""
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    if kind == "river":  # Casamance: a meandering river with mangroves, forest and fields
        centre = n * 0.45 + 30 * np.sin(xx / 45.0) + 6 * smooth_noise(rng, (n, n), 20)
        water = np.abs(yy - centre) < 14 + 3 * smooth_noise(rng, (n, n), 15)
        weights = {10: 0.5, 20: 0.1, 30: 0.0, 40: 0.45, 50: -0.8, 60: -1.2, 90: -0.6}
    elif kind == "coast":  # Dakar: ocean to the west, dense built-up, bare sand
        coast = n * 0.22 + 15 * np.sin(yy / 60.0) + 5 * smooth_noise(rng, (n, n), 12)
        water = xx < coast
        weights = {10: -1.0, 20: -0.1, 30: 0.1, 40: -0.6, 50: 0.9, 60: 0.4, 90: -1.5}
    elif kind == "delta":  # Saloum: channels, mangroves, salt flats
        channels = np.abs(smooth_noise(rng, (n, n), 18)) < 0.18
        water = channels | (smooth_noise(rng, (n, n), 30) > 1.3)
        weights = {10: -0.4, 20: 0.2, 30: 0.0, 40: 0.3, 50: -1.2, 60: 0.3, 90: 0.0}
    else:
        raise ValueError(f"unknown landscape {kind!r}")
    scores = {c: smooth_noise(rng, (n, n), 16) + w for c, w in weights.items()}
    classes = np.array(list(scores))
    lc = classes[np.argmax(np.stack(list(scores.values())), axis=0)].astype(np.uint8)
    dist = ndimage.distance_transform_edt(~water)
    if kind in ("river", "delta"):
        mangrove = (dist > 0) & (dist < 10 + 4 * smooth_noise(rng, (n, n), 8))
        lc[mangrove] = 95
    lc[water] = 80
    return ndimage.median_filter(lc, size=3)  # tidy single-pixel speckle like a real map


def reflectance(
    rng: np.random.Generator, lc: np.ndarray, greenness: float, texture: np.ndarray
) -> np.ndarray:
    """Surface reflectance x 10000 (float32, (band, y, x)) for a land-cover map."""
    n = lc.shape[0]
    sig = np.zeros((len(BAND_ORDER), n, n), np.float32)
    for code, values in SIGNATURES.items():
        m = lc == code
        if not m.any():
            continue
        v = np.array(values, np.float32)
        if code in VEGETATION:
            g = greenness * (1.6 if code in (30, 40) else 0.6)
            v = v * np.array([1, 1, 1 - 0.35 * g, 1, 1 + 0.2 * g, 1 + 0.3 * g, 1 + 0.35 * g,
                              1 + 0.35 * g, 1 - 0.15 * g, 1 - 0.3 * g], np.float32)  # fmt: skip
        sig[:, m] = v[:, None]
    sig *= 1.0 + 0.03 * texture[None]
    return np.clip(sig, 1, 15000)


def scl_clear(rng: np.random.Generator, lc: np.ndarray, greenness: float) -> np.ndarray:
    """Sen2Cor-like scene classification of a clear scene (20 m, uint8)."""
    scl = np.where(lc == 80, SCL_WATER, SCL_NOTVEG).astype(np.uint8)
    veg = np.isin(lc, [10, 95, 90]) | (np.isin(lc, [20, 30, 40]) & (greenness > 0.25))
    scl[veg] = SCL_VEG
    scl[(lc == 50) & (rng.random(lc.shape) < 0.03)] = SCL_DARK  # building shadows
    scl[(lc == 60) & (rng.random(lc.shape) < 0.01)] = SCL_SNOW  # bright sand taken as snow
    scl[rng.random(lc.shape) < 0.002] = SCL_UNCLASSIFIED
    scl[rng.random(lc.shape) < 0.0005] = SCL_SATURATED
    return scl


def mode2x2(a: np.ndarray) -> np.ndarray:
    """Down-sample a class map by 2 taking the upper-left pixel of each 2x2 block."""
    return a[::2, ::2]


def mean2x2(a: np.ndarray) -> np.ndarray:
    """Down-sample (band, y, x) by 2 with a 2x2 mean."""
    b, h, w = a.shape
    return a.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def write_cog(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: str,
    nodata: int,
    resampling: Resampling,
    tags: dict[str, str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> None:
    """Write a single-band COG: DEFLATE, 256 px tiles, overviews 2x and 4x."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = data.shape
    profile = dict(
        driver="GTiff", width=w, height=h, count=1, dtype=data.dtype.name, crs=crs,
        transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
    )  # fmt: skip
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data, 1)
            if tags:
                tmp.update_tags(**tags)
            if colormap:
                tmp.write_colormap(1, colormap)
            tmp.build_overviews([2, 4], resampling)
        with mem.open() as src:
            rasterio.shutil.copy(
                src, path, driver="COG", COMPRESS="DEFLATE",
                PREDICTOR="2" if data.dtype == np.uint16 else "NO",
                BLOCKSIZE="256", LEVEL="9", OVERVIEWS="FORCE_USE_EXISTING",
            )  # fmt: skip


def _footprint(transform: Affine, shape: tuple[int, int]) -> tuple[dict, list[float]]:
    h, w = shape
    x0, y0 = transform.c, transform.f
    x1, y1 = x0 + w * transform.a, y0 + h * transform.e
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    geom = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [[round(c[0], 7), round(c[1], 7)] for c in geom["coordinates"][0]]
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    return {"type": "Polygon", "coordinates": [coords]}, [
        min(lons), min(lats), max(lons), max(lats),
    ]  # fmt: skip


def make_item(
    fset: FixtureSet,
    scene: Scene,
    item_id: str,
    mgrs: str,
    t10: Affine,
    scl: np.ndarray,
) -> dict:
    """Build an Earth Search v1 style STAC item for one scene."""
    geometry, bbox = _footprint(t10, (SIZE, SIZE))
    t20 = t10 @ Affine.scale(2)
    total = scl.size
    pct = {k: round(float((scl == k).sum()) * 100.0 / total, 6) for k in range(12)}
    cloud_cover = round(pct[8] + pct[9] + pct[10], 6)
    date = scene.datetime[:10].replace("-", "")
    assets: dict[str, dict] = {}
    for key, band, res, wl, fwhm, title in BANDS:
        t, n = (t10, SIZE) if res == 10 else (t20, SIZE // 2)
        assets[key] = {
            "href": f"{BASE_URL_TOKEN}/{fset.name}/{item_id}/{band}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": f"{title} - {res}m",
            "eo:bands": [{"name": key, "common_name": key if key in ("blue", "green", "red", "nir")
                          else key.rstrip("0123456789") if key.startswith("rededge") else key,
                          "description": title, "center_wavelength": wl,
                          "full_width_half_max": fwhm}],
            "gsd": res,
            "proj:shape": [n, n],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                              "spatial_resolution": res, "scale": 0.0001, "offset": 0}],
            "roles": ["data", "reflectance"],
        }  # fmt: skip
    assets["scl"] = {
        "href": f"{BASE_URL_TOKEN}/{fset.name}/{item_id}/SCL.tif",
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": "Scene classification map (SCL)",
        "proj:shape": [SIZE // 2, SIZE // 2],
        "proj:transform": [t20.a, t20.b, t20.c, t20.d, t20.e, t20.f],
        "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
        "roles": ["data", "reflectance"],
    }
    sat = "S2A" if scene.platform.endswith("a") else "S2B"
    zone, lat_band, square = mgrs[:2], mgrs[2], mgrs[3:]
    props = {
        "datetime": scene.datetime,
        "created": "2022-11-06T04:13:42.000Z",
        "updated": "2022-11-06T04:13:42.000Z",
        "platform": scene.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": cloud_cover,
        "proj:epsg": EPSG,
        "proj:code": f"EPSG:{EPSG}",
        "mgrs:utm_zone": int(zone),
        "mgrs:latitude_band": lat_band,
        "mgrs:grid_square": square,
        "grid:code": f"MGRS-{mgrs}",
        "s2:mgrs_tile": mgrs,
        "view:sun_azimuth": 120.0 + 10 * scene.greenness,
        "view:sun_elevation": 55.0 + 10 * scene.greenness,
        "s2:nodata_pixel_percentage": pct[0],
        "s2:saturated_defective_pixel_percentage": pct[1],
        "s2:dark_features_percentage": pct[2],
        "s2:cloud_shadow_percentage": pct[3],
        "s2:vegetation_percentage": pct[4],
        "s2:not_vegetated_percentage": pct[5],
        "s2:water_percentage": pct[6],
        "s2:unclassified_percentage": pct[7],
        "s2:medium_proba_clouds_percentage": pct[8],
        "s2:high_proba_clouds_percentage": pct[9],
        "s2:thin_cirrus_percentage": pct[10],
        "s2:snow_ice_percentage": pct[11],
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": "03.00",
        "s2:product_uri": f"{sat}_MSIL2A_{date}T113321_N0300_R080_T{mgrs}_{date}T140000.SAFE",
        "s2:sequence": "0",
        "earthsearch:boa_offset_applied": False,
        "senland:fixture_set": fset.name,
    }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": COLLECTION,
        "bbox": bbox,
        "geometry": geometry,
        "properties": props,
        "links": [],
        "assets": assets,
    }


def make_collection(items: list[dict]) -> dict:
    """The ``sentinel-2-l2a`` collection covering all fixture items."""
    west = min(i["bbox"][0] for i in items)
    south = min(i["bbox"][1] for i in items)
    east = max(i["bbox"][2] for i in items)
    north = max(i["bbox"][3] for i in items)
    times = sorted(i["properties"]["datetime"] for i in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
        ],
        "id": COLLECTION,
        "title": "Sentinel-2 Level-2A (senland-geo synthetic Senegal fixtures)",
        "description": "Synthetic Sentinel-2 L2A COGs over small areas of Senegal, made by "
        "tests/data/senegal/make_data.py in the layout of Earth Search v1.",
        "license": "proprietary",
        "keywords": ["sentinel", "earth observation", "esa", "senegal", "synthetic"],
        "extent": {
            "spatial": {"bbox": [[west, south, east, north]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": {
            "platform": ["sentinel-2a", "sentinel-2b"],
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10, 20],
        },
        "item_assets": {
            key: {
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "title": title,
                "roles": ["data", "reflectance"],
            }
            for key, _b, _r, _w, _f, title in BANDS
        },  # fmt: skip
        "links": [],
    }


def make_set(out: Path, fset: FixtureSet, rng: np.random.Generator) -> tuple[list[dict], dict]:
    """Write one fixture set; return its items and its manifest entry."""
    from senland_geo.classes import WORLDCOVER

    xc, yc = utm_point(*fset.center)
    mgrs, ulx, uly = mgrs_tile(xc, yc)
    half = SIZE * 10 / 2
    x0 = ulx + 60 * math.floor((xc - half - ulx) / 60)
    y0 = uly - 60 * math.floor((uly - (yc + half)) / 60)
    t10 = Affine(10, 0, x0, 0, -10, y0)
    n_pad = SIZE + 2 * PAD
    truth_pad = landcover(rng, fset.landscape, n_pad)
    t_pad = Affine(10, 0, x0 - PAD * 10, 0, -10, y0 + PAD * 10)
    truth = truth_pad[PAD:-PAD, PAD:-PAD]
    write_cog(out / "truth" / f"{fset.name}.tif", truth, t10, f"EPSG:{EPSG}", 0,
              Resampling.nearest)  # fmt: skip
    texture = smooth_noise(rng, (SIZE, SIZE), 3.0)

    items = []
    for scene in fset.scenes:
        date = scene.datetime[:10].replace("-", "")
        item_id = f"{'S2A' if scene.platform.endswith('a') else 'S2B'}_{mgrs}_{date}_0_L2A"
        refl = reflectance(rng, truth, scene.greenness, texture)
        lc20 = mode2x2(truth)
        scl = scl_clear(rng, lc20, scene.greenness)
        n20 = SIZE // 2
        # Clouds (20 m): a smooth field thresholded at the wanted fraction.
        field = smooth_noise(rng, (n20, n20), 7)
        cloud = field > np.quantile(field, 1 - scene.cloud) if scene.cloud > 0 else field > 99
        high = field > np.quantile(field, 1 - scene.cloud * 0.6) if scene.cloud > 0 else cloud
        cirrus_field = smooth_noise(rng, (n20, n20), 12)
        cirrus = (cirrus_field > 1.6) & ~cloud & (scene.cloud > 0.05)
        shadow = np.roll(np.roll(cloud, 6, axis=0), -4, axis=1) & ~cloud & ~cirrus
        if scene.all_masked:
            shadow = ~cloud & ~cirrus
        scl[shadow] = SCL_SHADOW
        scl[cirrus] = SCL_CIRRUS
        scl[cloud] = SCL_CLOUD_MED
        scl[high] = SCL_CLOUD_HIGH
        up = np.kron  # nearest up-sampling of 20 m masks to 10 m
        ones = np.ones((2, 2), bool)
        c10, h10 = up(cloud, ones), up(high, ones)
        s10, ci10 = up(shadow, ones), up(cirrus, ones)
        bright = 5000 + 1500 * np.clip(smooth_noise(rng, (SIZE, SIZE), 12), -1.5, 1.5)
        refl[:, s10] *= 0.35
        refl[:, ci10] += 700
        refl[:, c10] = 0.3 * refl[:, c10] + 0.7 * bright[c10]
        refl[:, h10] = bright[h10] + 1500  # opaque
        if scene.nodata_corner:  # swath edge: a no-data triangle in the lower-left corner
            yy, xx = np.mgrid[0:SIZE, 0:SIZE]
            edge = yy - xx > SIZE * 0.55
            refl[:, edge] = 0
            scl[mode2x2(edge)] = SCL_NODATA
        dn = np.round(refl).astype(np.uint16)
        dn20 = np.round(mean2x2(refl)).astype(np.uint16)
        if scene.nodata_corner:
            dn20[:, mode2x2(edge)] = 0
        for i, (_key, band, res, *_rest) in enumerate(BANDS):
            data, t = (dn[i], t10) if res == 10 else (dn20[i], t10 @ Affine.scale(2))
            write_cog(out / fset.name / item_id / f"{band}.tif", data, t, f"EPSG:{EPSG}", 0,
                      Resampling.average)  # fmt: skip
        write_cog(out / fset.name / item_id / "SCL.tif", scl, t10 @ Affine.scale(2),
                  f"EPSG:{EPSG}", 0, Resampling.nearest)  # fmt: skip
        items.append(make_item(fset, scene, item_id, mgrs, t10, scl))

    # WorldCover-like labels in EPSG:4326 on the global 1/12000 degree grid.
    west, south, east, north = transform_bounds(f"EPSG:{EPSG}", "EPSG:4326",
                                                x0, y0 - SIZE * 10, x0 + SIZE * 10, y0)  # fmt: skip
    w_ = math.floor(west / WC_RES) * WC_RES
    n_ = math.ceil(north / WC_RES) * WC_RES
    width = math.ceil((east - w_) / WC_RES)
    height = math.ceil((n_ - south) / WC_RES)
    t_wc = Affine(WC_RES, 0, w_, 0, -WC_RES, n_)
    wc = np.zeros((height, width), np.uint8)
    reproject(
        truth_pad, wc, src_transform=t_pad, src_crs=f"EPSG:{EPSG}", dst_transform=t_wc,
        dst_crs="EPSG:4326", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0,
    )  # fmt: skip
    tile = worldcover_tile(*fset.center)
    legend = "".join(f"{c.code:<4}{c.name}\n" for c in WORLDCOVER.classes)
    for version, year in (("v200", "2021"), ("v100", "2020")):
        name = f"ESA_WorldCover_10m_{year}_{version}_{tile}_Map.tif"
        write_cog(
            out / "worldcover" / fset.name / version / year / "map" / name, wc, t_wc,
            "EPSG:4326", 0, Resampling.nearest,
            tags={"product_tile": tile, "legend": legend,
                  "title": f"synthetic WorldCover-like labels {year} (senland-geo fixture)"},
            colormap={0: (0, 0, 0, 0), **{c.code: (*c.rgb, 255) for c in WORLDCOVER.classes}},
        )  # fmt: skip

    manifest = {
        "region": fset.region,
        "center": list(fset.center),
        "epsg": EPSG,
        "mgrs_tile": mgrs,
        "transform_10m": [t10.a, t10.b, t10.c, t10.d, t10.e, t10.f],
        "shape_10m": [SIZE, SIZE],
        "bounds_utm": [x0, y0 - SIZE * 10, x0 + SIZE * 10, y0],
        "bbox": items[0]["bbox"],
        "all_cloudy": fset.all_cloudy,
        "worldcover_tile": tile,
        "worldcover_root": f"worldcover/{fset.name}",
        "truth": f"truth/{fset.name}.tif",
        "items": [
            {
                "id": it["id"],
                "datetime": it["properties"]["datetime"],
                "eo:cloud_cover": it["properties"]["eo:cloud_cover"],
            }
            for it in items
        ],  # fmt: skip
    }
    return items, manifest


def make_data(out_dir: str | Path, seed: int = SEED) -> dict:
    """Write every fixture set into ``out_dir``; return the manifest (also written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_items: list[dict] = []
    manifest: dict = {"seed": seed, "base_url_token": BASE_URL_TOKEN, "sets": {}}
    for i, fset in enumerate(SETS):
        rng = np.random.default_rng([seed, i])
        items, entry = make_set(out, fset, rng)
        all_items += items
        manifest["sets"][fset.name] = entry
    (out / "stac").mkdir(exist_ok=True)
    (out / "stac" / "collection.json").write_text(json.dumps(make_collection(all_items), indent=1))
    fc = {"type": "FeatureCollection", "features": all_items}
    (out / "stac" / "items.json").write_text(json.dumps(fc, indent=1))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_items(out_dir: str | Path, base_url: str, sets: list[str] | None = None) -> list[dict]:
    """Return the fixture items with asset hrefs rooted at ``base_url``.

    Args:
        out_dir: Directory written by :func:`make_data`.
        base_url: What serves ``out_dir``: an HTTP URL (``http://127.0.0.1:PORT/senegal``)
            or a local directory (``str(out_dir)``).
        sets: Only items of these fixture sets (default: all).
    """
    text = (Path(out_dir) / "stac" / "items.json").read_text()
    fc = json.loads(text.replace(BASE_URL_TOKEN, str(base_url).rstrip("/")))
    return [
        f for f in fc["features"]
        if sets is None or f["properties"]["senland:fixture_set"] in sets
    ]  # fmt: skip


def load_collection(out_dir: str | Path) -> dict:
    """Return the fixture collection dict."""
    return json.loads((Path(out_dir) / "stac" / "collection.json").read_text())


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="directory to write into")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    manifest = make_data(args.out_dir, args.seed)
    size = sum(p.stat().st_size for p in args.out_dir.rglob("*") if p.is_file())
    n = sum(len(s["items"]) for s in manifest["sets"].values())
    print(
        f"wrote {n} items in {len(manifest['sets'])} sets, {size / 1e6:.2f} MB, to {args.out_dir}"
    )


if __name__ == "__main__":
    main()
