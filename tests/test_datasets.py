"""CubeDataset, LabeledCubeDataset, MultiCubeDataset and label rasters on the real sample."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import xarray as xr
import zarr
from rasterio.transform import from_origin
from torch.utils.data import DataLoader
from torchgeo.samplers import GridGeoSampler, RandomBatchGeoSampler, RandomGeoSampler

from senland_geo import store
from senland_geo.classes import IGNORE_INDEX, WORLDCOVER
from senland_geo.datasets import (
    ChunkCache,
    CubeDataset,
    CubeLabelDataset,
    LabeledCubeDataset,
    MultiCubeDataset,
    RasterLabelDataset,
    check_patch_size,
    collate_patches,
    read_window,
)
from senland_geo.errors import UserError
from senland_geo.splits import LeakageError, Split, region_holdout, subset

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
# Query of the pixel window rows 100..164, cols 200..264 of the sample (10 m, UTM 33N).
X0, Y1 = 330000 + 200 * 10, 5822040 - 100 * 10
QUERY = (slice(X0, X0 + 640), slice(Y1 - 640, Y1), slice(None, None))


def derive_cube(
    src: Path, dst: Path, *, x: slice, y: slice, dates: int = 1, crs: str | None = None
) -> Path:
    """Write a crop of ``src`` (optionally repeated over ``dates`` dates) as a new cube."""
    ds = store.open_cube(src).isel(x=x, y=y).load()
    ds = ds.assign_coords(band=np.asarray(store.band_names(ds), dtype=object))
    ds = ds.rio.write_transform(ds.rio.transform(recalc=True))
    if dates > 1:
        refl = xr.concat(
            [ds["reflectance"] * 0 if t == 1 else ds["reflectance"] + t for t in range(dates)],
            dim="time",
        )  # date 1 is all nodata
        times = pd.date_range("2017-01-15", periods=dates, freq="MS") + pd.Timedelta(days=14)
        ds = (
            ds.drop_vars("reflectance")
            .drop_dims("time")
            .assign(reflectance=refl.assign_coords(time=times))
        )
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    return store.write_cube(ds, dst, chunks=(128, 128))


@pytest.fixture(scope="module")
def series_cube(brandenburg_cube: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-date, 256 x 256 px cube (date 1 all nodata) from the real sample."""
    out = tmp_path_factory.mktemp("series") / "series.zarr"
    return derive_cube(brandenburg_cube, out, x=slice(0, 256), y=slice(0, 256), dates=4)


def test_cube_patches_are_exact_and_fast_path_matches_intersection(brandenburg_cube):
    images = CubeDataset(brandenburg_cube)
    sample = images[QUERY]
    assert sample["image"].shape == (10, 64, 64)
    assert sample["image"][:, 0, 0].tolist() == [
        1488,
        1200,
        1248,
        1440,
        1856,
        2112,
        2240,
        2496,
        2880,
        1856,
    ]
    assert bool(sample["valid"].all())
    raw = zarr.open_group(brandenburg_cube, mode="r")["reflectance"][0, :, 100:164, 200:264]
    np.testing.assert_array_equal(sample["image"].numpy(), raw.astype(np.float32))

    both = images & CubeLabelDataset(brandenburg_cube, WORLDCOVER)
    fast = LabeledCubeDataset(brandenburg_cube, WORLDCOVER, in_memory=False)
    a, b = both[QUERY], fast[QUERY]
    for key in ("image", "mask", "valid"):
        assert torch.equal(a[key], b[key]), key
    labels = zarr.open_group(brandenburg_cube, mode="r")["labels"][100:164, 200:264]
    expected = WORLDCOVER.code_to_index_lut()[labels]
    assert torch.equal(b["mask"], torch.from_numpy(expected))
    assert b["mask"][0, 0].item() == IGNORE_INDEX  # code 0 (no OSM label) is ignored
    # Lazy: the reflectance stays in Zarr, the small label raster is held in memory.
    assert isinstance(fast._open("labels"), np.ndarray)
    assert isinstance(fast.array, zarr.Array)
    # Band subset and order.
    sub = CubeDataset(brandenburg_cube, bands=["B12", "B02"])[QUERY]["image"]
    assert sub[:, 0, 0].tolist() == [1856, 1488]


