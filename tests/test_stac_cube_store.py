import json

import numpy as np
import pytest
import rasterio
import xarray as xr

from senland_geo import cube, stac, store
from senland_geo.errors import UserError
from senland_geo.regions import get_region

BRANDENBURG = get_region("brandenburg")
BAND_DIR = stac.packaged_catalog_dir("brandenburg-sample") / "bands"


def test_static_catalog_search_by_bbox_and_dates():
    items = stac.search(BRANDENBURG)
    assert [i.id for i in items] == ["S2A_T33UUU_20170216T102101_L1C"]
    item = items[0]
    assert item.properties["proj:epsg"] == 32633
    assert item.assets["B02"].extra_fields["proj:epsg"] == 32633
    assert item.assets["B02"].href.endswith("bands/B02.tif")
    with pytest.raises(UserError, match="widen the dates"):
        stac.search(BRANDENBURG.replace(time_range=("2018-01-01", "2018-12-31")))
    with pytest.raises(UserError, match="no scenes"):
        stac.search(BRANDENBURG, bbox=(0.0, 0.0, 1.0, 1.0))
    with pytest.raises(UserError, match="max-cloud"):
        stac.search(BRANDENBURG, max_cloud=5)


def test_unknown_catalog_is_a_clear_error():
    with pytest.raises(UserError, match="not a known provider"):
        stac.resolve_catalog("/no/such/catalog")


def test_earth_search_asset_names_are_normalised():
    import pystac

    item = pystac.Item("x", None, None, __import__("datetime").datetime(2021, 1, 1), {})
    item.properties["proj:code"] = "EPSG:32628"
    for key in ("blue", "nir08", "scl", "swir22"):
        item.add_asset(key, pystac.Asset(f"https://example.test/{key}.tif"))
    norm = stac.normalize_item(item)
    assert sorted(norm.assets) == ["B02", "B12", "B8A", "SCL"]
    assert norm.properties["proj:epsg"] == 32628


def test_stack_is_lazy_and_on_the_region_grid():
    items = stac.search(BRANDENBURG)
    c = cube.stack(items, BRANDENBURG, ["B02", "B8A"])
    assert c.dims == ("time", "band", "y", "x")
    assert c.shape == (1, 2, 768, 1536)
    assert c.chunks is not None  # dask-backed, nothing computed yet
    assert c.rio.crs.to_epsg() == 32633
    assert tuple(c.rio.transform())[:6] == (10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0)
    # Pixel values equal the source COG (10 m band, same grid: exact).
    with rasterio.open(BAND_DIR / "B02.tif") as src:
        ref = src.read(1)
    np.testing.assert_array_equal(c.sel(band="B02").values[0], ref)
    # 20 m band resampled (nearest) onto 10 m: each source pixel becomes 2x2.
    with rasterio.open(BAND_DIR / "B8A.tif") as src:
        ref20 = src.read(1)
    np.testing.assert_array_equal(c.sel(band="B8A").values[0][::2, ::2], ref20)


def test_cube_zarr_round_trip(brandenburg_cube):
    ds = store.open_cube(brandenburg_cube)
    assert ds["reflectance"].dims == ("time", "band", "y", "x")
    assert store.band_names(ds) == list(BRANDENBURG.bands)
    grid = store.grid_of(ds)
    assert grid["crs"].to_epsg() == 32633
    assert grid["bounds"] == (330000.0, 5814360.0, 345360.0, 5822040.0)
    with rasterio.open(BAND_DIR / "B04.tif") as src:
        ref = src.read(1)
    np.testing.assert_array_equal(ds["reflectance"].sel(band="B04").values[0], ref)
    # Labels: WorldCover codes from the OSM polygons, 0 unlabelled.
    labels = ds["labels"].values
    assert set(np.unique(labels)) == {0, 10, 20, 30, 40, 50, 80, 90}
    assert 0.2 < (labels > 0).mean() < 0.5
    attrs = ds.attrs
    assert json.loads(attrs["items"]) == ["S2A_T33UUU_20170216T102101_L1C"]
    # Readable with nothing from senland-geo.
    plain = xr.open_zarr(brandenburg_cube, consolidated=False, decode_coords="all")
    assert plain.rio.crs.to_epsg() == 32633
    assert plain["reflectance"].shape == (1, 10, 768, 1536)


def test_incomplete_store_is_refused(brandenburg_cube, tmp_path):
    import shutil

    import zarr

    copy = tmp_path / "half.zarr"
    shutil.copytree(brandenburg_cube, copy)
    zarr.open_group(copy, mode="r+").attrs[store.COMPLETE_ATTR] = False
    with pytest.raises(UserError, match="incomplete"):
        store.open_cube(copy)
    with pytest.raises(UserError, match="does not exist"):
        store.open_cube(tmp_path / "missing.zarr")


