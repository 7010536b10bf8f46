"""Blocked k-fold over an in-memory tile, and seed ensembles of the in-memory trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from senland_geo.classes import IGNORE_INDEX
from senland_geo.errors import UserError
from senland_geo.evaluate import (
    Recipe,
    SceneData,
    SoftmaxEnsemble,
    train_in_memory,
)
from senland_geo.evaluate_folds import (
    _fold_data,
    blank,
    column_folds,
    crossval_forest,
    crossval_network,
)

TINY = {"base_channels": 8, "depth": 2, "groups": 4}


def test_column_folds_cover_every_column_once_with_buffers() -> None:
    folds = column_folds(100, 5, buffer_px=3)
    tested = np.concatenate([np.arange(100)[f["test"]] for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(100))
    assert folds[1] == {"test": slice(20, 40), "blank": slice(17, 43)}
    assert folds[0]["blank"] == slice(0, 23) and folds[-1]["blank"] == slice(77, 100)
    with pytest.raises(UserError, match="3 px buffer"):
        column_folds(20, 4, buffer_px=3)


def test_fold_view_hides_test_pixels_and_labels_from_training(toy_scene: SceneData) -> None:
    data = toy_scene
    fold = column_folds(60, 3, buffer_px=2)[1]  # test 20:40, blank 18:42
    view = _fold_data(data, fold)
    assert (view.labels[:, 18:42] == IGNORE_INDEX).all()
    assert (view.image[..., 18:42] == 0).all()
    np.testing.assert_array_equal(view.labels[:, :18], data.labels[:, :18])
    np.testing.assert_array_equal(view.image[..., 42:], data.image[..., 42:])
    assert view.columns["test"] == slice(20, 40)
    assert data.image[..., 20:40].any()  # the original is untouched
    series = np.ones((3, 2, 4, 10), dtype=np.float32)
    assert blank(series, slice(2, 5))[..., 2:5].sum() == 0 and series.sum() == 3 * 2 * 4 * 10


def test_crossval_forest_scores_each_strip_and_summarises(toy_scene: SceneData) -> None:
    data = toy_scene
    folds = column_folds(60, 3, buffer_px=2)
    out = crossval_forest(data, {"n_estimators": 5}, folds)
    assert [f["test_columns"] for f in out["folds"]] == [[0, 20], [20, 40], [40, 60]]
    assert all(f["test_pixels"] == 38 * 20 for f in out["folds"])
    assert out["miou_mean"] > 0.99 and out["miou_std"] < 0.01


def test_crossval_forest_cannot_learn_a_class_only_in_the_test_strip(toy_scene: SceneData) -> None:
    data = toy_scene
    data.labels[:, 40:] = np.where(data.labels[:, 40:] == 2, 2, data.labels[:, 40:])
    data.labels[:, :40] = np.where(data.labels[:, :40] == 2, IGNORE_INDEX, data.labels[:, :40])
    out = crossval_forest(data, {"n_estimators": 5}, column_folds(60, 3, buffer_px=2))
    last = out["folds"][2]["per_class_iou"]
    assert last["30 Grassland"] == 0.0  # class index 2 never seen in training
    assert out["folds"][0]["miou"] > 0.99


def test_soft_ensemble_averages_probabilities() -> None:
    a, b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        mean = (a(x).softmax(1) + b(x).softmax(1)) / 2
        np.testing.assert_allclose(SoftmaxEnsemble([a, b])(x).softmax(1), mean, atol=1e-5)


def test_train_in_memory_seed_ensemble_trains_one_network_per_seed(toy_scene: SceneData) -> None:
    data = toy_scene
    recipe = Recipe(
        epochs=2, steps_per_epoch=1, batch_size=2, patch_size=16, precision="fp32",
        model_options=TINY, seeds=2, refit=False,
    )  # fmt: skip
    m = train_in_memory("unet-gn", data, recipe)
    single = train_in_memory("unet-gn", data, Recipe(**{**recipe.__dict__, "seeds": 1}))
    assert m["seeds"] == 2 and len(m["best_epochs"]) == 2
    assert m["parameters"] == 2 * single["parameters"]
    with pytest.raises(UserError, match="seeds=0"):
        train_in_memory("unet-gn", data, Recipe(seeds=0))


def test_crossval_network_trains_per_fold_and_checks_epochs(toy_scene: SceneData) -> None:
    data = toy_scene
    recipe = Recipe(
        steps_per_epoch=1, batch_size=2, patch_size=16, precision="fp32", model_options=TINY
    )
    folds = column_folds(60, 3, buffer_px=2)
    out = crossval_network("unet-gn", data, recipe, folds, epochs=[1])
    assert len(out["folds"]) == 3 and all(f["test_pixels"] == 38 * 20 for f in out["folds"])
    mious = [f["miou"] for f in out["folds"]]
    assert out["miou_mean"] == pytest.approx(np.mean(mious), abs=1e-4)
    with pytest.raises(UserError, match="one epoch count per seed"):
        crossval_network("unet-gn", data, recipe, folds, epochs=[1, 1])
