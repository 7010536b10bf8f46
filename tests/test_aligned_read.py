"""Direct aligned reads give stackstac's cube bit for bit, and fall back when they cannot."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.threaded
import numpy as np
import pytest
import rasterio
import stackstac
import xarray as xr
from pyproj import Transformer
from rasterio.transform import Affine

from senland_geo import aligned_read, cube, stac, store
from senland_geo.build import _check_not_all_cloudy
from senland_geo.errors import UserError
from senland_geo.regions import Region

EPSG = 32628
X0, Y0 = 300000.0, 1400040.0  # a corner of the 60 m grid
N10 = 96  # 10 m pixels per side of a full asset (960 m)


def _cog(path: Path, data: np.ndarray, transform: Affine, *, epsg: int = EPSG, nodata=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
        crs=f"EPSG:{epsg}", transform=transform, nodata=nodata, tiled=True,
        blockxsize=32, blockysize=32, compress="deflate",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _asset(path: Path, transform: Affine, shape: tuple[int, int], epsg: int = EPSG) -> dict:
    return {
        "href": str(path),
        "type": "image/tiff; application=geotiff",
        "proj:epsg": epsg,
        "proj:shape": list(shape),
        "proj:transform": list(transform)[:6],
        "roles": ["data"],
    }


def _item(item_id: str, when: str, assets: dict) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
        "bbox": [-17.0, 12.0, -16.0, 13.0],
        "geometry": {"type": "Polygon", "coordinates": [[[-17, 12], [-16, 12], [-16, 13],
                                                         [-17, 13], [-17, 12]]]},
        "properties": {"datetime": when, "proj:epsg": EPSG},
        "links": [], "assets": assets,
    }  # fmt: skip


def _write_items(tmp_path: Path, features: list[dict]) -> str:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def _scene(tmp_path: Path, name: str, seed: int, *, b02: tuple[Affine, int] | None = None) -> dict:
    """Assets B02 (10 m), B05 (20 m), B09 (60 m, nodata 65535) and SCL (20 m, uint8)."""
    rng = np.random.default_rng(seed)
    t10, t20, t60 = (Affine(r, 0, X0, 0, -r, Y0) for r in (10, 20, 60))
    t02, n02 = b02 or (t10, N10)
    specs = {
        "B02": (t02, n02, "uint16", 0),
        "B05": (t20, N10 // 2, "uint16", 0),
        "B09": (t60, N10 // 6, "uint16", 65535),
        "SCL": (t20, N10 // 2, "uint8", 0),
    }
    assets = {}
    for band, (t, n, dtype, nodata) in specs.items():
        if dtype == "uint8":
            data = rng.choice(np.array([0, 4, 5, 8, 9], np.uint8), size=(n, n))
        else:
            data = rng.integers(1, 10000, size=(n, n), dtype=np.uint16)
            data[:3, :5] = nodata  # a few no-data pixels
        path = tmp_path / name / f"{band}.tif"
        _cog(path, data, t, nodata=nodata)
        assets[band] = _asset(path, t, (n, n))
    return assets


def _region(catalog: str, bounds: tuple[float, float, float, float]) -> Region:
    return Region(
        name="aligned-test", bbox=(-16.9, 12.5, -16.8, 12.6), epsg=EPSG,
        time_range=("2021-01-01", "2021-12-31"), catalog=catalog, labels=None,
        grid_bounds=bounds,
    )  # fmt: skip


BANDS = ["B02", "B05", "B09", "SCL"]
# A region overhanging the assets on every side, with its origin on an odd 10 m pixel of
# the 20 m grid (a chunk edge cuts 20 m and 60 m pixels) and partial edge chunks.
BOUNDS = (X0 - 70, Y0 - 10 * N10 - 50, X0 + 10 * N10 + 30, Y0 + 90)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aligned")
    small = (Affine(10, 0, X0 + 200, 0, -10, Y0 - 300), 40)  # B02 of scene 2: a 400 m patch
    features = [
        _item("s1", "2021-03-01T11:00:00Z", _scene(tmp, "s1", 1)),
        _item("s2", "2021-01-15T11:00:00Z", _scene(tmp, "s2", 2, b02=small)),
    ]
    return tmp, features


def _stack(catalog: str, direct: bool, bounds=BOUNDS, bands=BANDS) -> xr.DataArray:
    region = _region(catalog, bounds)
    return cube.stack(stac.search(region), region, bands, chunksize=48, direct=direct)


def test_direct_reads_equal_stackstac_bit_for_bit(aligned):
    tmp, features = aligned
    catalog = _write_items(tmp, features)
    direct, warped = _stack(catalog, True), _stack(catalog, False)
    # The direct path is taken: one chunk holds every date and band.
    assert direct.data.chunksize == (2, 4, 48, 48)
    assert warped.data.chunksize == (1, 1, 48, 48)
    with dask.config.set(scheduler="threads", num_workers=2):
        a, b = direct.values, warped.values
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype == np.uint16 and a.shape == (2, 4, 9 + N10 + 5, 7 + N10 + 3)
    xr.testing.assert_identical(direct.coords.to_dataset(), warped.coords.to_dataset())
    assert direct.dims == warped.dims and direct.rio.crs == warped.rio.crs
    # ... and both are what stackstac.stack itself gives (cube.stack runs its steps).
    region = _region(catalog, BOUNDS)
    items = stac.search(region)
    plain = [i.to_dict(include_self_link=False, transform_hrefs=False) for i in items]
    reference = stackstac.stack(
        plain,
        assets=BANDS,
        epsg=EPSG,
        resolution=10.0,
        bounds=BOUNDS,
        dtype=np.dtype("uint16"),
        fill_value=np.uint16(0),
        rescale=False,
        chunksize=(1, 1, 48, 48),
        sortby_date="asc",
        xy_coords="center",
    )
    with dask.config.set(scheduler="threads", num_workers=2):
        np.testing.assert_array_equal(reference.values, a)
    for name in ("y", "x"):
        np.testing.assert_array_equal(reference[name].values, direct[name].values)
    np.testing.assert_array_equal(
        reference["time"].values.astype("datetime64[ns]"), direct["time"].values
    )
    assert [str(b) for b in reference["band"].values] == list(direct["band"].values)
    assert list(direct["band"].values) == BANDS
    # Real pixels: the asset's upper-left corner is output pixel (9, 7); each 20 m pixel of
    # scene s2 (first by date) fills 2 x 2 output pixels from there.
    with rasterio.open(features[1]["assets"]["B05"]["href"]) as src:
        b05 = src.read(1)
    rows, cols = 9, 7
    np.testing.assert_array_equal(
        a[0, 1, rows : rows + 10, cols : cols + 10], np.kron(b05[:5, :5], np.ones((2, 2)))
    )
    # 60 m nodata (65535) became 0; the small B02 patch is zero outside its 40 x 40 pixels.
    assert (a[:, 2] == 65535).sum() == 0 and (a[:, 2] == 0).sum() > 0
    assert (a[0, 0] > 0).sum() == 40 * 40 - 15 and (a[1, 0] > 0).sum() > 90 * 90


def test_misaligned_assets_fall_back_to_stackstac(aligned):
    tmp, features = aligned
    shifted = json.loads(json.dumps(features))
    # A 5 m shift (half an output pixel) in the metadata: not on the grid.
    transform = shifted[0]["assets"]["B05"]["proj:transform"]
    transform[2] += 5
    catalog = _write_items(tmp, shifted)
    assert _stack(catalog, True).data.chunksize == (1, 1, 48, 48)
    # Another CRS (an asset of the next UTM zone over the same ground): fall back too.
    other = json.loads(json.dumps(features))
    x, y = Transformer.from_crs(EPSG, 32629, always_xy=True).transform(X0, Y0)
    other[1]["assets"]["SCL"].update(
        {"proj:epsg": 32629, "proj:transform": [20, 0, x // 20 * 20, 0, -20, y // 20 * 20]}
    )
    assert _stack(_write_items(tmp, other), True).data.chunksize == (1, 1, 48, 48)
    # An odd output resolution (15 m does not divide 20 or 60 m).
    region = _region(_write_items(tmp, features), (X0 - 60, Y0 - 990, X0 + 960, Y0 + 90))
    region = region.replace(resolution=15.0)
    items = stac.search(region)
    assert cube.stack(items, region, BANDS, chunksize=48).data.chunksize == (1, 1, 48, 48)


def test_file_off_its_metadata_grid_is_read_like_stackstac(aligned):
    """Metadata says aligned, the file is shifted by 5 m: that asset goes through stackstac's
    own reader inside the direct path, and the cube is still stackstac's."""
    tmp, features = aligned
    moved = json.loads(json.dumps(features))
    path = tmp / "moved" / "B05.tif"
    with rasterio.open(moved[0]["assets"]["B05"]["href"]) as src:
        data = src.read(1)
    _cog(path, data, Affine(20, 0, X0 + 5, 0, -20, Y0))
    moved[0]["assets"]["B05"]["href"] = str(path)
    catalog = _write_items(tmp, moved)
    direct, warped = _stack(catalog, True), _stack(catalog, False)
    assert direct.data.chunksize == (2, 4, 48, 48)
    with dask.config.set(scheduler="threads", num_workers=2):
        np.testing.assert_array_equal(direct.values, warped.values)


