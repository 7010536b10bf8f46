import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from senland_geo.checkpoint import load_checkpoint, save_checkpoint
from senland_geo.classes import WORLDCOVER
from senland_geo.cli import cli
from senland_geo.errors import UserError
from senland_geo.pipeline import default_checkpoint
from senland_geo.predict import DEFAULT_OVERLAP, plan_batches, predict_cube, tile_origins


def test_tiles_cover_every_pixel_once():
    assert tile_origins(768, 256) == [0, 256, 512]
    assert tile_origins(100, 256) == [0]
    cover = np.zeros((300, 500), int)
    for batch in plan_batches(300, 500, 128, block=200):
        for w in batch:
            assert w.row % 128 == 0 and w.col % 128 == 0  # on the network's 32-px grid
            cover[w.row : w.row + w.height, w.col : w.col + w.width] += 1
    assert (cover == 1).all()  # cores tile the scene: nothing blended, nothing lost


def test_predict_writes_a_georeferenced_cog(brandenburg_cube, tiny_checkpoint, tmp_path):
    out = predict_cube(brandenburg_cube, tiny_checkpoint, tmp_path / "map.tif", progress=False)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32633
        assert tuple(ds.transform)[:6] == (10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0)
        assert ds.shape == (768, 1536) and ds.dtypes == ("uint8",) and ds.nodata == 0
        assert ds.overviews(1) and ds.profile["tiled"]
        cmap = ds.colormap(1)
        assert cmap[10][:3] == (0, 100, 0) and cmap[80][:3] == (0, 100, 200)
        tags = ds.tags()
        names = [c["name"] for c in json.loads(tags["classes"])]
        assert names == WORLDCOVER.names
        assert len(tags["checkpoint_sha256"]) == 64
        codes = ds.read(1)
    assert set(np.unique(codes)) <= {0, *WORLDCOVER.codes}
    assert (codes > 0).mean() > 0.99
    assert not list(tmp_path.glob(".*partial*"))


def test_map_is_the_same_for_every_tile_size(brandenburg_cube, tmp_path):
    # The check: tiles 128/256/512 with the same (default) overlap, on a real scene
    # with the shipped (trained) model: >= 99.9% of the pixels agree. Each pixel is
    # predicted with >= overlap/2 = 96 px of context, beyond which this U-Net's output
    # barely depends on what it sees (docs/performance.md). The block size (unit of work)
    # never changes the map at all (test_predict_streaming.py).
    from senland_geo.regions import get_region

    ckpt = default_checkpoint(get_region("brandenburg"))
    maps = {}
    for tile in (128, 256, 512):
        out = predict_cube(brandenburg_cube, ckpt, tmp_path / f"m{tile}.tif", tile=tile,
                           progress=False)  # fmt: skip
        with rasterio.open(out) as ds:
            maps[tile] = ds.read(1)
            tags = ds.tags()
            assert tags["tile"] == str(tile) and tags["overlap"] == str(DEFAULT_OVERLAP)
    shares = {t: np.bincount(m.ravel(), minlength=256) / m.size for t, m in maps.items()}
    assert (shares[256][[10, 30, 40, 80]] > 0.03).all()  # a varied map, not one class
    agreement = {
        (a, b): float((maps[a] == maps[b]).mean()) for a, b in ((128, 256), (128, 512), (256, 512))
    }
    print("agreement", agreement)
    assert min(agreement.values()) >= 0.999, agreement
    for a, b in agreement:  # the class shares move by at most 0.1 point
        assert np.abs(shares[a] - shares[b]).max() <= 0.001, (a, b)


def test_mismatched_checkpoint_is_refused(brandenburg_cube, tiny_checkpoint, tmp_path):
    model, meta = load_checkpoint(tiny_checkpoint)
    bad = dict(meta, bands=["B02", "B03", "B01"])
    save_checkpoint(tmp_path / "bad.pt", model, bad)
    with pytest.raises(UserError, match=r"lacks.*B01|B01.*lacks"):
        predict_cube(brandenburg_cube, tmp_path / "bad.pt", tmp_path / "m.tif", progress=False)
    other = dict(meta, classes={"name": "pastis", "classes": meta["classes"]["classes"]})
    save_checkpoint(tmp_path / "other.pt", model, other)
    with pytest.raises(UserError, match="class table"):
        predict_cube(brandenburg_cube, tmp_path / "other.pt", tmp_path / "m.tif", progress=False)
    assert not (tmp_path / "m.tif").exists()


def test_checkpoint_loads_with_weights_only(tiny_checkpoint):
    data = torch.load(tiny_checkpoint, weights_only=True)
    assert data["format"].startswith("senland-geo-checkpoint")


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "senland_geo", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predict", "--region", "atlantis", "--out", "{tmp}/m.tif"], "unknown region 'atlantis'"),
        (
            ["predict", "--region", "brandenburg", "--out", "{tmp}/missing/m.tif"],
            "does not exist",
        ),
        (
            ["predict", "--region", "dakar", "--bbox", "10", "0", "5", "1", "--out", "{tmp}/m.tif"],
            "west < east",
        ),
        (
            ["cube", "--region", "dakar", "--start", "2021-06-01", "--end", "2021-01-01",
             "--out", "{tmp}/c.zarr"],
            "reversed",
        ),
        (
            ["train", "--cube", "{cube}", "--model", "no-such-net", "--out", "{tmp}/run"],
            "unknown model 'no-such-net'",
        ),
        (
            ["predict", "--region", "brandenburg", "--checkpoint", "{bad}", "--out", "{tmp}/m.tif"],
            "lacks",
        ),
    ],
)  # fmt: skip
def test_bad_input_one_line_exit_2(args, needle, tmp_path, brandenburg_cube, tiny_checkpoint):
    model, meta = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "bad.pt", model, dict(meta, bands=[*meta["bands"][:9], "B01"]))
    fill = {"tmp": str(tmp_path), "cube": str(brandenburg_cube), "bad": str(tmp_path / "bad.pt")}
    result = _run(*[a.format(**fill) for a in args])
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.tif").exists()


def test_cli_lists_plugins_and_regions():
    runner = CliRunner()
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "unet-resnet34 " in result.output and "[ok]" in result.output
    result = runner.invoke(cli, ["regions"])
    assert "casamance" in result.output and "EPSG:32628" in result.output
    result = runner.invoke(cli, ["regions", "show", "sine-saloum"])
    data = json.loads(result.output)
    assert data["epsg"] == 32628 and data["classes"][-2] == "Mangroves"


def test_shipped_checkpoint_predicts_the_sample(tmp_path, monkeypatch):
    from senland_geo.regions import get_region

    path = default_checkpoint(get_region("brandenburg"))
    assert path.is_file() and path.stat().st_size <= 10 * 1024 * 1024
    monkeypatch.setenv("SENLAND_GEO_CACHE", str(tmp_path / "cache"))
    result = _run("predict", "--region", "brandenburg", "--out", str(tmp_path / "map.tif"))
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "map.tif") as ds:
        codes = ds.read(1)
        assert ds.crs.to_epsg() == 32633
    _, meta = load_checkpoint(path)
    assert meta["model"] == "unet-resnet34-slim"
    assert meta["holdout_metrics"]["miou"] > 0.3
    # The shipped model finds the big classes of the scene.
    assert {10, 30, 40, 80} <= set(np.unique(codes))
