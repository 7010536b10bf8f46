"""Streaming, blending, nodata and invariance of predict_cube on small synthetic cubes."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from rasterio.transform import from_origin

from senland_geo import registry, store
from senland_geo.checkpoint import save_checkpoint
from senland_geo.classes import WORLDCOVER
from senland_geo.errors import UserError
from senland_geo.predict import (
    PROB_NODATA,
    PROB_SCALE,
    CubeReader,
    StripAccumulator,
    plan_batches,
    predict_cube,
)
from senland_geo.regions import S2_BANDS_10

MEAN = [1200.0, 1400.0, 1500.0, 1800.0, 2200.0, 2400.0, 2600.0, 2700.0, 2300.0, 1700.0]
STD = [400.0, 450.0, 600.0, 600.0, 650.0, 700.0, 750.0, 750.0, 800.0, 700.0]


def make_cube(path, height, width, *, times=1, seed=0, holes=True):
    """A synthetic 10-band L2A-like cube: smooth land-cover patches, a no-data corner."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    field = np.sin(yy / 23.0 + seed) + np.cos(xx / 31.0) + 0.5 * np.sin((xx + yy) / 11.0)
    cls = np.digitize(field, [-1.0, 0.0, 0.8])  # 4 "classes"
    signature = rng.uniform(500, 4000, size=(4, 10))
    data = np.empty((times, 10, height, width), np.uint16)
    for t in range(times):
        refl = signature[cls].transpose(2, 0, 1) * (1 + 0.1 * t)
        refl += rng.normal(0, 60, size=refl.shape)
        data[t] = np.clip(refl, 1, 10000).astype(np.uint16)
    if holes:
        data[..., : height // 5, : width // 4] = 0  # no-data corner (e.g. outside the swath)
    da = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.arange(times).astype("datetime64[D]").astype("datetime64[ns]"),
            "band": list(S2_BANDS_10),
            "y": 5_000_000 - 10 * (np.arange(height) + 0.5),
            "x": 400_000 + 10 * (np.arange(width) + 0.5),
        },
    )
    da = da.rio.write_crs("EPSG:32628").rio.write_transform(from_origin(400_000, 5_000_000, 10, 10))
    ds = store.cube_to_dataset(da, attrs={"items": ["S2A_FAKE_1", "S2B_FAKE_2"]})
    ds.attrs["class_table"] = "esa-worldcover"
    return store.write_cube(ds, path)


def make_checkpoint(path, *, model="unet-resnet34-slim", options=None, temporal=False, seed=0):
    """A randomly initialised model saved with plausible metadata (10 bands, WorldCover)."""
    options = {"width": 0.25} if options is None else options
    torch.manual_seed(seed)
    net = registry.load("models", model)(in_channels=10, num_classes=len(WORLDCOVER), **options)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # a confident head, like a trained model's (no near-ties everywhere)
        head.weight *= 20
    meta = {
        "model": model,
        "model_options": options,
        "bands": list(S2_BANDS_10),
        "normalization": {"mean": MEAN, "std": STD},
        "classes": WORLDCOVER.to_dict(),
        "temporal": temporal,
        "patch_size": 64,
    }
    return save_checkpoint(path, net, meta)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return {
        "cube": make_cube(root / "c.zarr", 200, 330),
        "ckpt": make_checkpoint(root / "m.pt"),
        "root": root,
    }


def test_strip_holds_one_tile_row_of_uint8_and_stitches_the_cores():
    height, width, tile, k = 300, 500, 128, 5
    rng = np.random.default_rng(1)
    whole = rng.random((k, 384, 512)).astype(np.float32)  # "predictions" of a larger scene
    whole /= whole.sum(0)
    valid = rng.random((384, 512)) > 0.1
    lut = np.array([10, 20, 30, 40, 50], np.uint8)
    batches = plan_batches(height, width, tile, block=200)
    assert all(len({w.row for w in b}) == 1 for b in batches)  # a batch never spans rows
    strip = StripAccumulator(width, k, tile, lut, probabilities=True)
    assert strip.codes.shape == (tile, width) and strip.probs.shape == (k, tile, width)
    assert strip.codes.dtype == strip.probs.dtype == np.uint8  # only `tile` rows, uint8
    codes, probs = [], []
    for i, batch in enumerate(batches):
        for w in batch:
            core = (slice(w.row, w.row + tile), slice(w.col, w.col + tile))
            strip.add(w, whole[(slice(None), *core)], valid[core])
        if i + 1 == len(batches) or batches[i + 1][0].row != batch[0].row:
            c, p = strip.release(batch[0].height)
            assert c.shape == (batch[0].height, width)
            codes.append(c)
            probs.append(p)
    ok = valid[:height, :width]
    expected = np.where(ok, lut[whole[:, :height, :width].argmax(0)], 0)
    np.testing.assert_array_equal(np.concatenate(codes), expected)
    q = np.concatenate(probs, axis=1)
    assert (q[:, ~ok] == PROB_NODATA).all()
    np.testing.assert_array_equal(q[:, ok], np.rint(whole[:, :height, :width][:, ok] * PROB_SCALE))
    assert strip.any_valid


