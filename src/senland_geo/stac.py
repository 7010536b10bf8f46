"""STAC providers and item search.

A *catalog* is one of:

* a provider name with a profile in ``senland_geo/catalogs/providers/*.json``
  (``earth-search``: Element 84 Earth Search v1, the default; ``planetary-computer``:
  Microsoft Planetary Computer, whose asset URLs are signed with the ``planetary-computer``
  package) or a packaged sample like ``brandenburg-sample``;
* a STAC API root URL;
* a local (or ``https://``) static catalog (``catalog.json`` or its folder), an item
  collection file (``*.json`` / ``*.geojson`` FeatureCollection), or a stac-geoparquet file
  (``*.parquet``, read with the optional ``rustac`` package).

Search results are pystac Items whose band assets carry Sentinel-2 band names (``B01`` ...
``B12``, ``B8A``, ``SCL``) and the ``proj:epsg`` field stackstac 0.5 needs.

STAC API requests are retried with exponential backoff on HTTP 429/5xx, connection errors
and timeouts (urllib3 ``Retry`` inside pystac-client's ``StacApiIO``); when retries run
out the error names the endpoint and what was tried, and an unreachable API (DNS failure,
connection refused) gives one line saying how to work offline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pystac
from pystac_client import Client
from shapely.geometry import box, shape

from senland_geo.errors import UserError
from senland_geo.regions import Region

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

_BAND_KEY = re.compile(r"^b(0[1-9]|1[0-2]|8a)$", re.IGNORECASE)

#: HTTP statuses retried with backoff.
RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)

_OFFLINE_MARKERS = (
    "NameResolutionError",
    "Failed to resolve",
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
    "Connection refused",
    "NewConnectionError",
    "Network is unreachable",
    "No route to host",
)


@dataclass(frozen=True)
class Provider:
    """A STAC API provider profile (``senland_geo/catalogs/providers/<name>.json``).

    Attributes:
        name: Registry name used with ``--catalog``.
        title: One line for humans.
        url: STAC API root URL.
        collections: Senland collection id -> the provider's collection id.
        cloud_property: Item property holding scene cloud cover in percent.
        signing: ``"planetary-computer"`` when asset URLs must be signed, else None.
        asset_aliases: Provider asset key -> Sentinel-2 band name (on top of the defaults).
    """

    name: str
    title: str
    url: str
    collections: dict[str, str] = field(default_factory=dict)
    cloud_property: str = "eo:cloud_cover"
    signing: str | None = None
    asset_aliases: dict[str, str] = field(default_factory=dict)


@cache
def providers() -> dict[str, Provider]:
    """Load the provider profiles shipped in ``senland_geo/catalogs/providers``."""
    folder = files("senland_geo") / "catalogs" / "providers"
    found: dict[str, Provider] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text())
            found[data["name"]] = Provider(**data)
    return found


#: Known providers: name -> STAC API root URL.
PROVIDERS: dict[str, str] = {name: p.url for name, p in providers().items()}


@dataclass(frozen=True)
class CatalogRef:
    """A resolved catalog: a STAC API, a static catalog, an item file or a geoparquet file.

    Attributes:
        name: What the user asked for.
        href: API root URL or path/URL of the catalog file.
        is_api: True for a STAC API (server-side search).
        kind: ``api``, ``static`` (catalog.json), ``items`` (FeatureCollection file) or
            ``geoparquet``.
        provider: The provider profile name, when ``name`` was one.
    """

    name: str
    href: str
    is_api: bool
    kind: str = ""
    provider: str | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "api" if self.is_api else "static")


@dataclass(frozen=True)
class RetryPolicy:
    """How STAC API requests are retried.

    Attributes:
        retries: Retries after the first attempt (HTTP 429/5xx, read timeouts).
        connect_retries: Retries of a refused / unresolvable connection (kept low so an
            offline machine fails fast).
        backoff: urllib3 backoff factor: sleeps ``backoff * 2 ** (n - 1)`` seconds.
        timeout: ``(connect, read)`` timeouts in seconds.
    """

    retries: int = 4
    connect_retries: int = 1
    backoff: float = 0.5
    timeout: tuple[float, float] = (10.0, 60.0)

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults overridden by ``SENLAND_STAC_RETRIES``/``_BACKOFF``/``_TIMEOUT``."""
        policy = cls()
        env = os.environ
        try:
            if "SENLAND_STAC_RETRIES" in env:
                policy = _replace(policy, retries=int(env["SENLAND_STAC_RETRIES"]))
            if "SENLAND_STAC_BACKOFF" in env:
                policy = _replace(policy, backoff=float(env["SENLAND_STAC_BACKOFF"]))
            if "SENLAND_STAC_TIMEOUT" in env:
                t = float(env["SENLAND_STAC_TIMEOUT"])
                policy = _replace(policy, timeout=(min(10.0, t), t))
        except ValueError as exc:
            raise UserError(
                f"bad SENLAND_STAC_* environment value ({exc}); use numbers, e.g. "
                "SENLAND_STAC_RETRIES=4"
            ) from None
        return policy

    def describe(self) -> str:
        """One phrase: what was tried."""
        return (
            f"{self.retries + 1} attempts with exponential backoff ({self.backoff:g} s factor) "
            f"on HTTP {'/'.join(map(str, RETRY_STATUSES))} and timeouts "
            f"({self.timeout[1]:g} s read timeout)"
        )