def test_unreadable_asset_is_a_clear_error(aligned):
    tmp, features = aligned
    broken = json.loads(json.dumps(features))
    bad = tmp / "bad" / "B02.tif"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"II*\x00 this is not a GeoTIFF")
    broken[0]["assets"]["B02"]["href"] = str(bad)
    stacked = _stack(_write_items(tmp, broken), True)
    assert stacked.data.chunksize == (2, 4, 48, 48)
    with pytest.raises(RuntimeError, match="Error opening") as info:
        stacked.compute(scheduler="sync")
    translated = store._translate_read_error(info.value)
    assert isinstance(translated, UserError) and "cannot read an imagery asset" in str(translated)


def test_cloud_check_stops_early_and_keeps_its_outcome(aligned, monkeypatch):
    tmp, features = aligned
    catalog = _write_items(tmp, features)
    region = _region(catalog, BOUNDS)
    calls = []
    real = aligned_read.read_chunk
    monkeypatch.setattr(
        aligned_read, "read_chunk", lambda *a: calls.append(a[1:]) or real(*a), raising=True
    )
    scl = _stack(catalog, True, bands=["SCL"])  # rebuilt: the graph holds read_chunk
    with dask.config.set(scheduler="sync"):
        _check_not_all_cloudy(scl, region)  # clear pixels exist: no error
    n_chunks = int(np.prod(scl.data.numblocks))
    assert 1 <= len(calls) < n_chunks  # stopped before reading every chunk
    calls.clear()  # the same with dask batches (threads)
    _check_not_all_cloudy(scl, region, dask.threaded.get)
    assert 1 <= len(calls) < n_chunks
    # Every SCL pixel cloudy (values 8/9) or no data: the error, after reading everything.
    cloudy = scl.where(scl == 0, 9).astype("uint16")
    for scheduler in (None, dask.threaded.get):
        with pytest.raises(UserError, match="every scene of region 'aligned-test' is cloud"):
            _check_not_all_cloudy(cloudy, region, scheduler)
    # One clear pixel in the very last chunk is enough.
    last = cloudy.copy(data=cloudy.values)
    last[-1, 0, -1, -1] = 4
    _check_not_all_cloudy(last.chunk({"y": 48, "x": 48}), region)