def test_reader_mirrors_the_scene_around_each_core(data):
    import zarr

    reader = CubeReader(data["cube"], list(range(10)), 64, False, context=32)
    raw = np.asarray(zarr.open_group(str(data["cube"]), mode="r")["reflectance"][0])
    mirrored = np.pad(raw.astype(np.float32), ((0, 0), (32, 128), (32, 128)), mode="symmetric")
    batch = [w for b in plan_batches(200, 330, 64, block=4096) for w in b if w.row == 192]
    x, valid, dates = reader.read(batch)
    assert x.shape == (6, 10, 128, 128) and valid.shape == (6, 64, 64)
    for w, xi, vi in zip(batch, x, valid, strict=True):
        # input = the scene mirrored at its border, from (row - 32, col - 32), at least
        # within the context (32 px) around the core
        h, wd = 64 + w.height, 64 + w.width
        np.testing.assert_array_equal(
            xi[:, :h, :wd], mirrored[:, w.row : w.row + h, w.col : w.col + wd]
        )
        assert vi[: w.height, : w.width].all() and not vi[w.height :].any()
    assert w.height == 8 and w.width == 330 - 320 and not valid[-1][:, 10:].any()
    assert dates.all()


@pytest.mark.parametrize("blend", ["hann", "crop"])
def test_no_seams_at_tile_borders_on_a_constant_image(data, tmp_path, blend):
    # Every model input of a constant image is the same, so a core border is where the
    # right edge of one core's prediction meets the left edge of the same prediction: a
    # jump there is the tile's edge effect. With context it is gone. (hann: the blend of
    # predictions made at different places in the inputs varies smoothly, by <= 3/254 from
    # one column to the next, with no step at the tile borders.)
    cube = make_cube(tmp_path / "flat.zarr", 128, 256, holes=False)
    z = __import__("zarr").open_group(str(cube), mode="r+")
    z["reflectance"][:] = np.array([1500, 1700, 1800, 2100, 2500, 2700, 2900, 3000, 2600, 2000],
                                   np.uint16)[None, :, None, None]  # fmt: skip
    jumps = {}
    for overlap in (0, 192):
        prob = tmp_path / f"p{overlap}.tif"
        predict_cube(cube, data["ckpt"], tmp_path / f"m{overlap}.tif", tile=64, overlap=overlap,
                     progress=False, probabilities=prob, blend=blend)  # fmt: skip
        with rasterio.open(prob) as ds:
            p = ds.read().astype(int)
        step = np.abs(np.diff(p, axis=2)).max(axis=(0, 1))  # (width - 1,) column to column
        jumps[overlap] = (step[[63, 127, 191]].max(), np.delete(step, [63, 127, 191]).max())
    assert jumps[0][0] >= 10, jumps  # without context: the tile edges show
    smooth = 1 if blend == "crop" else 3
    assert jumps[192][0] <= 1 and jumps[192][1] <= smooth, jumps  # with context: no seam


def test_map_is_complete_with_nodata_only_where_no_input(data, tmp_path):
    out, prob, png = tmp_path / "map.tif", tmp_path / "p.tif", tmp_path / "q.png"
    stats = {}
    predict_cube(
        data["cube"], data["ckpt"], out, tile=128, overlap=64, block=128, batch_size=4,
        progress=False,
        probabilities=prob, quicklook=png, provenance={"region": "synthetic"}, stats=stats,
    )  # fmt: skip
    with rasterio.open(out) as ds:
        codes = ds.read(1)
        assert ds.shape == (200, 330) and ds.crs.to_epsg() == 32628 and ds.nodata == 0
        assert ds.overviews(1) == [2] and ds.profile["tiled"] and ds.profile["blockxsize"] == 256
        assert ds.colormap(1)[80][:3] == (0, 100, 200)
        tags = ds.tags()
        assert tags["region"] == "synthetic" and tags["model"] == "unet-resnet34-slim"
        assert json.loads(tags["items"]) == ["S2A_FAKE_1", "S2B_FAKE_2"]
        assert "10=Tree cover" in tags["class_names"] and len(tags["checkpoint_sha256"]) == 64
        assert tags["software"].startswith("senland-geo ") and tags["hardware"].startswith("CPU")
        assert ds.profile.get("compress", "").lower() == "deflate"
    hole = np.zeros((200, 330), bool)
    hole[:40, :82] = True
    assert (codes[hole] == 0).all()  # no valid input: nodata, never a guessed class
    assert (codes[~hole] > 0).all()  # every other pixel, edges included, has a class
    assert set(np.unique(codes[~hole])) <= set(WORLDCOVER.codes)
    with rasterio.open(prob) as ds:
        p = ds.read()
        assert p.shape == (11, 200, 330) and ds.nodata == PROB_NODATA
        assert ds.scales[0] == pytest.approx(1 / PROB_SCALE)
    assert (p[:, hole] == PROB_NODATA).all()
    sums = p[:, ~hole].astype(int).sum(0)
    assert abs(sums - PROB_SCALE).max() <= 6  # rounded probabilities still sum to ~1
    # The class map is the arg-max of the probabilities.
    lut = np.array(WORLDCOVER.codes)
    agree = (lut[p.argmax(0)] == codes)[~hole].mean()
    assert agree > 0.99  # uint8 rounding only flips near-ties
    with rasterio.open(png) as ds:
        assert ds.count == 4 and ds.shape == (200, 330)
    assert stats["tiles"] == 2 * 3 and stats["model_seconds"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "p.tif", "q.png"]