def _replace(policy: RetryPolicy, **changes: Any) -> RetryPolicy:
    from dataclasses import replace

    return replace(policy, **changes)


def packaged_catalog_dir(name: str) -> Path:
    """Return the folder of a catalog shipped inside the package."""
    return Path(str(files("senland_geo") / "catalogs" / PACKAGED[name]))


def _file_kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".parquet", ".geoparquet")):
        return "geoparquet"
    if lower.endswith(".geojson"):
        return "items"
    return "static"


def resolve_catalog(catalog: str) -> CatalogRef:
    """Resolve a provider name, URL or local path to a :class:`CatalogRef`.

    Raises:
        UserError: The name is neither a known provider, a URL nor an existing path.
    """
    known_providers = providers()
    if catalog in known_providers:
        p = known_providers[catalog]
        return CatalogRef(catalog, p.url, is_api=True, kind="api", provider=catalog)
    if catalog in PACKAGED:
        return CatalogRef(catalog, str(packaged_catalog_dir(catalog) / "catalog.json"), False)
    if catalog.startswith(("http://", "https://")):
        kind = _file_kind(catalog)
        if catalog.lower().endswith((".json", ".geojson", ".parquet", ".geoparquet")):
            return CatalogRef(catalog, catalog, is_api=False, kind=kind)
        return CatalogRef(catalog, catalog.rstrip("/"), is_api=True)
    path = Path(catalog).expanduser()
    if path.is_dir():
        path = path / "catalog.json"
    if path.is_file():
        kind = _file_kind(path.name)
        if kind == "static":
            try:
                with path.open() as fh:
                    head = json.load(fh)
            except (OSError, ValueError) as exc:
                raise UserError(
                    f"catalog file {path} is not readable JSON ({exc}); pass a STAC "
                    "catalog.json, an item collection, a .parquet file or an API URL"
                ) from None
            if head.get("type") == "FeatureCollection":
                kind = "items"
        return CatalogRef(catalog, str(path.resolve()), is_api=False, kind=kind)
    known = ", ".join([*known_providers, *PACKAGED])
    raise UserError(
        f"catalog {catalog!r} is not a known provider ({known}), a STAC API URL, or an "
        "existing local catalog.json / folder / items file; pass one of those with --catalog"
    )


def normalize_item(item: pystac.Item, aliases: dict[str, str] | None = None) -> pystac.Item:
    """Return a copy of ``item`` with Sentinel-2 band names and ``proj:epsg`` filled in.

    pystac 1.15 rewrites items to projection extension v2 and keeps only ``proj:code``;
    stackstac 0.5 reads only ``proj:epsg`` and otherwise silently guesses a grid.

    Args:
        item: An item from any provider.
        aliases: Extra provider asset key -> band name mappings.
    """
    table = {**ASSET_ALIASES, **{k.lower(): v for k, v in (aliases or {}).items()}}
    item = item.clone()
    code = item.properties.get("proj:code")
    if "proj:epsg" not in item.properties and isinstance(code, str) and code.startswith("EPSG:"):
        item.properties["proj:epsg"] = int(code.split(":")[1])
    renamed: dict[str, pystac.Asset] = {}
    for key, asset in item.assets.items():
        absolute = asset.get_absolute_href()
        if absolute:
            asset.href = absolute
        name = table.get(key.lower(), key.upper() if _BAND_KEY.match(key) else key)
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
    retry: RetryPolicy | None = None,
) -> list[pystac.Item]:
    """Find the scenes of a region's collections, area and season.

    Args:
        region: The region (its bbox, time range and collections are used).
        catalog: Override of ``region.catalog``.
        max_cloud: Keep items with ``eo:cloud_cover`` below this percentage.
        bbox: Override of ``region.bbox`` (EPSG:4326).
        max_items: Stop after this many items.
        retry: Retry policy for STAC API requests (default: :meth:`RetryPolicy.from_env`).

    Returns:
        Normalised items sorted by datetime (Planetary Computer items signed).

    Raises:
        UserError: The catalog can't be reached or opened, or nothing matched (the message
            names the filters to relax).
    """
    ref = resolve_catalog(catalog or region.catalog)
    bbox = bbox or region.bbox
    provider = providers().get(ref.provider or "")
    if ref.kind == "api":
        items = _search_api(
            ref, region, bbox, max_cloud, max_items, retry or RetryPolicy.from_env()
        )
    elif ref.kind == "geoparquet":
        items = _filter_local(_read_geoparquet(ref), region, bbox, max_cloud, max_items)
    elif ref.kind == "items":
        items = _filter_local(_read_item_collection(ref), region, bbox, max_cloud, max_items)
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
    aliases = provider.asset_aliases if provider else None
    out = [normalize_item(it, aliases) for it in items]
    if provider is not None and provider.signing == "planetary-computer":
        out = sign_planetary_computer(out)
    return out


