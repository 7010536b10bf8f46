"""Spatial splits: holdout, blocked k-fold with buffer, leakage checks, save/load."""

from __future__ import annotations

import pytest
import shapely
import torch
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from senland_geo.classes import WORLDCOVER
from senland_geo.datasets import LabeledCubeDataset
from senland_geo.errors import UserError
from senland_geo.splits import (
    EmptySplitError,
    LeakageError,
    Split,
    holdout_split,
    kfold_splits,
    subset,
)

SCENE = (330000.0, 5814360.0, 345360.0, 5822040.0)  # the Brandenburg sample, 1536 x 768 px


def test_holdout_boxes_and_exact_reload(tmp_path):
    split = holdout_split(SCENE, 10, side="east", buffer_px=16, crs="EPSG:32633")
    assert split.train == ((330000.0, 5814360.0, 340080.0, 5822040.0),)
    assert split.test == ((340240.0, 5814360.0, 345360.0, 5822040.0),)
    assert split.buffer == 160 and split.crs == "EPSG:32633"
    south = holdout_split(SCENE, 10, side="south", fraction=0.25, buffer_px=8)
    assert south.test == ((330000.0, 5814360.0, 345360.0, 5816280.0),)
    assert south.train == ((330000.0, 5816360.0, 345360.0, 5822040.0),)
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_kfold_blocks_buffers_and_partition(tmp_path):
    # 40 x 40 px scene, four 20 px blocks, 2 folds, 2 px buffer.
    f0, f1 = kfold_splits((0, 0, 400, 400), 10, k=2, block_px=20, buffer_px=2, seed=0)
    assert f0.test == ((200, 200, 400, 400), (0, 0, 200, 200))
    assert f0.train == ((0, 220, 180, 400), (220, 0, 400, 180))  # shrunk towards test blocks
    assert f1.test == ((0, 200, 200, 400), (200, 0, 400, 200))
    assert f1.train == ((220, 220, 400, 400), (0, 0, 180, 180))
    assert (f0.fold, f0.k, f0.buffer) == (0, 2, 20)

    folds = kfold_splits(SCENE, 10, block_px=128, buffer_px=16, seed=7)
    assert len(folds) == 5  # k=5 by default
    tests = [s.test_roi() for s in folds]
    scene = shapely.box(*SCENE)
    assert sum(t.area for t in tests) == scene.area  # every block is tested exactly once
    assert shapely.union_all(tests).equals(scene)
    blocks_per_fold = [round(t.area / (1280 * 1280)) for t in tests]
    assert max(blocks_per_fold) - min(blocks_per_fold) <= 1  # 72 blocks, 14-15 per fold
    for s in folds:
        assert s.train_roi().distance(s.test_roi()) >= 160
        assert s.train_roi().intersection(s.test_roi()).area == 0
        trains = [shapely.box(*b) for b in s.train]
        assert sum(b.area for b in trains) == s.train_roi().area  # disjoint rectangles
    folds[3].save(tmp_path / "fold.json")
    assert Split.load(tmp_path / "fold.json") == folds[3]
    assert kfold_splits(SCENE, 10, block_px=128, seed=7)[3] == folds[3]  # reproducible


def test_sampled_patches_never_touch_the_test_area(brandenburg_cube):
    ds = LabeledCubeDataset(brandenburg_cube, WORLDCOVER)
    split = kfold_splits(SCENE, 10, k=5, block_px=256, buffer_px=16, seed=0, crs=ds.crs)[0]
    train = subset(ds, split, "train", patch_size=64)
    assert len(train.index) == len(split.train)
    gen = torch.Generator().manual_seed(0)
    assert split.check_queries(RandomGeoSampler(train, size=64, length=500, generator=gen)) == 500
    test = subset(ds, split, "test")
    grid = GridGeoSampler(test, size=128, stride=128)
    assert split.check_queries(grid, "test") == len(grid) > 0
    # A plain union ROI lets TorchGeo sample the bounding box of each piece: caught loudly.
    naive = RandomGeoSampler(ds, size=64, length=500, roi=split.train_roi(), generator=gen)
    with pytest.raises(LeakageError, match="train patch"):
        split.check_queries(naive)


def test_leakage_and_empty_split_errors():
    with pytest.raises(LeakageError, match="leaks"):
        Split(((0, 0, 10, 10),), ((5, 0, 20, 10),)).check_no_leakage()
    with pytest.raises(LeakageError, match="gap 5 < buffer 10"):
        Split(((0, 0, 10, 10),), ((15, 0, 20, 10),), buffer=10).check_no_leakage()
    with pytest.raises(EmptySplitError, match="has no test area"):
        Split(((0, 0, 10, 10),), ())
    with pytest.raises(EmptySplitError, match="leaves no training or test area"):
        holdout_split((0, 0, 100, 100), 10, fraction=0.5, buffer_px=6)
    with pytest.raises(UserError, match="only 2 blocks of 20 px, fewer than k=5"):
        kfold_splits((0, 0, 400, 200), 10, block_px=20)
    with pytest.raises(UserError, match="holdout side 'up' unknown"):
        holdout_split(SCENE, 10, side="up")