def test_same_map_whatever_the_block_size(data, tmp_path):
    # The block cuts the work (reads, tasks); the model tiles stay on one grid of the scene.
    cube = make_cube(tmp_path / "big.zarr", 384, 448, holes=False, seed=3)
    maps, counts = {}, {}
    for block in (1, 128, 300, 4096):
        stats = {}
        out = predict_cube(cube, data["ckpt"], tmp_path / f"m{block}.tif", tile=128, overlap=64,
                           block=block, batch_size=3, progress=False, stats=stats)  # fmt: skip
        with rasterio.open(out) as ds:
            maps[block] = ds.read(1)
        counts[block] = (stats["tiles"], stats["batches"])
    assert counts == {1: (12, 12), 128: (12, 12), 300: (12, 6), 4096: (12, 3)}
    assert len(np.unique(maps[128])) >= 2  # a real map, not one constant class
    for block in (1, 300, 4096):
        np.testing.assert_array_equal(maps[block], maps[128])  # bit-identical


def test_time_series_model_gets_series(tmp_path):
    cube = make_cube(tmp_path / "ts.zarr", 96, 160, times=3, holes=False)
    opts = {"filters": [8, 16], "hidden": 8}
    ckpt = make_checkpoint(tmp_path / "ts.pt", model="agrunet", options=opts, temporal=True)
    out = predict_cube(cube, ckpt, tmp_path / "ts.tif", tile=64, overlap=64, progress=False)
    with rasterio.open(out) as ds:
        assert ds.tags()["temporal"] == "true" and ds.tags()["model"] == "agrunet"
        codes = ds.read(1)
    assert codes.shape == (96, 160) and (codes > 0).all()


def test_bad_input_leaves_no_file(data, tmp_path):
    empty = make_cube(tmp_path / "empty.zarr", 64, 64)
    z = __import__("zarr").open_group(str(empty), mode="r+")
    z["reflectance"][:] = 0
    with pytest.raises(UserError, match="no valid pixel"):
        predict_cube(empty, data["ckpt"], tmp_path / "e.tif", tile=64, overlap=64, progress=False,
                     probabilities=tmp_path / "ep.tif")  # fmt: skip
    with pytest.raises(UserError, match="not writable"):
        predict_cube(data["cube"], data["ckpt"], "/sys/senland-map.tif", progress=False)
    with pytest.raises(UserError, match="overlap 32 must be a non-negative multiple of 64"):
        predict_cube(data["cube"], data["ckpt"], tmp_path / "o.tif", tile=64, overlap=32)
    with pytest.raises(UserError, match="tile 100 must be a positive multiple of 32"):
        predict_cube(data["cube"], data["ckpt"], tmp_path / "o.tif", tile=100)
    with pytest.raises(UserError, match="block 0 must be"):
        predict_cube(data["cube"], data["ckpt"], tmp_path / "o.tif", block=0)
    with pytest.raises(UserError, match="blend 'soft' is not one of hann, crop; try --blend hann"):
        predict_cube(data["cube"], data["ckpt"], tmp_path / "o.tif", blend="soft")
    with pytest.raises(UserError, match=r"\.png"):
        predict_cube(data["cube"], data["ckpt"], tmp_path / "o.tif", quicklook=tmp_path / "q.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.zarr"]


RSS_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(2)
    from senland_geo.predict import predict_cube
    predict_cube(sys.argv[1], sys.argv[2], sys.argv[3], tile=128, overlap=64, batch_size=4,
                 progress=False)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so it would report
    # the (bigger) pytest parent's peak for both runs.
    print(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
    """
)


def test_peak_memory_does_not_grow_with_the_area(data, tmp_path):
    # 1x already fills whole forward passes (9 tiles, batch 4), so the model's share of the
    # peak is the same; 16x has 121 tiles and a 4x wider strip.
    small = make_cube(tmp_path / "s.zarr", 256, 256, holes=False)
    large = make_cube(tmp_path / "l.zarr", 1024, 1024, holes=False)  # 16x the area
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # as `senland-geo predict` runs
    rss = {}
    for name, cube in (("1x", small), ("16x", large)):
        run = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(cube), str(data["ckpt"]),
             str(tmp_path / f"{name}.tif")],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        rss[name] = int(run.stdout.split()[-1])
    with rasterio.open(tmp_path / "16x.tif") as ds:
        assert ds.shape == (1024, 1024) and (ds.read(1) > 0).all()
    growth = rss["16x"] / rss["1x"] - 1
    assert growth < 0.15, rss
