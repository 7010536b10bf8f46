"""``senland-geo new-region NAME``: write a region plugin distribution to start from.

The files are the ones ``plugins/senland-geo-region-example`` has and
``docs/writing-a-region-plugin.md`` walks through: ``pyproject.toml`` with the
``senland_geo.regions`` entry point, ``src/<package>/__init__.py`` with the
:class:`~senland_geo.regions.Region`, ``tests/test_region.py`` and a ``README.md``.

Without ``--bbox`` the region is a small square of the embedded Brandenburg sample, so
``senland-geo cube --region NAME`` works offline straight away; with ``--bbox`` it is a
Sentinel-2 L2A region on Earth Search with ESA WorldCover 2021 labels, on the UTM zone of
the bbox centre.
"""

from __future__ import annotations

import re
from pathlib import Path

from senland_geo.errors import UserError
from senland_geo.regions import Region

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

#: The offline default: 5.12 x 5.12 km of the embedded sample (as the example plugin).
OFFLINE_DEFAULT = {
    "bbox": (12.5710, 52.4546, 12.6486, 52.5019),
    "epsg": 32633,
    "time_range": ("2017-02-01", "2017-02-28"),
    "collections": ("sentinel-2-l1c",),
    "catalog": "brandenburg-sample",
    "labels": "embedded",
    "grid_bounds": (335120.0, 5814360.0, 340240.0, 5819480.0),
}


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing a point (326xx north, 327xx south)."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def package_name(name: str) -> str:
    """Python package name of a region plugin, e.g. ``senland_geo_region_my_area``."""
    return "senland_geo_region_" + name.replace("-", "_")


def region_for(
    name: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    epsg: int | None = None,
    catalog: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Region:
    """The Region the scaffold will write (validated now, so errors come before files).

    Raises:
        UserError: A bad name, bbox, EPSG code or date (the message names the value).
    """
    if not NAME_RE.match(name):
        raise UserError(
            f"region name {name!r} must be lower-case letters, digits and '-', starting with "
            "a letter, e.g. 'my-area'"
        )
    if bbox is None:
        base = dict(OFFLINE_DEFAULT)
        if epsg is not None or catalog is not None:
            raise UserError("--epsg and --catalog need --bbox W S E N (the default area is fixed)")
        description = "Scaffolded region: 5.1 x 5.1 km of the embedded Brandenburg sample"
    else:
        west, south, east, north = (float(v) for v in bbox)
        base = {
            "bbox": (west, south, east, north),
            "epsg": epsg or utm_epsg((west + east) / 2, (south + north) / 2),
            "time_range": ("2021-01-01", "2021-12-31"),
            "collections": ("sentinel-2-l2a",),
            "catalog": catalog or "earth-search",
            "labels": "esa-worldcover-2021",
            "grid_bounds": None,
        }
        description = f"Scaffolded region {name}"
    if start or end:
        base["time_range"] = (start or base["time_range"][0], end or base["time_range"][1])
    try:
        return Region(name=name, description=description, **base)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _py(value: object) -> str:
    return repr(value)


def render_files(region: Region) -> dict[str, str]:
    """The files of the distribution, keyed by relative path."""
    pkg = package_name(region.name)
    const = region.name.replace("-", "_").upper()
    dist = f"senland-geo-region-{region.name}"
    grid = f"    grid_bounds={_py(region.grid_bounds)},\n" if region.grid_bounds else ""
    init = f'''"""Region plugin for senland-geo: {region.name}.

Registered through the ``senland_geo.regions`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

from senland_geo.regions import Region

{const} = Region(
    name={_py(region.name)},
    bbox={_py(region.bbox)},  # west, south, east, north (EPSG:4326)
    epsg={region.epsg},
    resolution={region.resolution},
    time_range={_py(region.time_range)},
    collections={_py(region.collections)},
    catalog={_py(region.catalog)},
    labels={_py(region.labels)},
    description={_py(region.description)},
{grid})
'''
    pyproject = f'''[build-system]
requires = ["setuptools>=69", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "senland-geo region plugin: {region.name}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["senland-geo>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."senland_geo.regions"]
{region.name} = "{pkg}:{const}"

[tool.setuptools.packages.find]
where = ["src"]
'''
    test = f"""from senland_geo import registry
from senland_geo.regions import get_region

from {pkg} import {const}


def test_region_is_valid() -> None:
    minx, miny, maxx, maxy = {const}.output_bounds()
    assert maxx > minx and maxy > miny
    assert {const}.epsg == {region.epsg}


def test_region_is_registered() -> None:
    registry.clear_cache()
    assert {_py(region.name)} in registry.names("regions")
    assert get_region({_py(region.name)}) == {const}
"""
    readme = f"""# {dist}

A senland-geo region plugin for `{region.name}`.

```bash
pip install -e .
senland-geo regions
senland-geo cube --region {region.name} --out {region.name}.zarr
pytest tests
```
"""
    return {
        "pyproject.toml": pyproject,
        f"src/{pkg}/__init__.py": init,
        "tests/test_region.py": test,
        "README.md": readme,
    }


def scaffold_region(
    name: str,
    directory: str | Path = ".",
    *,
    bbox: tuple[float, float, float, float] | None = None,
    epsg: int | None = None,
    catalog: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Path:
    """Write ``DIRECTORY/senland-geo-region-NAME`` with a region plugin in it.

    Args:
        name: Registry name of the region, e.g. ``my-area``.
        directory: Parent folder (must exist).
        bbox: ``(west, south, east, north)`` degrees; default: a square of the embedded
            sample (offline).
        epsg: Output grid (default: UTM zone of the bbox centre).
        catalog: Provider, STAC API URL or catalog path (default: ``earth-search``).
        start: Season start (YYYY-MM-DD).
        end: Season end (YYYY-MM-DD).

    Returns:
        The new distribution folder.

    Raises:
        UserError: Invalid region values, missing parent folder, or an existing target.
    """
    region = region_for(name, bbox=bbox, epsg=epsg, catalog=catalog, start=start, end=end)
    parent = Path(directory)
    if not parent.is_dir():
        raise UserError(f"folder {parent} does not exist; create it or pick another --dir")
    target = parent / f"senland-geo-region-{name}"
    if target.exists():
        raise UserError(f"{target} already exists; remove it or pick another --dir")
    for rel, text in render_files(region).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target