def sign_planetary_computer(items: list[pystac.Item]) -> list[pystac.Item]:
    """Sign asset hrefs with Planetary Computer SAS tokens (``planetary-computer`` package).

    Raises:
        UserError: The package is missing or the token service can't be reached.
    """
    try:
        import planetary_computer
    except ImportError:
        raise UserError(
            "catalog 'planetary-computer' needs the planetary-computer package; "
            "run: pip install planetary-computer"
        ) from None
    try:
        return [planetary_computer.sign(item) for item in items]
    except Exception as exc:  # requests / pydantic errors from the token service
        raise UserError(
            f"cannot sign Planetary Computer asset URLs ({type(exc).__name__}: {exc}); "
            "check the network, or set PC_SDK_SUBSCRIPTION_KEY"
        ) from None


def _stac_io(policy: RetryPolicy):
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(
        total=policy.retries,
        connect=policy.connect_retries,
        read=policy.retries,
        status=policy.retries,
        other=0,
        backoff_factor=policy.backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # POST /search is safe to repeat
        raise_on_status=True,
        respect_retry_after_header=True,
    )
    return StacApiIO(max_retries=retry, timeout=policy.timeout)


def _api_error(ref: CatalogRef, exc: Exception, policy: RetryPolicy, what: str) -> UserError:
    text = " ".join(str(exc).split())
    if any(marker in text for marker in _OFFLINE_MARKERS):
        return UserError(
            f"cannot reach the STAC API {ref.href} (no network or the server is down); "
            "to work offline pass --catalog with a local catalog.json, items .json or "
            ".parquet file"
        )
    if len(text) > 300:
        text = text[:300] + "..."
    return UserError(
        f"STAC API {ref.href} failed to {what} after {policy.describe()}: {text}; "
        "try again later or choose another --catalog"
    )


def _search_api(ref, region, bbox, max_cloud, max_items, policy) -> list[pystac.Item]:
    from pystac_client.exceptions import APIError
    from requests.exceptions import RequestException

    errors = (APIError, RequestException, pystac.STACError, OSError)
    provider = providers().get(ref.provider or "")
    collections = [provider.collections.get(c, c) if provider else c for c in region.collections]
    cloud_prop = provider.cloud_property if provider else "eo:cloud_cover"
    try:
        client = Client.open(ref.href, stac_io=_stac_io(policy))
    except errors as exc:
        raise _api_error(ref, exc, policy, "open") from None
    query = {cloud_prop: {"lt": max_cloud}} if max_cloud is not None else None
    try:
        result = client.search(
            collections=collections,
            bbox=list(bbox),
            datetime=region.datetime,
            query=query,
            max_items=max_items,
            limit=100,
        )
        return list(result.items())
    except errors as exc:
        raise _api_error(ref, exc, policy, "search") from None


def _filter_local(items, region, bbox, max_cloud, max_items) -> list[pystac.Item]:
    area = box(*bbox)
    start, end = (dt.date.fromisoformat(d) for d in region.time_range)
    found = []
    for item in items:
        if item.collection_id is not None and item.collection_id not in region.collections:
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


def _search_static(ref, region, bbox, max_cloud, max_items) -> list[pystac.Item]:
    # pystac-client opens static catalogs too, but /search needs an API: filter locally.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoConformsTo / FallbackToPystac: expected here
        try:
            client = Client.open(ref.href)
            items = list(client.get_items(recursive=True))
        except (OSError, pystac.STACError, ValueError) as exc:
            raise UserError(
                f"cannot read static catalog {ref.href} ({exc}); check the path or URL"
            ) from None
    return _filter_local(items, region, bbox, max_cloud, max_items)


def _read_item_collection(ref: CatalogRef) -> list[pystac.Item]:
    try:
        collection = pystac.ItemCollection.from_file(ref.href)
    except (OSError, pystac.STACError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot read item collection {ref.href} ({exc}); pass a GeoJSON "
            "FeatureCollection of STAC items"
        ) from None
    return list(collection.items)


def _read_geoparquet(ref: CatalogRef) -> list[pystac.Item]:
    try:
        import rustac
    except ImportError:
        raise UserError(
            f"reading stac-geoparquet {ref.href} needs the rustac package; run: pip install rustac"
        ) from None
    try:
        data = rustac.read_sync(ref.href)
    except Exception as exc:  # rustac raises its own error types
        raise UserError(
            f"cannot read stac-geoparquet file {ref.href} ({exc}); check the file"
        ) from None
    return [pystac.Item.from_dict(feature) for feature in data.get("features", [])]
