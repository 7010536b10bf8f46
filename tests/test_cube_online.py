"""End to end: loopback STAC API + range-served COGs -> masked composites + labels -> Zarr."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

from senland_geo import cube, stac
from senland_geo.build import build_region_cube
from senland_geo.cli import cli
from senland_geo.regions import CASAMANCE, DAKAR


def _set_bbox(senegal_data, name):
    return tuple(senegal_data.set_info(name)["bbox"])


def _expected_median(senegal_data, set_name, band, max_cc=None):
    """Numpy reference: SCL-masked median of a 10 m band on the fixture grid."""
    info = senegal_data.set_info(set_name)
    stackd, valid = [], []
    for it in info["items"]:
        if max_cc is not None and it["eo:cloud_cover"] >= max_cc:
            continue
        folder = senegal_data.root / set_name / it["id"]
        with rasterio.open(folder / f"{band}.tif") as src:
            data = src.read(1).astype("float32")
        with rasterio.open(folder / "SCL.tif") as src:
            scl = np.kron(src.read(1), np.ones((2, 2), np.uint8))
        ok = ~np.isin(scl, cube.SCL_INVALID) & (data != 0)
        stackd.append(np.where(ok, data, np.nan))
        valid.append(ok)
    med = np.nanmedian(np.stack(stackd), axis=0)
    return np.round(np.nan_to_num(med, nan=0.0)).astype("uint16")


def test_cli_cube_casamance_end_to_end(stac_api, range_server, senegal_data, tmp_path):
    out = tmp_path / "casamance.zarr"
    bbox = _set_bbox(senegal_data, "casamance")
    wc_root = range_server.url_for("senegal", "worldcover/casamance")
    args = ["cube", "--region", "casamance", "--catalog", stac_api.url, "--out", str(out),
            "--bbox", *map(str, bbox), "--label-source-root", wc_root,
            "--scheduler", "threads", "--chunk", "128"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    ds = xr.open_zarr(out, consolidated=False, decode_coords="all")  # nothing from senland-geo
    assert ds.attrs["senland_geo_complete"] is True
    assert ds.rio.crs.to_epsg() == 32628
    assert list(ds["band"].values) == list(CASAMANCE.bands)
    refl = ds["reflectance"]
    assert refl.dims == ("time", "band", "y", "x") and refl.sizes["time"] == 1
    assert refl.encoding["chunks"] == (1, 10, 128, 128)
    # The fixture square sits on the cube grid: compare with a numpy median.
    info = senegal_data.set_info("casamance")
    x0, y1 = info["transform_10m"][2], info["transform_10m"][5]
    t = ds.rio.transform()
    col, row = round((x0 - t.c) / 10), round((t.f - y1) / 10)
    got = refl.sel(band="B04").values[0, row : row + 256, col : col + 256]
    np.testing.assert_array_equal(got, _expected_median(senegal_data, "casamance", "B04"))
    # Provenance.
    assert sorted(json.loads(ds.attrs["items"])) == sorted(i["id"] for i in info["items"])
    assert ds.attrs["provider"] == stac_api.url and ds.attrs["composite"] == "median"
    assert json.loads(ds.attrs["query"])["datetime"] == "2021-01-01/2021-12-31"
    # WorldCover labels from the range server, on the cube grid, codes kept.
    labels = ds["labels"].values[row : row + 256, col : col + 256]
    with rasterio.open(senegal_data.root / info["truth"]) as src:
        truth = src.read(1)
    assert (labels == truth).mean() > 0.97
    assert set(np.unique(labels)) <= {0, 10, 20, 30, 40, 50, 60, 80, 90, 95}
    assert ds["labels"].attrs["flag_colors"].split()[0].startswith("#")
    assert any(r.path.startswith("/senegal/worldcover/") for r in range_server.requests)


def test_monthly_composite_with_season(stac_api, range_server, senegal_data, tmp_path):
    out = tmp_path / "dakar.zarr"
    report = []
    build_region_cube(
        DAKAR, out, catalog=stac_api.url, composite="monthly", season=(1, 2),
        bbox=_set_bbox(senegal_data, "dakar"), scheduler="threads", chunksize=128,
        label_tile_root=range_server.url_for("senegal", "worldcover/dakar"), report=report,
    )  # fmt: skip
    ds = xr.open_zarr(out, consolidated=False, decode_coords="all")
    times = [str(t)[:10] for t in ds["time"].values]
    assert times == ["2021-01-01", "2021-02-01"]  # March is outside the season
    assert json.loads(ds.attrs["season"]) == [1, 2]
    assert report[0].written == report[0].blocks == 9 and report[0].resumed == 0
    # January has one scene: the monthly value is that scene where clear, else 0.
    assert (ds["reflectance"].isel(time=0).sel(band="B02").values > 0).mean() > 0.9


def test_stack_masks_cloud_shadow_cirrus_and_nodata(range_server, senegal_data):
    items = stac.search(CASAMANCE, _items_file(senegal_data, range_server))
    bbox = _set_bbox(senegal_data, "casamance")
    region = CASAMANCE.replace(bbox=bbox)
    c = cube.stack(items, region, ["B04", "SCL"], chunksize=128)
    valid = cube.valid_mask(c).values
    scl = c.sel(band="SCL").values
    assert not valid[np.isin(scl, [0, 3, 8, 9, 10])].any()
    assert valid[np.isin(scl, [4, 5, 6]) & (c.sel(band="B04").values > 0)].all()


def _items_file(senegal_data, range_server):
    path = senegal_data.root / "items-range.json"
    if not path.exists():
        feats = senegal_data.items(range_server.url_for("senegal"))
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return str(path)


@pytest.fixture
def items_file(senegal_data, range_server):
    return _items_file(senegal_data, range_server)
