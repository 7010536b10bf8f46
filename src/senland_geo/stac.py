"""STAC providers and item search.

A *catalog* is a provider name (``earth-search``, ``planetary-computer``, or a packaged
sample like ``brandenburg-sample``), a STAC API URL, or the path of a local static catalog.
Search results are returned as pystac Items whose band assets carry Sentinel-2 band names
(``B02`` ... ``B12``, ``B8A``, ``SCL``) and the ``proj:epsg`` field stackstac 0.5 needs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pystac
from pystac_client import Client
from shapely.geometry import box, shape

from senland_geo.errors import UserError
from senland_geo.regions import Region

#: Known providers: name -> STAC API root URL.
PROVIDERS: dict[str, str] = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
}

#: Catalogs shipped inside the package: name -> folder under ``senland_geo/catalogs``.
PACKAGED: dict[str, str] = {"brandenburg-sample": "brandenburg"}

#: Provider asset keys -> Sentinel-2 band names (Earth Search v1 uses common names).
ASSET_ALIASES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
}


@dataclass(frozen=True)
class CatalogRef:
    """A resolved catalog: either a STAC API or a static catalog file.

    Attributes:
        name: What the user asked for.
        href: API root URL or path of ``catalog.json``.
        is_api: True for a STAC API (server-side search).
    """

    name: str
    href: str
    is_api: bool


def packaged_catalog_dir(name: str) -> Path:
    """Return the folder of a catalog shipped inside the package."""
    return Path(str(files("senland_geo") / "catalogs" / PACKAGED[name]))


def resolve_catalog(catalog: str) -> CatalogRef:
    """Resolve a provider name, URL or local path to a :class:`CatalogRef`.

    Raises:
        UserError: The name is neither a known provider, a URL nor an existing path.
    """
    if catalog in PROVIDERS:
        return CatalogRef(catalog, PROVIDERS[catalog], is_api=True)
    if catalog in PACKAGED:
        return CatalogRef(catalog, str(packaged_catalog_dir(catalog) / "catalog.json"), False)
    if catalog.startswith(("http://", "https://")):
        is_static = catalog.endswith(".json")
        return CatalogRef(catalog, catalog, is_api=not is_static)
    path = Path(catalog).expanduser()
    if path.is_dir():
        path = path / "catalog.json"
    if path.is_file():
        return CatalogRef(catalog, str(path.resolve()), is_api=False)
    known = ", ".join([*PROVIDERS, *PACKAGED])
    raise UserError(
        f"catalog {catalog!r} is not a known provider ({known}), a STAC API URL, or an "
        "existing local catalog.json / folder; pass one of those with --catalog"
    )


def normalize_item(item: pystac.Item) -> pystac.Item:
    """Return a copy of ``item`` with Sentinel-2 band names and ``proj:epsg`` filled in.

    pystac 1.15 rewrites items to projection extension v2 and keeps only ``proj:code``;
    stackstac 0.5 reads only ``proj:epsg`` and otherwise silently guesses a grid.
    """
    item = item.clone()
    code = item.properties.get("proj:code")
    if "proj:epsg" not in item.properties and isinstance(code, str) and code.startswith("EPSG:"):
        item.properties["proj:epsg"] = int(code.split(":")[1])
    renamed: dict[str, pystac.Asset] = {}
    for key, asset in item.assets.items():
        absolute = asset.get_absolute_href()
        if absolute:
            asset.href = absolute
        name = ASSET_ALIASES.get(key.lower(), key)
        if name in renamed and key != name:
            continue  # keep the asset already stored under the canonical name
        acode = asset.extra_fields.get("proj:code")
        if "proj:epsg" not in asset.extra_fields and isinstance(acode, str):
            if acode.startswith("EPSG:"):
                asset.extra_fields["proj:epsg"] = int(acode.split(":")[1])
        renamed[name] = asset
    item.assets = renamed
    return item


def _in_time_range(item: pystac.Item, start: dt.date, end: dt.date) -> bool:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return False
    return start <= when.date() <= end


def search(
    region: Region,
    catalog: str | None = None,
    *,
    max_cloud: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    max_items: int | None = None,
) -> list[pystac.Item]:
    """Find the scenes of a region's collections, area and season.

    Args:
        region: The region (its bbox, time range and collections are used).
        catalog: Override of ``region.catalog``.
        max_cloud: Keep items with ``eo:cloud_cover`` below this percentage.
        bbox: Override of ``region.bbox`` (EPSG:4326).
        max_items: Stop after this many items.

    Returns:
        Normalised items sorted by datetime.

    Raises:
        UserError: The catalog can't be opened, or nothing matched (the message names the
            filters to relax).
    """
    ref = resolve_catalog(catalog or region.catalog)
    bbox = bbox or region.bbox
    if ref.is_api:
        items = _search_api(ref, region, bbox, max_cloud, max_items)
    else:
        items = _search_static(ref, region, bbox, max_cloud, max_items)
    if not items:
        cloud = f", eo:cloud_cover < {max_cloud}" if max_cloud is not None else ""
        raise UserError(
            f"no scenes in catalog {ref.name!r} for collections {list(region.collections)}, "
            f"bbox {tuple(round(v, 4) for v in bbox)}, dates {region.datetime}{cloud}; "
            "widen the dates or bbox, raise --max-cloud, or choose another --catalog"
        )
    items.sort(key=lambda it: (it.datetime or dt.datetime.min.replace(tzinfo=dt.UTC), it.id))
    return [normalize_item(it) for it in items]


def _search_api(ref, region, bbox, max_cloud, max_items) -> list[pystac.Item]:
    client = Client.open(ref.href)
    query = {"eo:cloud_cover": {"lt": max_cloud}} if max_cloud is not None else None
    result = client.search(
        collections=list(region.collections),
        bbox=list(bbox),
        datetime=region.datetime,
        query=query,
        max_items=max_items,
    )
    return list(result.items())


def _search_static(ref, region, bbox, max_cloud, max_items) -> list[pystac.Item]:
    # pystac-client opens static catalogs too, but /search needs an API: filter locally.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoConformsTo / FallbackToPystac: expected here
        client = Client.open(ref.href)
        items = list(client.get_items(recursive=True))
    area = box(*bbox)
    start, end = (dt.date.fromisoformat(d) for d in region.time_range)
    found = []
    for item in items:
        if item.collection_id not in region.collections:
            continue
        if item.geometry is None or not shape(item.geometry).intersects(area):
            continue
        if not _in_time_range(item, start, end):
            continue
        cloud = item.properties.get("eo:cloud_cover")
        if max_cloud is not None and cloud is not None and cloud >= max_cloud:
            continue
        found.append(item)
        if max_items is not None and len(found) >= max_items:
            break
    return found
