"""Streamed per-channel statistics over the training split only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from senland_geo.errors import UserError
from senland_geo.normalization import ChannelStats, Normalize, channel_stats
from senland_geo.splits import holdout_split

SCENE = (330000.0, 5814360.0, 345360.0, 5822040.0)


def test_stats_cover_the_training_boxes_only(brandenburg_cube, tmp_path):
    split = holdout_split(SCENE, 10, side="east", buffer_px=16)
    stats = channel_stats(brandenburg_cube, split)  # the split's train boxes only
    raw = zarr.open_group(brandenburg_cube, mode="r")["reflectance"][0, :, :, :1008]
    values = raw.reshape(10, -1).astype(np.float64)  # train box = columns 0..1007
    values = values[:, (values != 0).any(axis=0)]
    assert stats.count == (768 * 1008,) * 10
    np.testing.assert_allclose(stats.mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, values.std(axis=1), rtol=1e-10)
    whole = channel_stats(brandenburg_cube)
    assert whole.count == (768 * 1536,) * 10 and whole.mean != stats.mean

    # Overlapping boxes count pixels once; disjoint parts merge to the same numbers.
    left = (330000.0, 5814360.0, 335000.0, 5822040.0)
    right = (335000.0, 5814360.0, 340080.0, 5822040.0)
    overlapping = channel_stats(brandenburg_cube, [left, split.train[0]])
    merged = channel_stats(brandenburg_cube, [left]).merge(channel_stats(brandenburg_cube, [right]))
    assert overlapping.count == stats.count
    np.testing.assert_allclose(overlapping.mean, stats.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, stats.m2, rtol=1e-10)

    stats.save(tmp_path / "stats.json")
    assert ChannelStats.load(tmp_path / "stats.json") == stats
    assert channel_stats(brandenburg_cube, split, bands=["B12", "B02"]).mean == (
        stats.mean[9],
        stats.mean[0],
    )
    with pytest.raises(UserError, match="no observed pixel"):
        channel_stats(brandenburg_cube, [(0.0, 0.0, 10.0, 10.0)])


def test_welford_merge_and_normalize_shapes():
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 2, (3, 1000)), rng.normal(-1, 7, (3, 37))
    merged = ChannelStats.from_values("xyz", a).merge(ChannelStats.from_values("xyz", b))
    exact = ChannelStats.from_values("xyz", np.concatenate([a, b], axis=1))
    np.testing.assert_allclose(merged.mean, exact.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, exact.m2, rtol=1e-12)
    norm = Normalize.from_stats(
        ChannelStats(("a", "b"), (4, 4), (1.0, 10.0), (16.0, 4.0)).to_dict()
    )
    x = torch.tensor([3.0, 11.0]).view(2, 1, 1).expand(2, 2, 2)  # (C,H,W)
    assert norm(x)[:, 0, 0].tolist() == [1.0, 1.0]  # std = sqrt(m2 / count) = 2, 1
    assert torch.equal(norm(x.expand(5, 3, 2, 2, 2))[4, 2], norm(x))  # (B,T,C,H,W)
    with pytest.raises(ValueError, match="3 channels"):
        norm(torch.zeros(3, 2, 2))