def test_write_refuses_missing_folder_and_existing_store(brandenburg_cube, tmp_path):
    ds = store.open_cube(brandenburg_cube)
    with pytest.raises(UserError, match="does not exist"):
        store.write_cube(ds, tmp_path / "nope" / "x.zarr")
    with pytest.raises(UserError, match="already exists"):
        store.write_cube(ds, brandenburg_cube)


@pytest.mark.parametrize("compression", store.COMPRESSIONS)
def test_chunks_written_directly_read_back_with_plain_zarr(tmp_path, compression):
    """Partial edge chunks, every compression: plain xarray/zarr read the exact values."""
    import zarr

    rng = np.random.default_rng(3)
    values = rng.integers(0, 12000, size=(3, 2, 150, 170), dtype=np.uint16)
    labels = rng.integers(0, 100, size=(150, 170), dtype=np.uint8)
    da = xr.DataArray(
        values,
        dims=cube.DIMS,
        coords={
            "time": np.array(["2021-01-01", "2021-02-01", "2021-03-01"], dtype="datetime64[ns]"),
            "band": ["B02", "B03"],
            "y": 5000.0 - 10 * np.arange(150) - 5,
            "x": 300000.0 + 10 * np.arange(170) + 5,
        },
    ).rio.write_crs("EPSG:32628")
    lab = xr.DataArray(labels, dims=("y", "x"), coords={"y": da["y"], "x": da["x"]})
    ds = store.cube_to_dataset(da.chunk({"y": 64, "x": 64}), lab)
    out = store.write_cube(ds, tmp_path / "c.zarr", chunks=(64, 64), compression=compression)
    codecs = [c.to_dict()["name"] for c in zarr.open_array(out / "reflectance").metadata.codecs]
    assert (
        codecs
        == {"lz4": ["bytes", "blosc"], "zstd": ["bytes", "zstd"], "none": ["bytes"]}[compression]
    )
    plain = xr.open_zarr(out, consolidated=False)
    assert plain["reflectance"].encoding["chunks"] == (3, 2, 64, 64)
    np.testing.assert_array_equal(plain["reflectance"].values, values)
    np.testing.assert_array_equal(plain["labels"].values, labels)
    assert len(list((out / "reflectance" / "c").rglob("*"))) > 9  # 3 x 3 chunks, as files
    with pytest.raises(UserError, match="compression 'gzip' unknown"):
        store.write_cube(ds, tmp_path / "d.zarr", compression="gzip")


def test_store_metadata_is_what_xarray_writes(tmp_path):
    """write_cube creates the arrays itself (no dask delayed): the same zarr.json documents."""
    rng = np.random.default_rng(3)
    da = xr.DataArray(
        rng.integers(1, 9000, (2, 2, 100, 90)).astype("uint16"),
        dims=cube.DIMS,
        coords={
            "time": np.array(["2021-01-01", "2021-02-01"], dtype="datetime64[ns]"),
            "band": ["B02", "B03"],
            "y": 5000.0 - 10 * np.arange(100) - 5,
            "x": 300000.0 + 10 * np.arange(90) + 5,
        },
    ).rio.write_crs("EPSG:32628")
    lab = xr.DataArray(
        rng.integers(0, 5, (100, 90)).astype("uint8"),
        dims=("y", "x"),
        coords={"y": da["y"], "x": da["x"]},
        attrs={"flag_values": np.array([10, 20], dtype="uint8"), "nodata": 0, "source": "wc"},
    )
    ds = store.cube_to_dataset(da.chunk({"y": 64, "x": 64}), lab, attrs={"items": ["a", "b"]})
    ds["labels"].attrs.update(lab.attrs)
    ours = store.write_cube(ds, tmp_path / "ours.zarr", chunks=(64, 64))
    # xarray's own structure write, with the same encoding and the same variables
    ref = ds.chunk({"time": -1, "band": -1, "y": 64, "x": 64})
    for var in ref.variables.values():
        var.encoding = {}
    ref.attrs[store.COMPLETE_ATTR] = True
    compressors = store._compressors("lz4")
    encoding = {
        "reflectance": {"chunks": (2, 2, 64, 64), "compressors": compressors},
        "labels": {"chunks": (64, 64), "compressors": compressors},
    }
    ref.to_zarr(
        tmp_path / "ref.zarr", zarr_format=3, encoding=encoding, consolidated=False, compute=False
    )
    docs = sorted(p.relative_to(ours) for p in ours.rglob("zarr.json"))
    assert docs == sorted(
        p.relative_to(tmp_path / "ref.zarr") for p in (tmp_path / "ref.zarr").rglob("zarr.json")
    )
    assert len(docs) == 8  # group, 2 tiled arrays, time, band, y, x, spatial_ref
    for doc in docs:
        assert json.loads((ours / doc).read_text()) == json.loads(
            (tmp_path / "ref.zarr" / doc).read_text()
        ), doc
    back = xr.open_zarr(ours, consolidated=False)
    np.testing.assert_array_equal(back["reflectance"].values, da.values)
    assert back["labels"].attrs["flag_values"] == [10, 20]