def test_open_datasets_are_shared_by_threads_and_bounded(aligned, monkeypatch):
    """A dataset one thread opened serves the next task on another thread.

    Each is closed once it has served BYTES_PER_OPEN bytes.
    """
    import threading

    tmp, features = aligned
    catalog = _write_items(tmp, features)
    direct, warped = _stack(catalog, True), _stack(catalog, False)
    with dask.config.set(scheduler="threads", num_workers=2):
        want = warped.values
    graph = dict(direct.data.__dask_graph__())
    plan = graph[(direct.data.name, 0, 0, 0, 0)][1]
    n_assets = sum(1 for url in plan.urls.ravel() if url)
    opened: list[str] = []
    real_open = aligned_read._open
    monkeypatch.setattr(
        aligned_read, "_open", lambda url, plan: opened.append(url) or real_open(url, plan)
    )
    monkeypatch.setattr(aligned_read, "BYTES_PER_OPEN", 10**12)  # never closed for size
    aligned_read.close_idle()
    got = {}

    def task(rows, cols):
        got[rows, cols] = aligned_read.read_chunk(plan, rows, cols)

    for rows, cols in [((0, 48), (0, 48)), ((48, 96), (48, 96))]:  # one thread after another
        worker = threading.Thread(target=task, args=(rows, cols))
        worker.start()
        worker.join()
    assert len(opened) == n_assets == 8  # the second thread opened nothing
    np.testing.assert_array_equal(got[(0, 48), (0, 48)], want[:, :, :48, :48])
    np.testing.assert_array_equal(got[(48, 96), (48, 96)], want[:, :, 48:96, 48:96])
    assert sum(len(v) for v in aligned_read._idle.values()) == n_assets
    # Closed after every read: each chunk task reopens, the values unchanged.
    aligned_read.close_idle()
    opened.clear()
    monkeypatch.setattr(aligned_read, "BYTES_PER_OPEN", 1)
    with dask.config.set(scheduler="threads", num_workers=2):
        np.testing.assert_array_equal(direct.values, want)
    assert len(opened) > 4 * n_assets  # 9 chunks, most of which meet most assets
    assert not aligned_read._idle  # every dataset closed after serving its quota


