import json

import numpy as np
import pytest
import torch
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from senland_geo.checkpoint import load_checkpoint
from senland_geo.classes import IGNORE_INDEX, WORLDCOVER
from senland_geo.datasets import CubeDataset, CubeLabelDataset, collate_patches
from senland_geo.splits import Split, holdout_split
from senland_geo.train import TrainConfig, train


def test_geodataset_intersection_and_samplers(brandenburg_cube):
    images = CubeDataset(brandenburg_cube)
    ds = images & CubeLabelDataset(brandenburg_cube, WORLDCOVER)
    sampler = RandomGeoSampler(ds, size=64, length=8, generator=torch.Generator().manual_seed(1))
    samples = [ds[q] for q in sampler]
    batch = collate_patches(samples)
    assert batch["image"].shape == (8, 10, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (8, 64, 64) and batch["mask"].dtype == torch.int64
    allowed = {IGNORE_INDEX, *range(len(WORLDCOVER))}
    assert set(batch["mask"].unique().tolist()) <= allowed
    grid = GridGeoSampler(ds, size=256, stride=256)
    assert len(grid) == (768 // 256) * (1536 // 256)
    # A grid patch reads exactly the stored pixels of its window.
    query = next(iter(grid))
    first = ds[query]
    import xarray as xr

    x, y = query[0], query[1]
    row0, col0 = round((5822040 - y.stop) / 10), round((x.start - 330000) / 10)
    raw = xr.open_zarr(brandenburg_cube, consolidated=False)["reflectance"]
    raw = raw[0, :, row0 : row0 + 256, col0 : col0 + 256].values.astype(np.float32)
    np.testing.assert_array_equal(first["image"].numpy(), raw)


def test_holdout_split_has_no_leakage(tmp_path):
    split = holdout_split((0, 0, 15360, 7680), 10, side="east", buffer_px=16)
    (train_box,), (test_box,) = split.train, split.test
    assert test_box[0] - train_box[2] == 160  # 16 px buffer
    assert test_box[2] == 15360 and abs((test_box[2] - test_box[0]) - 5120) <= 10
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
    leaky = Split(((0, 0, 10, 10),), ((5, 0, 20, 10),))
    with pytest.raises(RuntimeError, match="leaks"):
        leaky.check_no_leakage()


def test_short_training_lowers_loss_and_writes_checkpoint(brandenburg_cube, tmp_path):
    config = TrainConfig(
        model="unet-resnet34-slim", epochs=4, patches_per_epoch=64, batch_size=16, lr=3e-3
    )
    metrics = train(brandenburg_cube, tmp_path, config, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert 0 <= metrics["miou"] <= 1 and metrics["pixels"] > 100_000
    model, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert meta["bands"] == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert meta["classes"]["name"] == "esa-worldcover"
    assert len(meta["normalization"]["mean"]) == 10
    assert meta["hardware"]["device"] == "cpu" and "CPU" in meta["hardware"]["engine"]
    assert json.loads((tmp_path / "split.json").read_text())["description"].startswith("east")
    # Holdout evaluation never saw training pixels: test box east of the train box.
    split = Split.load(tmp_path / "split.json")
    assert split.test[0][0] > split.train[0][2]
    with torch.no_grad():
        out = model(torch.zeros(1, 10, 64, 64))
    assert out.shape == (1, 11, 64, 64)