def test_time_series_samples_dates_season_and_chunking(series_cube):
    chunks = zarr.open_group(series_cube, mode="r")["reflectance"].chunks
    assert chunks == (4, 10, 128, 128)  # the whole stack of a window in one chunk
    ds = LabeledCubeDataset(series_cube, WORLDCOVER)
    query = (slice(330000, 330640), slice(5822040 - 640, 5822040), slice(None, None))
    s = ds[query]
    assert s["image"].shape == (4, 10, 64, 64)
    # Date t holds the sample + t, date 1 is nodata.
    assert s["image"][:, 0, 0, 0].tolist() == [1156, 0, 1158, 1159]
    assert s["date_mask"].tolist() == [True, False, True, True]
    assert s["dates"].tolist() == [17212, 17240, 17271, 17301]  # 2017-02-15 ... 05-15
    summer = CubeDataset(series_cube, season=(3, 4))[query]
    assert summer["dates"].tolist() == [17240, 17271]  # March and April
    assert summer["image"][:, 0, 0, 0].tolist() == [0, 1158]
    batch = collate_patches([s, s])
    assert batch["image"].shape == (2, 4, 10, 64, 64) and batch["date_mask"].shape == (2, 4)
    with pytest.raises(UserError, match="falls in season"):
        CubeDataset(series_cube, season=(8, 9))


def test_dataloader_two_workers_matches_serial_reads(brandenburg_cube):
    ds = LabeledCubeDataset(brandenburg_cube, WORLDCOVER)
    sampler = RandomGeoSampler(ds, size=64, length=32, generator=torch.Generator().manual_seed(3))
    queries = list(sampler)
    loader = DataLoader(
        ds,
        sampler=queries,
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
        pin_memory=True,
        collate_fn=collate_patches,
    )
    for _ in range(2):  # persistent workers serve a second epoch
        batches = list(loader)
    assert len(batches) == 4
    serial = collate_patches([ds[q] for q in queries[8:16]])
    for key in ("image", "mask", "valid"):
        assert torch.equal(batches[1][key], serial[key])
    # Batch sampler and grid sampler over the intersection dataset.
    both = CubeDataset(brandenburg_cube) & CubeLabelDataset(brandenburg_cube, WORLDCOVER)
    batch_sampler = RandomBatchGeoSampler(
        both, size=64, batch_size=4, length=8, generator=torch.Generator().manual_seed(0)
    )
    loader = DataLoader(both, batch_sampler=batch_sampler, collate_fn=collate_patches)
    shapes = [tuple(b["image"].shape) for b in loader]
    assert shapes == [(4, 10, 64, 64)] * 2
    assert len(GridGeoSampler(both, size=256, stride=256)) == 3 * 6


def test_bad_input_errors(brandenburg_cube, tmp_path):
    with pytest.raises(UserError, match=r"lacks bands \['B01'\]"):
        CubeDataset(brandenburg_cube, bands=["B02", "B01"])
    ds = LabeledCubeDataset(brandenburg_cube, WORLDCOVER)
    with pytest.raises(UserError, match="patch size 1000 px is larger than every area"):
        check_patch_size(ds, 1000)
    split = Split(((330000, 5814360, 330500, 5822040),), ((340000, 5814360, 345360, 5822040),))
    with pytest.raises(UserError, match="patch size 64 px.*largest 50 x 768"):
        subset(ds, split, "train", patch_size=64)
    far = Split(((0, 0, 10, 10),), ((20, 0, 30, 10),))
    with pytest.raises(UserError, match="overlaps the dataset"):
        subset(ds, far, "train")

    # A label GeoTIFF on the cube's grid intersects; on another CRS it is refused.
    labels = zarr.open_group(brandenburg_cube, mode="r")["labels"][...]
    profile = {
        "driver": "GTiff",
        "height": 768,
        "width": 1536,
        "count": 1,
        "dtype": "uint8",
        "transform": from_origin(330000, 5822040, 10, 10),
    }
    for name, crs in (("same", "EPSG:32633"), ("other", "EPSG:32632")):
        (tmp_path / name).mkdir()
        with rasterio.open(tmp_path / name / "labels.tif", "w", crs=crs, **profile) as dst:
            dst.write(labels, 1)
    images = CubeDataset(brandenburg_cube)
    same = images & RasterLabelDataset(tmp_path / "same", WORLDCOVER)
    assert torch.equal(same[QUERY]["mask"], ds[QUERY]["mask"])
    with pytest.raises(UserError, match="is on EPSG:32632 but .* is on EPSG:32633"):
        _ = images & RasterLabelDataset(tmp_path / "other", WORLDCOVER)
    with pytest.raises(
        UserError, match="brandenburg.zarr is on EPSG:32633 but .*other is on EPSG:32632"
    ):
        _ = RasterLabelDataset(tmp_path / "other", WORLDCOVER) & images


