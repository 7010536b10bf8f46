"""Real-data evaluation helpers: Slovenia loader, splits, forest, in-memory training parts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from senland_geo.classes import IGNORE_INDEX, WORLDCOVER
from senland_geo.errors import UserError
from senland_geo.evaluate import (
    BalancedLoss,
    CropSampler,
    FlipAverage,
    Recipe,
    SceneData,
    class_weights,
    clearest_scene,
    column_split,
    load_cube_split,
    load_slovenia,
    train_in_memory,
    training_pixels,
    training_side,
    tune_forest,
    validate_in_memory,
)

SLOVENIA = (
    Path(os.environ.get("SENLAND_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
    / "slovenia-eolearn"
)
needs_slovenia = pytest.mark.skipif(
    not (SLOVENIA / "LULC.npy").is_file(), reason="shared Slovenia sample not present"
)


@needs_slovenia
def test_load_slovenia_maps_lulc_onto_worldcover_indices() -> None:
    data = load_slovenia(SLOVENIA)
    raw = np.load(SLOVENIA / "LULC.npy")[..., 0]
    assert data.scenes.shape == (5, 13, 101, 100)
    assert data.scenes.dtype == np.float32
    assert data.labels.shape == (101, 100)
    # eo-learn 2 (forest) -> WorldCover 10 (index 0); 1 (cultivated) -> 40 (index 3);
    # 8 (artificial) -> 50 (index 4); 0 (no data) -> ignored.
    assert (data.labels[raw == 2] == WORLDCOVER.codes.index(10)).all()
    assert (data.labels[raw == 1] == WORLDCOVER.codes.index(40)).all()
    assert (data.labels[raw == 8] == WORLDCOVER.codes.index(50)).all()
    assert (data.labels[raw == 0] == IGNORE_INDEX).all()
    assert (data.labels == IGNORE_INDEX).sum() == (raw == 0).sum()
    # band B02 is the second of the eo-learn order; reflectance is a fraction
    np.testing.assert_allclose(
        data.scenes[2, 1], np.load(SLOVENIA / "REFERENCE_SCENES.npy")[2, ..., 1]
    )
    assert 0 < float(np.median(data.scenes[:, 1])) < 1
    assert clearest_scene(data.scenes, data.bands) != 0  # scene 0 is the hazy one


def test_load_slovenia_names_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="REFERENCE_SCENES.npy"):
        load_slovenia(tmp_path)


def test_column_split_is_disjoint_with_buffers() -> None:
    cols = column_split(100)
    assert cols == {"train": slice(0, 48), "val": slice(51, 64), "test": slice(67, 100)}
    sets = {k: set(range(100)[v]) for k, v in cols.items()}
    assert not (sets["train"] & sets["val"] or sets["val"] & sets["test"])
    assert min(sets["val"]) - max(sets["train"]) == 4  # 3 px buffer
    assert min(sets["test"]) - max(sets["val"]) == 4
    with pytest.raises(UserError, match="6 px wide"):
        column_split(6, buffer_px=3)


def test_load_cube_split_matches_the_training_holdout(brandenburg_cube: Path) -> None:
    from senland_geo.datasets import CubeDataset
    from senland_geo.train import validation_split

    data = load_cube_split(brandenburg_cube)
    assert data.image.shape == (10, 768, 1536)
    assert data.labels.shape == (768, 1536)
    cols = data.columns
    assert cols["train"].start == 0 and cols["test"].stop == 1536
    assert cols["train"].stop + 16 == cols["val"].start  # 16 px buffers as in train.py
    assert cols["val"].stop + 16 == cols["test"].start
    grid = CubeDataset(brandenburg_cube).grid
    outer, _ = validation_split(grid["bounds"], grid["res"])
    assert grid["bounds"][0] + cols["test"].start * grid["res"] == outer.test[0][0]
    labelled = {p: int((data.labels[:, s] >= 0).sum()) for p, s in cols.items()}
    assert all(n > 10_000 for n in labelled.values())


def test_tune_forest_learns_a_separable_toy_and_reports_its_choice(toy_scene: SceneData) -> None:
    data = toy_scene
    m = tune_forest(data, grid=((5, None, 1), (5, 2, 1)), class_weights=(None,), refit=False)
    assert m["miou"] == pytest.approx(1.0)
    assert m["train_pixels"] == 38 * 28  # labelled rows x training columns
    refit = tune_forest(data, grid=((5, None, 1),), class_weights=(None,))
    assert refit["train_pixels"] == 38 * 38  # training side: train, buffer and val columns
    assert refit["test_before_refit"]["miou"] == pytest.approx(1.0)
    assert len(m["trials"]) == 2
    assert m["chosen"]["n_estimators"] == 5
    assert m["pixels"] == 38 * data.labels[:, data.columns["test"]].shape[1]


def test_training_pixels_stack_one_sample_per_image(toy_scene: SceneData) -> None:
    data = toy_scene
    x, y = training_pixels([data.image, data.image + 1], data.labels, data.columns)
    n = 38 * 28
    assert x.shape == (2 * n, 2) and y.shape == (2 * n,)
    np.testing.assert_allclose(x[n:], x[:n] + 1)


def test_training_side_spans_train_buffer_and_validation() -> None:
    assert training_side(column_split(100)) == slice(0, 64)
    with pytest.raises(UserError, match="east of the training"):
        training_side({"train": slice(50, 100), "val": slice(0, 40)})


def test_class_weights_favour_rare_classes_with_mean_one() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [IGNORE_INDEX] * 5)
    w = class_weights(labels, 4, power=0.5)
    assert w[1] / w[0] == pytest.approx(3.0)  # sqrt(90 / 10)
    assert float(w[:2].mean()) == pytest.approx(1.0)
    assert w[2] == w[3] == 1.0


def test_balanced_loss_ignores_unlabelled_and_weights_classes() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.full((1, 2, 2), IGNORE_INDEX)
    assert float(BalancedLoss(torch.ones(2))(logits, target)) == 0.0
    target[0, 0, 0] = 1
    plain = BalancedLoss(torch.ones(2), dice_weight=0)(logits, target)
    assert float(plain) == pytest.approx(np.log(2))


def test_crop_sampler_draws_rare_class_crops_inside_the_area() -> None:
    labels = np.zeros((50, 60), dtype=np.int64)
    labels[40, 55] = 1  # one rare pixel
    g = torch.Generator().manual_seed(0)
    origins = CropSampler(labels, 16, balanced=1.0).origins(200, g)
    assert all(0 <= r <= 34 and 0 <= c <= 44 for r, c in origins)
    hits = sum(r <= 40 < r + 16 and c <= 55 < c + 16 for r, c in origins)
    assert 80 <= hits <= 120  # half the draws pick class 1, which always lands in the crop
    with pytest.raises(UserError, match="smaller than the 64 px"):
        CropSampler(labels, 64, 0.5)


def test_flip_average_of_a_pointwise_model_is_its_softmax() -> None:
    model = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(FlipAverage(model)(x), model(x).softmax(1), atol=1e-6)


def tiny_recipe(**overrides: object) -> Recipe:
    """A two-epoch recipe of a small unet-gn: the in-memory training tests' network."""
    options = dict(epochs=2, steps_per_epoch=1, batch_size=2, patch_size=16, precision="fp32",
                   model_options={"base_channels": 8, "depth": 2, "groups": 4})  # fmt: skip
    return Recipe(**{**options, **overrides})