def test_block_reader_is_the_chunk_read_only_for_a_plain_aligned_array(aligned):
    tmp, features = aligned
    direct = _stack(_write_items(tmp, features), True).data
    read = aligned_read.block_reader(direct, (0, 0, 1, 2))
    assert read is not None
    with dask.config.set(scheduler="sync"):
        want = direct.blocks[0, 0, 1, 2].compute()
    np.testing.assert_array_equal(read(), want)
    assert want.shape == (2, 4, 48, 10) and want.any()
    # Anything computed on the reads is not a plain read: dask computes it.
    assert aligned_read.block_reader(direct + 1, (0, 0, 1, 2)) is None
    assert aligned_read.block_reader(direct[:, :2], (0, 0, 0, 0)) is None
    assert aligned_read.block_reader(direct.rechunk((2, 4, 24, 24)), (0, 0, 0, 0)) is None
    assert aligned_read.block_reader(direct, (0, 0, 9, 9)) is None  # no such block


def test_threaded_store_write_equals_sync_write_byte_for_byte(aligned, tmp_path, monkeypatch):
    """The pooled direct writes (threads) store the bytes the dask batches (sync) store."""
    catalog = _write_items(aligned[0], aligned[1])
    computed: list[str] = []
    real_compute = store._compute_tasks
    monkeypatch.setattr(
        store,
        "_compute_tasks",
        lambda tasks, scheduler: (
            computed.append(dask.config.get("scheduler")) or real_compute(tasks, scheduler)
        ),
    )
    ds = store.cube_to_dataset(_stack(catalog, True))
    files = {}
    for scheduler in ("threads", "sync"):
        report: list[store.WriteReport] = []
        with dask.config.set(scheduler=scheduler, num_workers=2):
            out = store.write_cube(
                ds, tmp_path / f"{scheduler}.zarr", chunks=(48, 48), report=report
            )
        assert report[0].blocks == report[0].written == 9
        files[scheduler] = {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted((out / "reflectance" / "c").rglob("*"))
            if p.is_file()
        }
    assert len(files["threads"]) == 9 and files["threads"] == files["sync"]
    assert "threads" not in computed and computed  # threads: direct calls, no dask graph
    with dask.config.set(scheduler="threads"):
        plain = xr.open_zarr(tmp_path / "threads.zarr", consolidated=False)["reflectance"].values
    np.testing.assert_array_equal(plain, _stack(catalog, False).values)


def _chunk_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted((out / "reflectance" / "c").rglob("*"))
        if p.is_file()
    }


def test_prefetched_blocks_are_the_blocks_written(aligned, tmp_path, monkeypatch):
    """Blocks computed ahead (while the store is prepared) are written as computed: the
    same bytes as the sync write, for plain reads and for a median composite."""
    catalog = _write_items(aligned[0], aligned[1])
    taken: list[tuple[int, ...]] = []
    real_take = store.BlockPrefetch.take

    def take(self, data, key):
        read = real_take(self, data, key)
        if read is not None:
            taken.append(key)
        return read

    monkeypatch.setattr(store.BlockPrefetch, "take", take)
    for kind, stacked in (
        ("plain", _stack(catalog, True)),
        ("median", cube.composite_median(_stack(catalog, True))),
    ):
        ds = store.cube_to_dataset(stacked)
        files = {}
        for scheduler in ("threads", "sync"):
            out = tmp_path / f"{kind}-{scheduler}.zarr"
            taken.clear()
            with dask.config.set(scheduler=scheduler, num_workers=2):
                prefetch = store.prefetch_blocks(ds["reflectance"].data, out, (48, 48))
                assert (prefetch is None) == (scheduler == "sync")
                store.write_cube(ds, out, chunks=(48, 48), prefetch=prefetch)
            files[scheduler] = _chunk_files(out)
            # threads: the first block of each thread came from the prefetch
            assert taken == ([(0, 0, 0, 0), (0, 0, 0, 1)] if prefetch else [])
        assert len(files["threads"]) == 9 and files["threads"] == files["sync"]
    with dask.config.set(scheduler="threads", num_workers=2):
        data = _stack(catalog, True).data
        # Not chunked like the store, or an interrupted write to resume: no prefetch.
        assert store.prefetch_blocks(data, tmp_path / "x.zarr", (24, 24)) is None
        (tmp_path / "y.zarr.partial").mkdir()
        assert store.prefetch_blocks(data, tmp_path / "y.zarr", (48, 48)) is None
        started = store.prefetch_blocks(data, tmp_path / "z.zarr", (48, 48))
        assert started is not None
        started.cancel()
        assert started.take(data, (0, 0, 0, 0)) is None