def test_area_holdout_over_several_cubes(brandenburg_cube, tmp_path):
    west = derive_cube(brandenburg_cube, tmp_path / "w.zarr", x=slice(0, 512), y=slice(0, 768))
    east = derive_cube(brandenburg_cube, tmp_path / "e.zarr", x=slice(528, 1536), y=slice(0, 768))
    middle = derive_cube(brandenburg_cube, tmp_path / "m.zarr", x=slice(500, 600), y=slice(0, 100))
    split = region_holdout({"west": west, "east": east}, test="east", buffer=160)
    assert split.train == ((330000.0, 5814360.0, 335120.0, 5822040.0),)
    assert split.test == ((335280.0, 5814360.0, 345360.0, 5822040.0),)
    assert split.train_regions == ("west",) and split.test_regions == ("east",)
    assert split.crs == "EPSG:32633"
    with pytest.raises(LeakageError, match="leaks"):
        region_holdout({"west": west, "middle": middle}, test="middle")
    with pytest.raises(UserError, match="not among the cubes"):
        region_holdout({"west": west}, test="dakar")

    both = MultiCubeDataset(
        [LabeledCubeDataset(west, WORLDCOVER), LabeledCubeDataset(east, WORLDCOVER)],
        names=["west", "east"],
    )
    full = LabeledCubeDataset(brandenburg_cube, WORLDCOVER)
    assert torch.equal(both[QUERY]["image"], full[QUERY]["image"])  # from the west cube
    east_q = (slice(340000, 340640), slice(5820000, 5820640), slice(None, None))
    assert torch.equal(both[east_q]["mask"], full[east_q]["mask"])  # from the east cube
    straddle = (slice(335000, 335640), slice(5820000, 5820640), slice(None, None))
    with pytest.raises(IndexError, match="not inside one of the cubes"):
        both[straddle]
    sampler = RandomGeoSampler(both, size=64, length=50, generator=torch.Generator().manual_seed(0))
    assert all(both[q]["image"].shape == (10, 64, 64) for q in list(sampler)[:10])

    train = MultiCubeDataset([LabeledCubeDataset(west, WORLDCOVER)], names=split.train_regions)
    queries = RandomGeoSampler(train, size=64, length=100)
    assert split.check_queries(queries, "train") == 100

    utm32 = derive_cube(
        brandenburg_cube, tmp_path / "u.zarr", x=slice(0, 64), y=slice(0, 64), crs="EPSG:32632"
    )
    with pytest.raises(UserError, match="must share a CRS"):
        MultiCubeDataset([CubeDataset(west), CubeDataset(utm32)])
    with pytest.raises(UserError, match="different CRSs"):
        region_holdout({"west": west, "u": utm32}, test="u")


def _query(ds, rows: slice, cols: slice) -> tuple[slice, slice, slice]:
    """The TorchGeo query of a pixel window of ``ds``'s grid."""
    minx, _, _, maxy = ds.grid["bounds"]
    res = ds.grid["res"]
    return (
        slice(minx + cols.start * res, minx + cols.stop * res),
        slice(maxy - rows.stop * res, maxy - rows.start * res),
        slice(None, None),
    )


# Windows crossing 0, 1 (cols), 1 (rows) and 2 chunk borders of the sample's 512 px chunks.
WINDOWS = [
    (slice(10, 74), slice(20, 84)),
    (slice(100, 164), slice(490, 554)),
    (slice(480, 544), slice(100, 164)),
    (slice(490, 554), slice(1000, 1064)),
]