def test_train_in_memory_runs_the_engine_and_scores_the_test_columns(toy_scene: SceneData) -> None:
    data = toy_scene
    recipe = tiny_recipe()
    m = train_in_memory("unet-gn", data, recipe, extra_images=[data.image])
    assert m["epochs_run"] == 2 and len(m["history"]) == 2
    assert 0 <= m["best_epoch"] <= 1 and "test_before_refit" in m
    assert m["pixels"] == 38 * data.labels[:, data.columns["test"]].shape[1]
    assert 0.0 <= m["miou"] <= 1.0 and set(m["validation"]) == {"miou", "macro_dice"}


def test_validate_in_memory_never_scores_the_test_columns(
    toy_scene: SceneData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from senland_geo import evaluate

    data = toy_scene
    recipe = tiny_recipe(refit=False)
    scored: list[str] = []
    score = evaluate._score

    def recording(fitted, data, part, r, **kw):  # noqa: ANN001, ANN202
        scored.append(part)
        return score(fitted, data, part, r, **kw)

    monkeypatch.setattr(evaluate, "_score", recording)
    v = validate_in_memory("unet-gn", data, recipe)
    assert scored and set(scored) == {"val"}
    assert v["pixels"] == 38 * data.labels[:, data.columns["val"]].shape[1]
    assert len(v["best_epochs"]) == 1 and v["epochs_run"] == [2]
    assert v["first_seed_miou"] == v["miou"]  # one seed: the ensemble is that network
    m = train_in_memory("unet-gn", data, recipe)  # same seed: same networks, same val score
    assert scored[-1] == "test"
    assert v["best_epochs"] == m["best_epochs"]
    assert v["miou"] == pytest.approx(m["validation"]["miou"])


def test_train_in_memory_with_known_best_epochs_only_refits(toy_scene: SceneData) -> None:
    data = toy_scene
    recipe = tiny_recipe()
    full = train_in_memory("unet-gn", data, recipe)
    quick = train_in_memory("unet-gn", data, recipe, best_epochs=full["best_epochs"])
    assert quick["miou"] == pytest.approx(full["miou"])  # the same refitted network
    assert quick["best_epochs"] == full["best_epochs"] and "validation" not in quick
    with pytest.raises(UserError, match="one epoch per seed"):
        train_in_memory("unet-gn", data, recipe, best_epochs=[0, 1])
