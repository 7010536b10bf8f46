"""Prediction on dask.distributed: same map for 1 and 2 workers, one model load per worker,
and a complete map when a worker is killed mid-run."""

import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from senland_geo import predict
from senland_geo.predict import predict_cube

distributed = pytest.importorskip("distributed")

_spec = importlib.util.spec_from_file_location(
    "predict_streaming_helpers", Path(__file__).with_name("test_predict_streaming.py")
)
helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = helpers
_spec.loader.exec_module(helpers)

KW = {"tile": 128, "overlap": 64, "block": 128, "batch_size": 2, "progress": False}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    cube = helpers.make_cube(root / "c.zarr", 224, 416, seed=5)
    ckpt = helpers.make_checkpoint(root / "m.pt")
    return cube, ckpt, root


def _cluster(n):
    return distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
        memory_limit=0, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.tags()


@pytest.fixture(scope="module")
def two_workers():
    with _cluster(2) as cluster, distributed.Client(cluster) as client:
        client.senland_threads = 1
        yield client


def test_same_map_on_one_and_two_workers_model_loaded_once(job, two_workers, tmp_path):
    cube, ckpt, _ = job
    with _cluster(1) as cluster:  # an existing cluster, reached by its address
        predict_cube(cube, ckpt, tmp_path / "one.tif", scheduler=cluster.scheduler_address, **KW)
        with distributed.Client(cluster) as client:
            assert list(client.run(predict.loaded_model_count).values()) == [1]
    predict_cube(cube, ckpt, tmp_path / "two.tif", client=two_workers, **KW)
    loads = two_workers.run(predict.loaded_model_count)
    assert len(loads) == 2 and set(loads.values()) == {1}  # once per worker, not per task
    one, tags1 = _read(tmp_path / "one.tif")
    two, tags2 = _read(tmp_path / "two.tif")
    assert np.array_equal(one, two)
    assert (one > 0).mean() > 0.9 and len(np.unique(one)) >= 2
    assert "1 workers" in tags1["hardware"] and "2 workers" in tags2["hardware"]
    # In-process (float32, no transfer) gives the same map but for float16 near-ties.
    local = predict_cube(cube, ckpt, tmp_path / "local.tif", **KW)
    assert (_read(local)[0] == two).mean() >= 0.999


def test_killed_worker_tiles_are_recomputed(job, two_workers, tmp_path):
    cube, ckpt, root = job
    reference = tmp_path / "ref.tif"
    predict_cube(cube, ckpt, reference, client=two_workers, **KW)
    pids = two_workers.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = threading.Event()

    def kill_once(batch_index):
        if batch_index == 2 and not killed.is_set():
            os.kill(victim, signal.SIGKILL)
            killed.set()

    out = predict_cube(cube, ckpt, tmp_path / "map.tif", client=two_workers,
                       on_result=kill_once, **KW)  # fmt: skip
    assert killed.is_set()
    two_workers.wait_for_workers(2, timeout=120)
    assert victim not in two_workers.run(os.getpid).values()  # the nanny restarted it
    assert np.array_equal(_read(out)[0], _read(reference)[0])  # complete, same map
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
