"""Tests of the example region plugin (run with the plugin installed or on PYTHONPATH)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from senland_geo import registry
from senland_geo.regions import get_region

from senland_geo_region_example import BRANDENBURG_MINI, SAINT_LOUIS


def test_regions_are_valid_and_sized_as_documented() -> None:
    minx, miny, maxx, maxy = BRANDENBURG_MINI.output_bounds()
    assert (maxx - minx, maxy - miny) == (5120.0, 5120.0)
    assert BRANDENBURG_MINI.classes.name == "esa-worldcover"
    minx, miny, maxx, maxy = SAINT_LOUIS.output_bounds()
    assert 15_000 < maxx - minx < 17_000 and 16_000 < maxy - miny < 18_000
    assert minx % 10 == 0 and maxy % 10 == 0


def test_grid_lies_inside_the_embedded_sample() -> None:
    sample = get_region("brandenburg").output_bounds()
    minx, miny, maxx, maxy = BRANDENBURG_MINI.output_bounds()
    assert sample[0] <= minx < maxx <= sample[2]
    assert sample[1] <= miny < maxy <= sample[3]


def test_entry_points_are_registered() -> None:
    values = {ep.name: ep.value for ep in entry_points(group="senland_geo.regions")}
    if "brandenburg-mini" not in values:
        pytest.skip("the distribution is not installed (pip install -e this folder)")
    assert values["brandenburg-mini"] == "senland_geo_region_example:BRANDENBURG_MINI"
    registry.clear_cache()
    assert {"brandenburg-mini", "saint-louis"} <= set(registry.names("regions"))
    assert get_region("brandenburg-mini") == BRANDENBURG_MINI
    assert get_region("saint-louis").epsg == 32628


def test_cube_builds_offline(tmp_path) -> None:
    import numpy as np
    from senland_geo.build import build_region_cube
    from senland_geo.store import open_cube

    out = build_region_cube(BRANDENBURG_MINI, tmp_path / "mini.zarr")
    ds = open_cube(out)
    assert ds.sizes["y"] == ds.sizes["x"] == 512
    assert ds.rio.crs.to_epsg() == 32633
    labels = np.asarray(ds["labels"].values)
    assert set(np.unique(labels)) >= {10, 30, 40}
