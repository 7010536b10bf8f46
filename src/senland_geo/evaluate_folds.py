"""Blocked spatial k-fold over a small in-memory tile, alongside the single holdout.

Why: a single east holdout of a small tile measures a class only if it occurs on both
sides of the cut. On the 1 km Slovenia tile the east third holds all 11 cropland pixels
and most built-up pixels, the training side 10 built-up pixels, so the holdout's mIoU
rests on a few dozen pixels. Blocked k-fold (as :func:`senland_geo.splits.kfold_splits`
does for cubes) tests every column strip once, each time training on the rest minus a
buffer, and reports mean and standard deviation over the folds.

How: fold ``i`` tests column strip ``i``; its training data is the whole tile with the
test strip and ``buffer_px`` columns either side *blanked*: labels set to
``IGNORE_INDEX`` and image values to 0 (the cubes' "no observation" value, which the
normaliser of :mod:`senland_geo.evaluate` skips). Crops may then span the blank gap
but never see a test pixel or label. No validation block is carved out: every model is
trained with the settings chosen on the single holdout's validation block (the epoch
count of its early-stopped run, the forest's chosen grid point), so the folds cost one fit
per model and fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from senland_geo.classes import IGNORE_INDEX
from senland_geo.errors import UserError
from senland_geo.evaluate import (
    Recipe,
    SceneData,
    _confusion,
    _ensemble,
    _fit,
    _pixels,
    _score,
    summary,
    training_pixels,
)


def column_folds(width: int, k: int = 5, *, buffer_px: int = 3) -> list[dict[str, slice]]:
    """``k`` contiguous test strips of near-equal width and the columns blanked around them.

    Returns:
        Per fold ``{"test": strip, "blank": strip widened by buffer_px each side}``.

    Raises:
        UserError: ``k`` < 2, or the strips are too narrow for the buffer.
    """
    if k < 2 or width // k <= 2 * buffer_px:
        raise UserError(
            f"{k} folds of a {width} px wide tile with a {buffer_px} px buffer leave no "
            "training columns; use 2 <= k and wider strips"
        )
    edges = np.linspace(0, width, k + 1).round().astype(int)
    return [
        {
            "test": slice(int(a), int(b)),
            "blank": slice(max(int(a) - buffer_px, 0), min(int(b) + buffer_px, width)),
        }
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


def blank(image: np.ndarray, cols: slice) -> np.ndarray:
    """Copy of ``image`` (``(..., H, W)``) with columns ``cols`` set to 0."""
    out = image.copy()
    out[..., cols] = 0
    return out


def _fold_data(data: SceneData, fold: dict[str, slice]) -> SceneData:
    """Training view of ``data`` for one fold: the test strip and buffers blanked."""
    labels = data.labels.copy()
    labels[:, fold["blank"]] = IGNORE_INDEX
    width = labels.shape[1]
    columns = {"train": slice(0, width), "val": fold["test"], "test": fold["test"]}
    return SceneData(blank(data.image, fold["blank"]), labels, columns, data.bands, data.classes)


def crossval_network(
    model_name: str,
    data: SceneData,
    recipe: Recipe,
    folds: Sequence[dict[str, slice]],
    *,
    epochs: Sequence[int],
    extra_images: Sequence[np.ndarray] = (),
) -> dict[str, Any]:
    """Train on each fold's training view for fixed epochs; score its test strip.

    Args:
        model_name: Model plugin.
        data: Whole tile (its ``columns`` are ignored).
        recipe: Training settings (``seeds`` > 1 trains an ensemble per fold).
        folds: From :func:`column_folds`.
        epochs: Epochs of each ensemble member (e.g. the holdout's best epochs + 1).
        extra_images: More dates of the tile used as training crops (blanked alike).

    Returns:
        :func:`fold_summary` of the per-fold test metrics.
    """
    if len(epochs) != recipe.seeds:
        raise UserError(f"give one epoch count per seed ({recipe.seeds}), got {list(epochs)}")
    per_fold = []
    for fold in folds:
        train = _fold_data(data, fold)
        images = [train.image, *(blank(im, fold["blank"]) for im in extra_images)]
        fitted = _ensemble(
            [
                _fit(model_name, train, replace(recipe, seed=recipe.seed + i), images,
                     train.columns["train"], epochs=e, early_stopping=False)
                for i, e in enumerate(epochs)
            ]
        )  # fmt: skip
        test_view = SceneData(data.image, data.labels, train.columns, data.bands, data.classes)
        per_fold.append(_score(fitted, test_view, "test", recipe, tta=recipe.flip_tta))
    return fold_summary(per_fold, folds)


def crossval_forest(
    data: SceneData,
    setting: dict[str, Any],
    folds: Sequence[dict[str, slice]],
    *,
    train_images: Sequence[np.ndarray] | None = None,
    max_pixels: int | None = 60_000,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """The forest ``setting`` (chosen on the holdout's validation) fitted per fold.

    Args:
        data: Whole tile; ``data.image`` is what the test strip is predicted from.
        setting: ``RandomForestClassifier`` keyword arguments.
        folds: From :func:`column_folds`.
        train_images: Images whose training pixels the forest learns from (default
            ``[data.image]``).
        max_pixels: Seeded random draw of at most this many training pixels.
        seed: Seed of the draw and the forest.
        n_jobs: Fitting threads.

    Returns:
        :func:`fold_summary` of the per-fold test metrics.
    """
    from sklearn.ensemble import RandomForestClassifier

    images = list(train_images or [data.image])
    per_fold = []
    for fold in folds:
        labels = data.labels.copy()
        labels[:, fold["blank"]] = IGNORE_INDEX
        x, y = training_pixels(images, labels, {"train": slice(0, labels.shape[1])})
        if max_pixels is not None and y.size > max_pixels:
            pick = np.random.default_rng(seed).choice(y.size, size=max_pixels, replace=False)
            x, y = x[pick], y[pick]
        rf = RandomForestClassifier(**setting, random_state=seed, n_jobs=n_jobs).fit(x, y)
        pred = rf.predict(_pixels(data.image[..., fold["test"]]))
        truth = data.labels[:, fold["test"]]
        per_fold.append(_confusion(pred.reshape(truth.shape), truth, data.classes))
    return fold_summary(per_fold, folds)


def fold_summary(
    per_fold: Sequence[dict[str, Any]], folds: Sequence[dict[str, slice]]
) -> dict[str, Any]:
    """Mean and standard deviation (ddof 0) of mIoU over folds, and each fold's summary."""
    mious = np.array([m["miou"] for m in per_fold])
    return {
        "miou_mean": round(float(mious.mean()), 4),
        "miou_std": round(float(mious.std()), 4),
        "folds": [
            {"test_columns": [f["test"].start, f["test"].stop], **summary(m)}
            for f, m in zip(folds, per_fold, strict=True)
        ],
    }
