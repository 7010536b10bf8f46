"""Regions: what, where and when to map.

A region is small frozen data that validates itself. Built-in regions are exposed through
the ``senland_geo.regions`` entry-point group like any third-party region plugin; look them
up with :func:`get_region`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from senland_geo.classes import TABLES, ClassTable

#: The ten Sentinel-2 bands at 10 m and 20 m used by the models (B01, B09, B10 are
#: atmospheric bands at 60 m and are left out, as in the SenLand seed's 64x64x10 patches).
S2_BANDS_10: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)  # fmt: skip

#: Every Sentinel-2 band name senland-geo understands (L1C and L2A), plus the L2A SCL.
S2_ALL_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
    "B12", "SCL",
)  # fmt: skip


def _parse_date(value: str, what: str, region: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"region {region!r}: {what} {value!r} is not an ISO date; write it as YYYY-MM-DD"
        ) from None


@dataclass(frozen=True)
class Region:
    """An area to map, with its grid, season, data source and labels.

    Attributes:
        name: Registry key, e.g. ``casamance``.
        bbox: ``(west, south, east, north)`` in EPSG:4326 degrees.
        epsg: EPSG code of the output grid, e.g. 32628 (UTM 28N).
        resolution: Output pixel size in metres.
        time_range: ``(start, end)`` ISO dates, inclusive.
        collections: STAC collection ids to search.
        catalog: Provider name (``earth-search``), STAC API URL or local catalog path.
        labels: Label source name (``esa-worldcover-2021``, ``embedded``...) or None.
        class_table: Name of the class table (see :data:`senland_geo.classes.TABLES`).
        bands: Sentinel-2 band names the models read.
        description: One sentence for ``senland-geo regions``.
        grid_bounds: Optional exact output grid ``(minx, miny, maxx, maxy)`` in ``epsg``;
            by default the bbox projected to ``epsg`` and snapped outward to the resolution.
    """

    name: str
    bbox: tuple[float, float, float, float]
    epsg: int
    resolution: float = 10.0
    time_range: tuple[str, str] = ("2021-01-01", "2021-12-31")
    collections: tuple[str, ...] = ("sentinel-2-l2a",)
    catalog: str = "earth-search"
    labels: str | None = "esa-worldcover-2021"
    class_table: str = "esa-worldcover"
    bands: tuple[str, ...] = field(default=S2_BANDS_10)
    description: str = ""
    grid_bounds: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ValueError(
                f"region name {self.name!r} must be lower-case without spaces, e.g. 'my-area'"
            )
        if len(self.bbox) != 4:
            raise ValueError(
                f"region {self.name!r}: bbox {self.bbox!r} must have 4 numbers "
                "(west, south, east, north) in degrees"
            )
        west, south, east, north = (float(v) for v in self.bbox)
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            raise ValueError(
                f"region {self.name!r}: bbox longitudes {west}, {east} must be within -180..180"
            )
        if not (-90 <= south <= 90 and -90 <= north <= 90):
            raise ValueError(
                f"region {self.name!r}: bbox latitudes {south}, {north} must be within -90..90"
            )
        if west >= east or south >= north:
            raise ValueError(
                f"region {self.name!r}: bbox {self.bbox!r} must be (west, south, east, north) "
                "with west < east and south < north"
            )
        object.__setattr__(self, "bbox", (west, south, east, north))
        if not isinstance(self.epsg, int) or not 1024 <= self.epsg <= 999999:
            raise ValueError(
                f"region {self.name!r}: epsg {self.epsg!r} is not an EPSG code; "
                "use e.g. 32628 for UTM zone 28N"
            )
        if not self.resolution > 0:
            raise ValueError(
                f"region {self.name!r}: resolution {self.resolution!r} must be positive metres"
            )
        start = _parse_date(self.time_range[0], "start date", self.name)
        end = _parse_date(self.time_range[1], "end date", self.name)
        if start > end:
            raise ValueError(
                f"region {self.name!r}: time range {self.time_range[0]}..{self.time_range[1]} "
                "is reversed; put the start date first"
            )
        if self.class_table not in TABLES:
            raise ValueError(
                f"region {self.name!r}: class table {self.class_table!r} unknown; "
                f"choose one of {', '.join(TABLES)}"
            )
        unknown = [b for b in self.bands if b not in S2_ALL_BANDS]
        if unknown or not self.bands:
            raise ValueError(
                f"region {self.name!r}: bands {unknown or '()'} are not Sentinel-2 band names; "
                f"use names from {', '.join(S2_ALL_BANDS)}"
            )
        if self.grid_bounds is not None:
            gb = tuple(float(v) for v in self.grid_bounds)
            if len(gb) != 4 or gb[0] >= gb[2] or gb[1] >= gb[3]:
                raise ValueError(
                    f"region {self.name!r}: grid_bounds {self.grid_bounds!r} must be "
                    "(minx, miny, maxx, maxy) with min < max"
                )
            object.__setattr__(self, "grid_bounds", gb)
        object.__setattr__(self, "collections", tuple(self.collections))
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "time_range", (start.isoformat(), end.isoformat()))

    @property
    def classes(self) -> ClassTable:
        """The region's class table."""
        return TABLES[self.class_table]

    @property
    def datetime(self) -> str:
        """The time range as a STAC ``datetime`` interval string."""
        return f"{self.time_range[0]}/{self.time_range[1]}"

    def output_bounds(self) -> tuple[float, float, float, float]:
        """Return the output grid bounds in ``epsg``, aligned to the resolution."""
        if self.grid_bounds is not None:
            return self.grid_bounds
        import math

        from pyproj import Transformer

        to_grid = Transformer.from_crs(4326, self.epsg, always_xy=True)
        minx, miny, maxx, maxy = to_grid.transform_bounds(*self.bbox)
        r = self.resolution
        return (
            math.floor(minx / r) * r,
            math.floor(miny / r) * r,
            math.ceil(maxx / r) * r,
            math.ceil(maxy / r) * r,
        )

    def replace(self, **changes: object) -> Region:
        """Return a copy with some fields changed (validated again)."""
        data = asdict(self)
        data.update(changes)
        return Region(**data)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        """Return the region as plain data."""
        return asdict(self)


