"""Cube building on dask.distributed: a 2-worker LocalCluster equals single-process, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from senland_geo.build import build_region_cube
from senland_geo.distributed import dask_scheduler
from senland_geo.errors import UserError
from senland_geo.regions import CASAMANCE


def _files(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "/c/" in str(p.relative_to(store)).replace("\\", "/") + "/"
    }


def test_local_cluster_matches_single_process(senegal_data, range_server, tmp_path):
    items = tmp_path / "items.json"
    feats = senegal_data.items(range_server.url_for("senegal"), sets=["casamance"])
    items.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    kwargs = dict(
        catalog=str(items), bbox=tuple(senegal_data.set_info("casamance")["bbox"]),
        label_tile_root=range_server.url_for("senegal", "worldcover/casamance"), chunksize=128,
        composite="median",
    )  # fmt: skip
    single = build_region_cube(CASAMANCE, tmp_path / "single.zarr", scheduler="sync", **kwargs)
    from distributed import get_task_stream

    with dask_scheduler("local", n_workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        address = client.scheduler.address
        # --scheduler ADDRESS: connect to the running cluster.
        with get_task_stream(client) as stream:
            dist = build_region_cube(CASAMANCE, tmp_path / "dist.zarr", scheduler=address, **kwargs)
    assert len(stream.data) > 0  # the cluster did the work
    a = xr.open_zarr(single, consolidated=False)
    b = xr.open_zarr(dist, consolidated=False)
    assert a.attrs == b.attrs
    for name in ("reflectance", "labels"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    fa, fb = _files(single), _files(dist)
    assert fa and fa.keys() == fb.keys()
    assert all(fa[k] == fb[k] for k in fa)  # the chunk files themselves are identical
    assert (a["reflectance"].values > 0).mean() > 0.05


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(UserError, match="cannot connect to the dask scheduler"):
        with dask_scheduler("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass
    with pytest.raises(UserError, match="--scheduler"):
        with dask_scheduler("bogus"):
            pass
