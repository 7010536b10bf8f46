"""The online path end to end: `predict --region casamance` against the loopback STAC API and
range server (synthetic Senegal L2A fixtures), the offline message, and bad region input."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from senland_geo.checkpoint import load_checkpoint, save_checkpoint
from senland_geo.classes import PASTIS
from senland_geo.cli import cli
from senland_geo.errors import UserError
from senland_geo.pipeline import predict_region

_spec = importlib.util.spec_from_file_location(
    "predict_streaming_helpers_online", Path(__file__).with_name("test_predict_streaming.py")
)
helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = helpers
_spec.loader.exec_module(helpers)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return helpers.make_checkpoint(tmp_path_factory.mktemp("online") / "casamance.pt")


def test_casamance_end_to_end(stac_api, senegal_data, ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("SENLAND_GEO_CACHE", str(tmp_path / "cache"))
    info = senegal_data.set_info("casamance")
    west, south, east, north = info["bbox"]
    out, png = tmp_path / "map.tif", tmp_path / "map.png"
    args = ["predict", "--region", "casamance", "--catalog", stac_api.url,
            "--bbox", str(west), str(south), str(east), str(north), "--checkpoint", str(ckpt),
            "--out", str(out), "--quicklook", str(png), "--scheduler", "none",
            "--tile", "128", "--overlap", "64"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    with rasterio.open(out) as ds:
        codes = ds.read(1)
        tags = ds.tags()
        assert ds.crs.to_epsg() == 32628 and ds.res == (10.0, 10.0)
        assert ds.overviews(1) and ds.colormap(1)[95][:3] == (0, 207, 117)  # mangroves
        bounds = ds.bounds
    fixture = info["bounds_utm"]  # the imagery covers exactly this 2.56 km square
    assert bounds.left <= fixture[0] + 10 and bounds.right >= fixture[2] - 10
    assert tags["region"] == "casamance" and tags["catalog"] == stac_api.url
    assert sorted(json.loads(tags["items"])) == sorted(i["id"] for i in info["items"])
    assert len(tags["checkpoint_sha256"]) == 64 and tags["model"] == "unet-resnet34-slim"
    assert (codes > 0).mean() > 0.9  # the fixture square is mapped
    assert png.is_file()
    cached = list((tmp_path / "cache" / "cubes").glob("casamance-median-*.zarr"))
    assert len(cached) == 1  # the cube is cached for the next run


def test_offline_says_so_in_one_line(down_url, ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("SENLAND_GEO_CACHE", str(tmp_path / "cache"))
    run = subprocess.run(
        [sys.executable, "-m", "senland_geo", "predict", "--region", "casamance", "--catalog",
         down_url, "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.tif")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"Error: cannot reach catalog {down_url}")
    assert "offline options: --catalog PATH" in lines[0] and "--cube PATH" in lines[0]
    assert not list(tmp_path.glob("*.tif"))


def test_bbox_outside_the_catalog_coverage(stac_api, ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("SENLAND_GEO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="no scenes in catalog"):
        predict_region("casamance", tmp_path / "m.tif", checkpoint=ckpt, catalog=stac_api.url,
                       bbox=(-12.5, 13.0, -12.4, 13.1), scheduler=None, progress=False)  # fmt: skip
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*"))


def test_region_and_checkpoint_mismatch_fail_before_any_download(down_url, ckpt, tmp_path):
    model, meta = load_checkpoint(ckpt)
    bands = save_checkpoint(tmp_path / "b.pt", model, dict(meta, bands=[*meta["bands"][:9], "B01"]))
    classes = save_checkpoint(tmp_path / "c.pt", model, dict(meta, classes=PASTIS.to_dict()))
    for bad, needle in ((bands, r"needs bands \['B01'\]"), (classes, "class table 'pastis'")):
        with pytest.raises(UserError, match=needle):
            predict_region("casamance", tmp_path / "m.tif", checkpoint=bad, catalog=down_url,
                           scheduler=None)  # fmt: skip
    assert not list(tmp_path.glob("*.tif"))


def test_predict_cli_on_a_cube_offline(ckpt, tmp_path):
    cube = helpers.make_cube(tmp_path / "c.zarr", 96, 128)
    result = CliRunner().invoke(
        cli,
        ["predict", "--cube", str(cube), "--checkpoint", str(ckpt), "--out",
         str(tmp_path / "m.tif"), "--scheduler", "none",
         "--probabilities", str(tmp_path / "p.tif")],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "m.tif") as ds, rasterio.open(tmp_path / "p.tif") as pr:
        assert ds.shape == (96, 128) and pr.count == 11
        assert np.count_nonzero(ds.read(1)) == 96 * 128 - 19 * 32  # the no-data corner only
