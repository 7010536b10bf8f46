"""Faults, each with a tested outcome and a clear message."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from senland_geo import store
from senland_geo.build import build_region_cube
from senland_geo.errors import UserError
from senland_geo.regions import CASAMANCE, SINE_SALOUM

WRITER = r"""
import json, sys, time
import dask
from senland_geo import cube, stac, store
from senland_geo.regions import CASAMANCE


def write(items_file, out, delay, bbox):
    region = CASAMANCE.replace(bbox=tuple(bbox))
    items = stac.search(region, items_file)
    bands = list(region.bands) + ["SCL"]
    c = cube.composite_median(cube.stack(items, region, bands, chunksize=64))
    if delay:
        def slow(block):
            time.sleep(delay)
            return block
        c = c.map_blocks(slow, template=c)
    ds = store.cube_to_dataset(c, attrs={"items": [i.id for i in items]})
    report = []
    with dask.config.set(scheduler="sync"):
        store.write_cube(ds, out, chunks=(64, 64), batch_size=1, report=report, overwrite=True)
    r = report[0]
    return {"blocks": r.blocks, "written": r.written, "resumed": r.resumed}


if __name__ == "__main__":
    print(json.dumps(write(sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4]))))
"""


def _items_file(tmp_path: Path, feats: list[dict]) -> str:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return str(path)


def _bbox(senegal_data, name):
    return tuple(senegal_data.set_info(name)["bbox"])


def test_killed_write_resumes_to_an_identical_store(senegal_data, tmp_path):
    items = _items_file(tmp_path, senegal_data.items(sets=["casamance"]))
    bbox = json.dumps(_bbox(senegal_data, "casamance"))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    out = tmp_path / "cube.zarr"
    sidecar = out.with_name("cube.zarr.partial") / store.PROGRESS_FILE
    proc = subprocess.Popen([sys.executable, str(script), items, str(out), "0.4", bbox],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sidecar.exists() and len(sidecar.read_text().splitlines()) >= 4:  # header + 3
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing committed
    with pytest.raises(UserError, match="does not exist"):
        store.open_cube(out)
    done_before = len(sidecar.read_text().splitlines()) - 1
    assert done_before >= 3
    # Rerun (the same code, here in-process): only the missing blocks are computed.
    namespace: dict = {"__name__": "senland_writer"}
    exec(compile(WRITER, str(script), "exec"), namespace)
    info = namespace["write"](items, str(out), 0.0, json.loads(bbox))
    assert info["resumed"] >= done_before and info["written"] == info["blocks"] - info["resumed"]
    assert info["written"] > 0
    # Identical to a store written in one go.
    fresh = tmp_path / "fresh.zarr"
    assert namespace["write"](items, str(fresh), 0.0, json.loads(bbox))["resumed"] == 0
    a, b = store.open_cube(out), store.open_cube(fresh)
    assert a.attrs == b.attrs
    np.testing.assert_array_equal(a["reflectance"].values, b["reflectance"].values)
    assert (a["reflectance"].values > 0).mean() > 0.05
    assert not (out / store.PROGRESS_FILE).exists()


def test_every_scene_cloudy(senegal_data, tmp_path):
    items = _items_file(tmp_path, senegal_data.items(sets=["sine-saloum"]))
    with pytest.raises(UserError, match="every scene of region 'sine-saloum' is cloud"):
        build_region_cube(
            SINE_SALOUM, tmp_path / "x.zarr", catalog=items, scheduler="sync",
            bbox=_bbox(senegal_data, "sine-saloum"),
        )  # fmt: skip
    assert not (tmp_path / "x.zarr").exists()


def test_corrupt_asset(senegal_data, tmp_path):
    feats = senegal_data.items(sets=["casamance"])
    first = feats[0]
    src = Path(first["assets"]["red"]["href"])
    bad = tmp_path / "B04.tif"
    data = bytearray(src.read_bytes())
    data[len(data) // 2 :] = os.urandom(len(data) - len(data) // 2)  # tiles garbled
    bad.write_bytes(bytes(data))
    first["assets"]["red"]["href"] = str(bad)
    items = _items_file(tmp_path, feats)
    with pytest.raises(UserError, match="cannot read an imagery asset") as info:
        build_region_cube(
            CASAMANCE, tmp_path / "x.zarr", catalog=items, scheduler="sync", chunksize=128,
            bbox=_bbox(senegal_data, "casamance"),
            label_tile_root=str(senegal_data.root / "worldcover" / "casamance"),
        )  # fmt: skip
    assert "\n" not in str(info.value) and "rerun" in str(info.value)
    assert not (tmp_path / "x.zarr").exists()


def test_range_read_cut_mid_file(senegal_data, range_server, tmp_path):
    feats = senegal_data.items(range_server.url_for("senegal"), sets=["casamance"])
    items = _items_file(tmp_path, feats)
    kw = dict(
        catalog=items, scheduler="sync", bbox=_bbox(senegal_data, "casamance"), chunksize=128,
        label_tile_root=range_server.url_for("senegal", "worldcover/casamance"),
    )  # fmt: skip
    range_server.faults.truncate_next(1, after_bytes=3000, match="B04.tif")
    out = tmp_path / "cut.zarr"
    try:
        build_region_cube(CASAMANCE, out, **kw)
        outcome = "recovered"
    except UserError as exc:  # GDAL gave up: clear message, rerun resumes
        assert "cannot read an imagery asset" in str(exc) and "rerun" in str(exc)
        build_region_cube(CASAMANCE, out, **kw)
        outcome = "resumed"
    assert any(r.fault == "truncate" for r in range_server.requests)
    ref = tmp_path / "ref.zarr"
    build_region_cube(CASAMANCE, ref, **kw)
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(ref, consolidated=False)
    np.testing.assert_array_equal(a["reflectance"].values, b["reflectance"].values)
    assert outcome in ("recovered", "resumed")


def test_cli_api_down_is_one_line(down_url, tmp_path):
    exe = shutil.which("senland-geo") or "senland-geo"
    env = {**os.environ, "SENLAND_STAC_BACKOFF": "0.05"}
    proc = subprocess.run([exe, "cube", "--region", "dakar", "--catalog", down_url,
                           "--out", str(tmp_path / "x.zarr"), "--scheduler", "threads"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"Error: cannot reach the STAC API {down_url}")
    assert "--catalog" in lines[-1]
