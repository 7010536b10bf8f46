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


def test_class_weighted_loss_matches_weighted_cross_entropy():
    from senland_geo.train import SegmentationLoss
    from senland_geo.train_loss import class_weights_from_counts

    w = class_weights_from_counts(np.array([90, 10, 0]), 0.5)
    assert w[1] / w[0] == pytest.approx(3.0) and float(w[:2].mean()) == pytest.approx(1.0)
    assert w[2] == 1.0
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 2, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    weighted = SegmentationLoss(dice_weight=0, class_weights=w)(logits, target)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=w)
    assert float(weighted) == pytest.approx(float(expected), rel=1e-6)
    plain = SegmentationLoss(dice_weight=0)(logits, target)
    assert abs(float(weighted) - float(plain)) > 1e-3
    from senland_geo.errors import UserError

    with pytest.raises(UserError, match="class_weight_power=-1"):
        class_weights_from_counts(np.array([1, 2]), -1)


class _Flat:
    """A one-box labelled 'dataset' for evaluate_boxes."""

    bounds = (0, 1, 0, 1, None)

    def __init__(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        self.sample = {"image": image, "mask": mask, "valid": torch.ones_like(mask, dtype=bool)}

    def __getitem__(self, query):
        return self.sample


def test_evaluate_boxes_with_flips_scores_the_flip_averaged_prediction():
    from senland_geo.train_eval import FlipAverage, evaluate_boxes, label_counts, predict_array

    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 3, 3, padding=1)  # not flip-equivariant
    image = torch.randn(2, 32, 32)
    tta = predict_array(FlipAverage(model), image, tile=32)
    plain = predict_array(model, image, tile=32)
    assert (tta != plain).any()
    data = _Flat(image, tta)  # labels = the flip-averaged prediction
    ident = torch.nn.Identity()
    with_flips = evaluate_boxes(model, data, [(0, 0, 1, 1)], 3, ident, tile=32, flips=True)
    without = evaluate_boxes(model, data, [(0, 0, 1, 1)], 3, ident, tile=32)
    assert with_flips.compute()["overall_accuracy"] == pytest.approx(1.0)
    assert without.compute()["overall_accuracy"] < 1.0
    counts = label_counts(data, [(0, 0, 1, 1), (0, 0, 1, 1)], 3)
    np.testing.assert_array_equal(counts, 2 * np.bincount(tta.ravel().numpy(), minlength=3))


def test_train_on_split_uses_class_weights_and_test_flips(brandenburg_cube, tmp_path, monkeypatch):
    from senland_geo import train_run
    from senland_geo.train_eval import label_counts

    calls = []
    real = train_run.evaluate_boxes

    def spy(*args, **kwargs):
        calls.append(kwargs.get("flips", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_run, "evaluate_boxes", spy)
    config = TrainConfig(
        model="unet-resnet34-slim", epochs=1, patches_per_epoch=4, batch_size=4,
        patch_size=32, eval_tile=256, threads=1, plots=False,
        class_weight_power=0.5, test_flips=True,
    )  # fmt: skip
    train_boxes = [_cols(0, 400)]
    metrics = train_on_split(
        brandenburg_cube, tmp_path, config, train_boxes=train_boxes,
        val_boxes=[_cols(416, 684)], test_boxes=[_cols(1016, 1536)], progress=False,
    )  # fmt: skip
    assert calls == [False, True]  # validation plain, test with flips
    from senland_geo.classes import WORLDCOVER
    from senland_geo.datasets import LabeledCubeDataset
    from senland_geo.train_loss import class_weights_from_counts

    counts = label_counts(LabeledCubeDataset(brandenburg_cube, WORLDCOVER), train_boxes, 11)
    expected = class_weights_from_counts(counts, 0.5)
    np.testing.assert_allclose(metrics["class_weights"], expected.numpy(), atol=1e-4)
    assert max(metrics["class_weights"]) > 2 * min(metrics["class_weights"])
