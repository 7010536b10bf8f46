"""Real-data evaluation helpers: a per-pixel random-forest baseline and the Slovenia scenes.

* :func:`random_forest_on_cube`: scikit-learn RandomForest trained on pixels of a run's
  training boxes, scored on its test block (the same pixels the U-Net learned from and
  is tested on).
* :func:`load_slovenia` / :func:`evaluate_slovenia`: the eo-learn Slovenia sample (five
  real L1C scenes, 13 bands, 101 x 100 px, LULC labels mapped onto WorldCover codes) with
  a spatial holdout inside the 1 km tile; U-Nets on one scene, AgrUNet on the series, and
  the forest on the same training pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from senland_geo.classes import IGNORE_INDEX, WORLDCOVER, ClassTable
from senland_geo.metrics import ConfusionMatrix

#: Band order of the eo-learn sample (Sentinel-2 L1C, all 13 bands).
SLOVENIA_BANDS = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
]  # fmt: skip

#: eo-learn LULC class -> ESA WorldCover code (0 = no data; 7 = "other" has no match).
SLOVENIA_TO_WORLDCOVER = {1: 40, 2: 10, 3: 30, 4: 20, 5: 80, 6: 90, 8: 50, 9: 60, 10: 70}


def random_forest(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    n_estimators: int = 100,
    seed: int = 0,
    n_jobs: int = 1,
) -> Any:
    """Fit a scikit-learn RandomForest on ``(N, F)`` pixel features and labels."""
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(
        n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs, min_samples_leaf=1
    )
    rf.fit(x_train, y_train)
    return rf


def _pixels(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(T, C, H, W)`` -> ``(H*W, features)``."""
    x = image.reshape(-1, *image.shape[-2:])
    return x.reshape(x.shape[0], -1).T