_SENEGAL = dict(
    epsg=32628,
    time_range=("2021-01-01", "2021-12-31"),
    collections=("sentinel-2-l2a",),
    catalog="earth-search",
    labels="esa-worldcover-2021",
)

DAKAR = Region(
    name="dakar",
    bbox=(-17.55, 14.60, -17.10, 14.90),
    description="Cap-Vert peninsula: dense built-up, ocean, bare soil (about 48 x 33 km)",
    **_SENEGAL,
)
LAC_DE_GUIERS = Region(
    name="lac-de-guiers",
    bbox=(-16.00, 15.85, -15.65, 16.50),
    description="Lac de Guiers and the irrigated Senegal valley near Richard-Toll (38 x 72 km)",
    **_SENEGAL,
)
CASAMANCE = Region(
    name="casamance",
    bbox=(-16.45, 12.42, -16.05, 12.72),
    description="Lower Casamance around Ziguinchor: forest, mangroves, rivers (44 x 33 km)",
    **_SENEGAL,
)
SINE_SALOUM = Region(
    name="sine-saloum",
    bbox=(-16.85, 13.60, -16.35, 14.15),
    description="Saloum delta and its mangrove belt (54 x 61 km)",
    **_SENEGAL,
)
FRANCE_PASTIS = Region(
    name="france-pastis",
    bbox=(-1.6, 43.2, 8.1, 49.6),
    epsg=2154,
    time_range=("2018-09-01", "2019-10-31"),
    collections=("pastis",),
    catalog="pastis",
    labels="pastis",
    class_table="pastis",
    bands=S2_BANDS_10,
    description="PASTIS crop types, S2 tiles T30UXV T31TFJ T31TFM T32ULU (data from the user)",
)
MUNICH = Region(
    name="munich",
    bbox=(11.0, 47.7, 12.5, 48.7),
    epsg=32632,
    time_range=("2016-01-01", "2017-12-31"),
    collections=("mtlcc",),
    catalog="mtlcc",
    labels="mtlcc",
    class_table="mtlcc",
    bands=("B02", "B03", "B04", "B08", "B10", "B11", "B12"),
    description="MTLCC crop types around Munich, S2 tile 32UPU, 2016-2017 (data from the user)",
)
BRANDENBURG = Region(
    name="brandenburg",
    bbox=(12.4943, 52.4530, 12.7240, 52.5264),
    epsg=32633,
    time_range=("2017-02-01", "2017-02-28"),
    collections=("sentinel-2-l1c",),
    catalog="brandenburg-sample",
    labels="embedded",
    description="Embedded real sample: S2 L1C T33UUU 2017-02-16, 15.4 x 7.7 km, OSM labels",
    grid_bounds=(330000.0, 5814360.0, 345360.0, 5822040.0),
)


def get_region(name: str) -> Region:
    """Return the region plugin called ``name``.

    Raises:
        PluginNotFoundError: No such region; the message lists the installed ones.
        PluginLoadError: The region plugin failed to load or is not a Region.
    """
    from senland_geo import registry
    from senland_geo.errors import PluginLoadError

    region = registry.load("regions", name)
    if callable(region) and not isinstance(region, Region):
        region = region()
    if not isinstance(region, Region):
        raise PluginLoadError(
            f"region plugin {name!r} gave {type(region).__name__}, not a senland_geo Region"
        )
    return region
