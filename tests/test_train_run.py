"""Training on a cube: statistics from the training boxes only, batch augmentation on device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from senland_geo.checkpoint import load_checkpoint
from senland_geo.classes import IGNORE_INDEX
from senland_geo.normalization import Normalize, channel_stats
from senland_geo.train import FlipRotate, TrainConfig, device_batch, flip_rotate, train_on_split

X0, Y0, Y1 = 330000.0, 5814360.0, 5822040.0  # the sample: 1536 x 768 px of 10 m


def _cols(c0: int, c1: int) -> tuple[float, float, float, float]:
    return (X0 + 10 * c0, Y0, X0 + 10 * c1, Y1)


def test_checkpoint_statistics_cover_the_training_boxes_only(brandenburg_cube, tmp_path):
    train_boxes = [_cols(0, 400), _cols(700, 1000)]  # k-fold style: validation in between
    config = TrainConfig(
        model="unet-resnet34-slim",
        epochs=1,
        patches_per_epoch=4,
        batch_size=4,
        patch_size=32,
        eval_tile=256,
        threads=1,
        plots=False,
    )
    train_on_split(
        brandenburg_cube,
        tmp_path,
        config,
        train_boxes=train_boxes,
        val_boxes=[_cols(416, 684)],
        test_boxes=[_cols(1016, 1536)],
        progress=False,
    )
    _, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    norm = meta["normalization"]
    expected = channel_stats(brandenburg_cube, train_boxes)
    assert norm["count"] == [768 * 700] * 10  # both boxes, not the gap between them
    np.testing.assert_allclose(norm["mean"], expected.mean, rtol=1e-12)
    np.testing.assert_allclose(norm["std"], expected.std, rtol=1e-12)
    union = channel_stats(brandenburg_cube, [_cols(0, 1000)])
    assert np.abs(np.array(norm["mean"]) - np.array(union.mean)).max() > 1.0
    assert norm["bands"] == meta["bands"] and len(norm["mean"]) == 10


def test_device_batch_augments_image_mask_and_validity_alike():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(32, 3, 2, 8, 8, generator=gen) * 1000  # (B, T, C, H, W) series
    mask = image[:, 0].argmax(1)  # labels are a function of the pixel values
    valid = image[:, 0, 0] > 300
    batch = {"image": image, "mask": mask, "valid": valid}
    normalize = Normalize([500.0, 400.0], [100.0, 200.0])
    torch.manual_seed(3)
    x, y = device_batch(batch, torch.device("cpu"), normalize, FlipRotate())
    raw = x[:, 0] * torch.tensor([100.0, 200.0]).view(1, 2, 1, 1) + torch.tensor(
        [500.0, 400.0]
    ).view(1, 2, 1, 1)
    expected = torch.where(raw[:, 0] > 300, raw.argmax(1), IGNORE_INDEX)
    assert torch.equal(y, expected)
    assert (y == IGNORE_INDEX).any() and not torch.equal(x, normalize(image))  # really moved
    plain_x, plain_y = device_batch(batch, torch.device("cpu"), normalize)
    assert torch.equal(plain_x, normalize(image))
    assert torch.equal(plain_y, torch.where(valid, mask, IGNORE_INDEX))


def test_flip_rotate_facade_is_an_exact_permutation():
    x = torch.arange(4 * 16.0).view(4, 1, 4, 4)
    torch.manual_seed(1)
    out, labels = flip_rotate(x, x[:, 0].long())
    assert torch.equal(labels, out[:, 0].long())
    for b in range(4):
        assert sorted(out[b].flatten().tolist()) == x[b].flatten().tolist()
    with pytest.raises(ValueError, match="does not match"):
        flip_rotate(x, torch.zeros(3, 4, 4))