def random_forest_on_cube(
    cube_path: str | Path,
    train_boxes: Sequence[tuple[float, float, float, float]],
    test_boxes: Sequence[tuple[float, float, float, float]],
    *,
    max_pixels: int = 20_000,
    seed: int = 0,
    n_estimators: int = 100,
) -> dict[str, Any]:
    """RandomForest per pixel on a cube: train on the training boxes, score the test boxes.

    Args:
        cube_path: Cube with labels.
        train_boxes: Boxes the U-Net sampled its training patches from.
        test_boxes: The holdout boxes.
        max_pixels: Labelled training pixels drawn at random (seeded).
        seed: Seed of the draw and of the forest.
        n_estimators: Trees.

    Returns:
        Metrics like :meth:`ConfusionMatrix.compute` plus ``train_pixels`` and seconds.
    """
    from senland_geo import store
    from senland_geo.datasets import CubeDataset, CubeLabelDataset

    ds = store.open_cube(cube_path)
    classes = _table(ds.attrs.get("class_table", "esa-worldcover"))
    dataset = CubeDataset(cube_path) & CubeLabelDataset(cube_path, classes)
    t = dataset.bounds[2]

    def read(box: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        s = dataset[slice(box[0], box[2]), slice(box[1], box[3]), t]
        y = torch.where(s["valid"], s["mask"], IGNORE_INDEX).numpy().ravel()
        return _pixels(s["image"].numpy()), y

    xs, ys = zip(*(read(b) for b in train_boxes), strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = np.flatnonzero(y != IGNORE_INDEX)
    rng = np.random.default_rng(seed)
    keep = rng.choice(keep, size=min(max_pixels, keep.size), replace=False)
    t0 = time.perf_counter()
    rf = random_forest(x[keep], y[keep], n_estimators=n_estimators, seed=seed)
    fit_seconds = time.perf_counter() - t0
    cm = ConfusionMatrix(len(classes))
    for box in test_boxes:
        xt, yt = read(box)
        cm.update(torch.from_numpy(rf.predict(xt)), torch.from_numpy(yt))
    return {**cm.compute(classes), "train_pixels": int(keep.size), "fit_seconds": fit_seconds}


def _table(name: str) -> ClassTable:
    from senland_geo.classes import TABLES

    return TABLES[name]


@dataclass
class SloveniaData:
    """The Slovenia sample on the WorldCover class table.

    Attributes:
        scenes: ``(T, C, H, W)`` float32 reflectance (T=5, C=13).
        labels: ``(H, W)`` int64 WorldCover model indices (IGNORE_INDEX for no data).
        bands: Band names of ``C``.
    """

    scenes: np.ndarray
    labels: np.ndarray
    bands: list[str]


def load_slovenia(root: str | Path) -> SloveniaData:
    """Read ``REFERENCE_SCENES.npy`` and ``LULC.npy`` and map labels to WorldCover."""
    root = Path(root)
    scenes = np.load(root / "REFERENCE_SCENES.npy").astype(np.float32)  # (T, H, W, C)
    lulc = np.load(root / "LULC.npy")[..., 0].astype(np.int64)
    lut = WORLDCOVER.code_to_index_lut()
    codes = np.zeros_like(lulc)
    for src, dst in SLOVENIA_TO_WORLDCOVER.items():
        codes[lulc == src] = dst
    labels = lut[codes].astype(np.int64)
    return SloveniaData(np.ascontiguousarray(scenes.transpose(0, 3, 1, 2)), labels, SLOVENIA_BANDS)


def column_split(
    width: int, *, test_fraction: float = 1 / 3, val_fraction: float = 0.2, buffer_px: int = 3
) -> dict[str, slice]:
    """East holdout inside a small tile: ``train | buffer | val | buffer | test`` columns."""
    test0 = width - round(width * test_fraction)
    side = test0 - buffer_px
    val0 = side - round(side * val_fraction)
    return {
        "train": slice(0, val0 - buffer_px),
        "val": slice(val0, side),
        "test": slice(test0, width),
    }


def _random_crops(
    x: torch.Tensor, y: torch.Tensor, size: int, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = y.shape
    r = torch.randint(0, rows - size + 1, (n,), generator=generator).tolist()
    c = torch.randint(0, cols - size + 1, (n,), generator=generator).tolist()
    xs = torch.stack([x[..., i : i + size, j : j + size] for i, j in zip(r, c, strict=True)])
    ys = torch.stack([y[i : i + size, j : j + size] for i, j in zip(r, c, strict=True)])
    return xs, ys


def train_in_memory(
    model_name: str,
    image: np.ndarray,
    labels: np.ndarray,
    columns: dict[str, slice],
    *,
    model_options: dict[str, Any] | None = None,
    epochs: int = 30,
    steps_per_epoch: int = 8,
    batch_size: int = 8,
    patch_size: int = 32,
    lr: float = 2e-3,
    patience: int = 10,
    seed: int = 0,
    precision: str = "fp32",
    classes: ClassTable = WORLDCOVER,
) -> dict[str, Any]:
    """Train a registered model on an in-memory image with the column split.

    Args:
        model_name: Model plugin.
        image: ``(C, H, W)`` (single scene) or ``(T, C, H, W)`` (series, temporal models).
        labels: ``(H, W)`` model indices.
        columns: ``train``/``val``/``test`` column slices (:func:`column_split`).
        model_options: Builder options.
        epochs: Maximum epochs.
        steps_per_epoch: Optimiser steps per epoch.
        batch_size: Patches per step.
        patch_size: Patch side.
        lr: Peak learning rate.
        patience: Early-stopping patience on validation macro Dice.
        seed: Seed.
        precision: ``fp32`` or ``bf16``.
        classes: Class table.

    Returns:
        Test metrics with ``validation``, ``history`` and timing.
    """
    from senland_geo import registry
    from senland_geo.train import Engine, Normalize, TrainConfig, flip_rotate, predict_array

    torch.manual_seed(seed)
    x = torch.from_numpy(image)
    y = torch.from_numpy(labels)
    train_x, train_y = x[..., columns["train"]], y[:, columns["train"]]
    flat = train_x.reshape(-1, *train_x.shape[-3:]).transpose(0, 1).reshape(train_x.shape[-3], -1)
    normalize = Normalize(flat.mean(1).tolist(), flat.std(1).clamp_min(1e-6).tolist())
    xn = normalize(x)
    channels = image.shape[-3]
    model = registry.load("models", model_name)(
        in_channels=channels, num_classes=len(classes), **(model_options or {})
    )
    config = TrainConfig(
        model=model_name, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
        seed=seed, precision=precision, patches_per_epoch=steps_per_epoch * batch_size,
    )  # fmt: skip

    def autocast() -> Any:
        import contextlib

        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    engine = Engine(model, config, steps_per_epoch=steps_per_epoch, autocast=autocast)
    train_xn = xn[..., columns["train"]]

    def batches(epoch: int):
        g = torch.Generator().manual_seed(seed * 1009 + epoch)
        for _ in range(steps_per_epoch):
            bx, by = _random_crops(train_xn, train_y, patch_size, batch_size, g)
            yield flip_rotate(bx, by)

    def score(part: str) -> dict[str, Any]:
        pred = predict_array(model, xn[..., columns[part]], tile=128, autocast=autocast())
        cm = ConfusionMatrix(len(classes))
        cm.update(pred, y[:, columns[part]])
        return cm.compute(classes)

    t0 = time.perf_counter()
    state = engine.fit(batches, lambda: score("val"))
    seconds = time.perf_counter() - t0
    metrics = score("test")
    metrics.update(
        validation={k: state["best_val"][k] for k in ("miou", "macro_dice")},
        best_epoch=state["best_epoch"],
        epochs_run=state["epoch"] + 1,
        seconds=round(seconds, 1),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    return metrics


def random_forest_in_memory(
    image: np.ndarray,
    labels: np.ndarray,
    columns: dict[str, slice],
    *,
    seed: int = 0,
    n_estimators: int = 100,
    classes: ClassTable = WORLDCOVER,
) -> dict[str, Any]:
    """Per-pixel forest on every labelled training-column pixel, scored on the test columns."""
    x_train = _pixels(image[..., columns["train"]])
    y_train = labels[:, columns["train"]].ravel()
    keep = y_train != IGNORE_INDEX
    rf = random_forest(x_train[keep], y_train[keep], n_estimators=n_estimators, seed=seed)
    pred = rf.predict(_pixels(image[..., columns["test"]]))
    cm = ConfusionMatrix(len(classes))
    cm.update(torch.from_numpy(pred), torch.from_numpy(labels[:, columns["test"]].ravel()))
    return {**cm.compute(classes), "train_pixels": int(keep.sum())}


def clearest_scene(scenes: np.ndarray, bands: list[str]) -> int:
    """Index of the scene with the darkest median blue (B02): least haze or cloud."""
    blue = scenes[:, bands.index("B02")]
    return int(np.argmin(np.median(blue.reshape(blue.shape[0], -1), axis=1)))


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """mIoU, macro Dice, OA and per-class IoU (classes present) of a metrics dict."""
    return {
        "miou": round(metrics["miou"], 4),
        "macro_dice": round(metrics["macro_dice"], 4),
        "overall_accuracy": round(metrics["overall_accuracy"], 4),
        "per_class_iou": {
            f"{c['code']} {c['name']}": round(c["iou"], 4)
            for c in metrics["per_class"]
            if c["iou"] is not None
        },
        "test_pixels": metrics["pixels"],
    }