def test_chunk_cache_patches_equal_direct_zarr_slices(brandenburg_cube, series_cube):
    group = zarr.open_group(brandenburg_cube, mode="r")
    refl, labels = group["reflectance"], group["labels"]
    assert refl.chunks == (1, 10, 512, 512) and labels.chunks == (512, 512)
    cached = CubeDataset(brandenburg_cube, in_memory=False)
    uncached = CubeDataset(brandenburg_cube, in_memory=False, chunk_cache_bytes=0)
    label_ds = CubeLabelDataset(brandenburg_cube, WORLDCOVER, in_memory=False)
    for rows, cols in WINDOWS:
        direct = refl[:, :, rows, cols]
        read = cached._read("reflectance", rows, cols)
        assert read.dtype == direct.dtype == np.uint16 and np.array_equal(read, direct)
        query = _query(cached, rows, cols)
        image = cached[query]["image"]
        assert torch.equal(image, torch.from_numpy(direct[0].astype(np.float32)))
        assert torch.equal(image, uncached[query]["image"])  # cache 0: same result
        codes = label_ds._read("labels", rows, cols)
        assert codes.dtype == np.uint8 and np.array_equal(codes, labels[rows, cols])
        mask = label_ds[query]["mask"]
        assert torch.equal(mask, torch.from_numpy(WORLDCOVER.code_to_index_lut()[codes]))
    assert len(uncached.chunk_cache) == 0 and cached.chunk_cache.hits > 0
    # 6 distinct chunks touched (1 + 2 + 2 + 4 with 3 repeats), all kept: 3 full ones and
    # 3 of the 256-row bottom edge (the sample is 768 rows).
    assert len(label_ds.chunk_cache) == len(cached.chunk_cache) == 6
    assert cached.chunk_cache.nbytes == 3 * 10 * (512 + 256) * 512 * 2

    # Time series (4 dates whole in 128 px chunks), season subset, across 4 chunks.
    series = zarr.open_group(series_cube, mode="r")["reflectance"]
    lazy = CubeDataset(series_cube, in_memory=False, time_series=True, season=(3, 4))
    rows, cols = slice(100, 164), slice(120, 184)
    sample = lazy[_query(lazy, rows, cols)]
    assert sample["image"].shape == (2, 10, 64, 64)
    expected = series[1:3, :, rows, cols].astype(np.float32)
    assert torch.equal(sample["image"], torch.from_numpy(expected))
    assert len(lazy.chunk_cache) == 4


def test_read_window_stitches_chunks_of_every_dimension():
    data = np.arange(3 * 5 * 10 * 9, dtype=np.uint16).reshape(3, 5, 10, 9)
    array = zarr.create_array(store={}, shape=data.shape, chunks=(1, 2, 4, 4), dtype=data.dtype)
    array[...] = data
    cache = ChunkCache(1 << 20)
    for rows, cols in [
        (slice(0, 10), slice(0, 9)),
        (slice(3, 9), slice(2, 7)),
        (slice(4, 8), slice(4, 8)),
        (slice(9, 10), slice(8, 9)),
    ]:
        out = read_window(array, rows, cols, cache)
        assert out.dtype == np.uint16 and np.array_equal(out, data[:, :, rows, cols])
    assert len(cache) == 3 * 3 * 3 * 3  # every chunk once
    # Cached chunks are read-only; a stitched window is a fresh array.
    assert not any(chunk.flags.writeable for chunk in cache._chunks.values())
    read_window(array, slice(4, 8), slice(4, 8), cache)[0, 0, 0, 0] = 1
    assert read_window(array, slice(4, 8), slice(4, 8), cache)[0, 0, 0, 0] == data[0, 0, 4, 4]


def test_chunk_cache_byte_bound_lru_and_pickling(brandenburg_cube):
    chunk = 10 * 512 * 512 * 2  # one decoded reflectance chunk
    ds = CubeDataset(brandenburg_cube, in_memory=False, chunk_cache_bytes=2 * chunk + 100)
    cache = ds.chunk_cache
    for rows, cols in [
        (slice(0, 64), slice(0, 64)),
        (slice(0, 64), slice(600, 664)),
        (slice(0, 64), slice(10, 74)),
        (slice(0, 64), slice(1100, 1164)),
    ]:
        ds[_query(ds, rows, cols)]
        assert cache.nbytes <= cache.max_bytes and len(cache) <= 2
    # Chunk column 1 was least recently used (column 0 was hit again) and was evicted.
    assert list(cache._chunks) == [("reflectance", (0, 0, 0, 0)), ("reflectance", (0, 0, 0, 2))]
    assert (cache.hits, cache.misses) == (1, 3)
    # A chunk above the bound is returned, never kept.
    tiny = ChunkCache(100)
    assert tiny.get(("x",), lambda: np.ones(1000)).sum() == 1000 and len(tiny) == 0
    # Unpickled (a spawned DataLoader worker): the bound survives, the contents do not.
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.chunk_cache.max_bytes == 2 * chunk + 100 and len(clone.chunk_cache) == 0
    assert len(cache) == 2
    with pytest.raises(UserError, match="chunk_cache_bytes -1 must be a byte count"):
        CubeDataset(brandenburg_cube, chunk_cache_bytes=-1)
