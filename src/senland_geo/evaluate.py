"""Real-data evaluation: U-Nets against a per-pixel random forest on the same pixels.

Both real samples are small enough to hold in memory, so one in-memory path serves both:

* :func:`load_cube_split`: a labelled cube (the embedded Brandenburg sample) read whole,
  with the spatial split of :func:`senland_geo.train.validation_split` (east test block,
  a validation block carved from the training side) as column slices.
* :func:`load_slovenia`: the eo-learn Slovenia sample (five real L1C scenes, 13 bands,
  101 x 100 px, LULC labels mapped onto WorldCover codes); :func:`column_split` gives the
  same ``train | buffer | val | buffer | test`` layout inside the 1 km tile.
* :func:`train_in_memory`: trains a registered model with the training engine
  (:class:`senland_geo.train.Engine`) on random crops of the training columns, with a
  class-balanced loss (:class:`BalancedLoss`) and class-balanced crop centres, early
  stopping on the validation columns, and scores the test columns.
* :func:`tune_forest`: a scikit-learn RandomForest on every labelled training pixel (band
  values as features), its size tuned on the validation columns, scored on the test
  columns: the same pixels the networks learn from and are tested on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from senland_geo.classes import IGNORE_INDEX, WORLDCOVER, ClassTable
from senland_geo.errors import UserError
from senland_geo.metrics import ConfusionMatrix
from senland_geo.train_eval import FlipAverage
from senland_geo.train_loss import SegmentationLoss, class_weights_from_counts

#: Band order of the eo-learn sample (Sentinel-2 L1C, all 13 bands).
SLOVENIA_BANDS = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
]  # fmt: skip

#: eo-learn LULC class -> ESA WorldCover code (0 = no data; 7 = "other" has no match).
SLOVENIA_TO_WORLDCOVER = {1: 40, 2: 10, 3: 30, 4: 20, 5: 80, 6: 90, 8: 50, 9: 60, 10: 70}

Columns = dict[str, slice]


# --- data --------------------------------------------------------------------------------


@dataclass
class SceneData:
    """An in-memory labelled image with a column split.

    Attributes:
        image: ``(C, H, W)`` float32, or ``(T, C, H, W)`` for a series.
        labels: ``(H, W)`` int64 model indices (``IGNORE_INDEX`` for no label / nodata).
        columns: ``train``, ``val`` and ``test`` column slices.
        bands: Band names of ``C``.
        classes: Class table of the indices.
    """

    image: np.ndarray
    labels: np.ndarray
    columns: Columns
    bands: list[str]
    classes: ClassTable = WORLDCOVER


def load_cube_split(
    cube_path: str | Path,
    *,
    holdout_fraction: float = 1 / 3,
    val_fraction: float = 0.2,
    buffer_px: int = 16,
) -> SceneData:
    """Read a labelled single-composite cube whole, with the east holdout of ``train.train``.

    The split is :func:`senland_geo.train.validation_split` (side east), so the test block
    is exactly the one ``senland-geo train`` holds out.

    Raises:
        UserError: The cube holds a series (use a composite) or has no labels.
    """
    from senland_geo import store
    from senland_geo.classes import TABLES
    from senland_geo.datasets import LabeledCubeDataset
    from senland_geo.train import validation_split

    classes = TABLES[store.open_cube(cube_path).attrs.get("class_table", "esa-worldcover")]
    dataset = LabeledCubeDataset(cube_path, classes)
    if len(dataset.times) != 1:
        raise UserError(
            f"cube {cube_path} has {len(dataset.times)} dates; evaluate a single composite"
        )
    minx, miny, maxx, maxy = dataset.grid["bounds"]
    sample = dataset[slice(minx, maxx), slice(miny, maxy), dataset.bounds[2]]
    labels = torch.where(sample["valid"], sample["mask"], IGNORE_INDEX).numpy()
    outer, inner = validation_split(
        dataset.grid["bounds"],
        dataset.grid["res"],
        side="east",
        holdout_fraction=holdout_fraction,
        val_fraction=val_fraction,
        buffer_px=buffer_px,
    )
    columns = {}
    for part, boxes in (("train", inner.train), ("val", inner.test), ("test", outer.test)):
        (box,) = boxes
        rows, cols = dataset.window((slice(box[0], box[2]), slice(box[1], box[3]), slice(None)))
        if (rows.start, rows.stop) != (0, labels.shape[0]):
            raise UserError(f"the {part} block {box} does not span the cube's full height")
        columns[part] = cols
    image = sample["image"].numpy().astype(np.float32)
    return SceneData(image, labels.astype(np.int64), columns, list(dataset.bands), classes)


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
    """Read ``REFERENCE_SCENES.npy`` and ``LULC.npy`` and map labels to WorldCover.

    Raises:
        UserError: ``root`` lacks the two files.
    """
    root = Path(root)
    files = [root / "REFERENCE_SCENES.npy", root / "LULC.npy"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{root} lacks {missing}; point it at the eo-learn Slovenia sample")
    scenes = np.load(files[0]).astype(np.float32)  # (T, H, W, C)
    lulc = np.load(files[1])[..., 0].astype(np.int64)
    lut = WORLDCOVER.code_to_index_lut()
    codes = np.zeros_like(lulc)
    for src, dst in SLOVENIA_TO_WORLDCOVER.items():
        codes[lulc == src] = dst
    labels = lut[codes].astype(np.int64)
    return SloveniaData(np.ascontiguousarray(scenes.transpose(0, 3, 1, 2)), labels, SLOVENIA_BANDS)


def column_split(
    width: int, *, test_fraction: float = 1 / 3, val_fraction: float = 0.2, buffer_px: int = 3
) -> Columns:
    """East holdout inside a small tile: ``train | buffer | val | buffer | test`` columns.

    Raises:
        UserError: The tile is too narrow for the fractions and buffers.
    """
    test0 = width - round(width * test_fraction)
    side = test0 - buffer_px
    val0 = side - round(side * val_fraction)
    if val0 - buffer_px < 1 or val0 >= side or test0 >= width:
        raise UserError(
            f"a {width} px wide tile leaves no room for train/val/test with a {buffer_px} px "
            "buffer; use a smaller buffer or other fractions"
        )
    return {
        "train": slice(0, val0 - buffer_px),
        "val": slice(val0, side),
        "test": slice(test0, width),
    }


def clearest_scene(scenes: np.ndarray, bands: list[str]) -> int:
    """Index of the scene with the darkest median blue (B02): least haze or cloud."""
    blue = scenes[:, bands.index("B02")]
    return int(np.argmin(np.median(blue.reshape(blue.shape[0], -1), axis=1)))


# --- the random-forest baseline ----------------------------------------------------------


def _pixels(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(T, C, H, W)`` -> ``(H*W, features)``."""
    x = image.reshape(-1, *image.shape[-2:])
    return x.reshape(x.shape[0], -1).T


def _confusion(pred: np.ndarray, truth: np.ndarray, classes: ClassTable) -> dict[str, Any]:
    cm = ConfusionMatrix(len(classes))
    cm.update(torch.as_tensor(pred).reshape(-1), torch.as_tensor(truth).reshape(-1))
    return cm.compute(classes)


def training_pixels(
    images: Sequence[np.ndarray], labels: np.ndarray, columns: Columns
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every labelled training-column pixel of each image.

    Several images (e.g. the five Slovenian dates of one tile) give one sample per pixel
    and image, the same pixels the single-scene U-Net sees as augmentation.
    """
    y = labels[:, columns["train"]].ravel()
    keep = y != IGNORE_INDEX
    xs = [_pixels(image[..., columns["train"]])[keep] for image in images]
    return np.concatenate(xs), np.tile(y[keep], len(images))


#: Forest sizes tried on the validation columns (trees, max depth, min samples per leaf).
FOREST_GRID: tuple[tuple[int, int | None, int], ...] = (
    (200, None, 1),
    (200, 20, 1),
    (200, 12, 1),
    (200, None, 5),
)


def tune_forest(
    data: SceneData,
    *,
    train_images: Sequence[np.ndarray] | None = None,
    grid: Sequence[tuple[int, int | None, int]] = FOREST_GRID,
    class_weights: Sequence[str | None] = (None, "balanced_subsample"),
    max_pixels: int | None = 60_000,
    seed: int = 0,
    n_jobs: int = 1,
    refit: bool = True,
) -> dict[str, Any]:
    """RandomForest on the training pixels, chosen on validation mIoU, scored on the test.

    With ``refit`` the chosen forest is fitted again on the whole training side (training
    block, buffer and validation block), like the networks; the test score of the forest
    fitted on the training block alone is kept as ``test_before_refit``.

    Args:
        data: Image, labels and columns (``data.image`` is scored on val and test).
        train_images: Images whose training pixels the forest learns from (default
            ``[data.image]``); all must share ``data.image``'s feature layout.
        grid: ``(n_estimators, max_depth, min_samples_leaf)`` settings tried.
        class_weights: scikit-learn ``class_weight`` values tried with each setting.
        max_pixels: Random draw (seeded) of at most this many training pixels.
        seed: Seed of the draw and of the forests.
        n_jobs: Threads for fitting.
        refit: Fit the chosen setting again on the whole training side.

    Returns:
        Test metrics like :meth:`ConfusionMatrix.compute` with ``chosen`` (the setting),
        ``validation`` (its validation metrics), ``trials`` and ``train_pixels``.
    """
    from sklearn.ensemble import RandomForestClassifier

    images = train_images or [data.image]

    def draw(cols: slice) -> tuple[np.ndarray, np.ndarray]:
        x, y = training_pixels(images, data.labels, {"train": cols})
        if max_pixels is not None and y.size > max_pixels:
            pick = np.random.default_rng(seed).choice(y.size, size=max_pixels, replace=False)
            x, y = x[pick], y[pick]
        return x, y

    x, y = draw(data.columns["train"])
    features = {p: _pixels(data.image[..., data.columns[p]]) for p in ("val", "test")}
    truth = {p: data.labels[:, data.columns[p]] for p in ("val", "test")}
    best: tuple[float, Any, dict[str, Any]] | None = None
    trials = []
    t0 = time.perf_counter()
    for n_estimators, max_depth, min_leaf in grid:
        for weight in class_weights:
            setting = {
                "n_estimators": n_estimators,
                "max_depth": max_depth,
                "min_samples_leaf": min_leaf,
                "class_weight": weight,
            }
            rf = RandomForestClassifier(**setting, random_state=seed, n_jobs=n_jobs).fit(x, y)
            val = _confusion(rf.predict(features["val"]), truth["val"], data.classes)
            trials.append({**setting, "val_miou": round(val["miou"], 4)})
            if best is None or val["miou"] > best[0]:
                best = (val["miou"], rf, {"setting": setting, "validation": val})
    assert best is not None
    _, rf, chosen = best
    metrics = _confusion(rf.predict(features["test"]), truth["test"], data.classes)
    if refit:
        before = {k: metrics[k] for k in ("miou", "macro_dice", "overall_accuracy")}
        x, y = draw(training_side(data.columns))
        rf = RandomForestClassifier(**chosen["setting"], random_state=seed, n_jobs=n_jobs)
        rf.fit(x, y)
        metrics = _confusion(rf.predict(features["test"]), truth["test"], data.classes)
        metrics["test_before_refit"] = before
    metrics.update(
        chosen=chosen["setting"],
        validation={k: chosen["validation"][k] for k in ("miou", "macro_dice")},
        trials=trials,
        train_pixels=int(y.size),
        seconds=round(time.perf_counter() - t0, 1),
    )
    return metrics


# --- U-Nets in memory ----------------------------------------------------------------------


def class_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> torch.Tensor:
    """Per-class loss weights ``frequency ** -power``, mean 1 over the classes present.

    Classes absent from ``labels`` get weight 1 (they never occur as targets).
    """
    counts = np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=num_classes)
    return class_weights_from_counts(counts, power)


class BalancedLoss(SegmentationLoss):
    """Class-weighted cross-entropy + multiclass Dice, both ignoring unlabelled pixels.

    Args:
        weights: ``(K,)`` cross-entropy weight of each class (:func:`class_weights`).
        dice_weight: Weight of the Dice term.
    """

    def __init__(self, weights: torch.Tensor, dice_weight: float = 1.0) -> None:
        super().__init__(dice_weight=dice_weight, class_weights=weights)


class SoftmaxEnsemble(nn.Module):
    """Mean softmax of several networks, returned as log-probabilities.

    The output's softmax (and argmax) is the averaged probability, so it composes with
    :class:`FlipAverage` and :func:`senland_geo.train.predict_array`.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``log(mean softmax)`` ``(B, K, H, W)``."""
        total = 0
        for model in self.models:
            out = model(x)
            out = out[0] if isinstance(out, list | tuple) else out
            total = total + out.float().softmax(1)
        return torch.log(total / len(self.models) + 1e-12)


class CropSampler:
    """Random training crops, part of them centred on class-balanced labelled pixels.

    Args:
        labels: ``(H, W)`` training labels (``IGNORE_INDEX`` where none).
        size: Crop side.
        balanced: Share of crops that contain a pixel drawn class-uniformly (first a
            class present in ``labels``, then one of its pixels); the rest are uniform.

    Raises:
        UserError: The training area is smaller than ``size``.
    """

    def __init__(self, labels: np.ndarray, size: int, balanced: float) -> None:
        rows, cols = labels.shape
        if rows < size or cols < size:
            raise UserError(
                f"training area {rows}x{cols} px is smaller than the {size} px crops; "
                "use a smaller patch size"
            )
        self.shape = (rows, cols)
        self.size = size
        self.balanced = balanced
        flat = labels.ravel()
        self.pixels = [np.flatnonzero(flat == k) for k in np.unique(flat[flat != IGNORE_INDEX])]

    def origins(self, n: int, generator: torch.Generator) -> list[tuple[int, int]]:
        """``n`` crop origins ``(row, col)``."""
        rows, cols = self.shape
        s = self.size
        out = []
        for _ in range(n):
            u = float(torch.rand((), generator=generator))
            if self.pixels and u < self.balanced:
                k = int(torch.randint(len(self.pixels), (), generator=generator))
                pix = self.pixels[k]
                r, c = divmod(int(pix[int(torch.randint(pix.size, (), generator=generator))]), cols)
                dr, dc = torch.randint(s, (2,), generator=generator).tolist()
                r0, c0 = min(max(r - dr, 0), rows - s), min(max(c - dc, 0), cols - s)
            else:
                r0 = int(torch.randint(rows - s + 1, (), generator=generator))
                c0 = int(torch.randint(cols - s + 1, (), generator=generator))
            out.append((r0, c0))
        return out


@dataclass
class Recipe:
    """How a network is trained in memory (the defaults are the tuned evaluation recipe).

    Attributes:
        epochs: Maximum epochs.
        steps_per_epoch: Optimiser steps per epoch.
        batch_size: Crops per step.
        patch_size: Crop side (a multiple of 32 for the U-Nets).
        lr: Peak AdamW learning rate (one-cycle schedule of the engine).
        weight_decay: AdamW weight decay.
        patience: Early-stopping patience on validation macro Dice.
        class_weight_power: Cross-entropy class weights ``frequency ** -power`` (0: none).
        balanced_crops: Share of crops centred on class-balanced pixels.
        flip_tta: Average the four flips at test time.
        refit: After early stopping, train again on the whole training side (training
            block, buffer, validation block) for the best epoch count; score that model.
        eval_tile: Tile side of whole-block prediction.
        seed: Seed of initialisation, crops and augmentation.
        seeds: Seed ensemble size: train ``seeds`` networks (seeds ``seed``,
            ``seed + 1``, ...) and average their softmax; costs ``seeds`` times the time.
        precision: ``fp32`` or ``bf16`` (default :func:`default_precision`).
        model_options: Builder options of the model.
    """

    epochs: int = 30
    steps_per_epoch: int = 16
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 12
    class_weight_power: float = 0.5
    balanced_crops: float = 0.5
    flip_tta: bool = True
    refit: bool = True
    eval_tile: int = 512
    seed: int = 0
    seeds: int = 1
    precision: str = field(default_factory=lambda: default_precision())
    model_options: dict[str, Any] = field(default_factory=dict)


def default_precision() -> str:
    """``bf16`` where torch runs bf16 convolutions natively (oneDNN), else ``fp32``.

    Without native support bf16 convolutions fall back to a reference kernel about 15x
    slower than fp32 (:func:`senland_geo.backends.cpu.native_bf16`).
    """
    from senland_geo.backends.cpu import native_bf16

    return "bf16" if native_bf16() else "fp32"


def _autocast(precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision != "fp32":
        raise UserError(f"precision {precision!r} is not supported here; use fp32 or bf16")
    return contextlib.nullcontext()


def _normalizer(images: Sequence[np.ndarray], columns: Columns) -> Any:
    """Per-band mean/std over the observed (not all-zero) training pixels of ``images``."""
    from senland_geo.train import Normalize

    channels = images[0].shape[-3]
    x = np.concatenate(
        [np.moveaxis(im[..., columns["train"]], -3, -1).reshape(-1, channels) for im in images]
    )
    x = x[(x != 0).any(axis=1)]
    return Normalize(x.mean(0).tolist(), np.maximum(x.std(0), 1e-6).tolist())


def training_side(columns: Columns) -> slice:
    """Columns of the whole training side: training block, buffer and validation block.

    Raises:
        UserError: The validation block does not lie east of the training block.
    """
    train, val = columns["train"], columns["val"]
    if val.start < train.stop:
        raise UserError(f"validation columns {val} must lie east of the training columns {train}")
    return slice(train.start, val.stop)


@dataclass
class _Fitted:
    model: nn.Module
    normalize: nn.Module
    state: dict[str, Any]
    images_per_second: float


def _fit(
    model_name: str,
    data: SceneData,
    r: Recipe,
    images: Sequence[np.ndarray],
    cols: slice,
    *,
    epochs: int,
    early_stopping: bool,
) -> _Fitted:
    """Train on crops of ``cols`` of ``images``; early-stop on the validation columns."""
    from senland_geo import registry
    from senland_geo.train import Engine, TrainConfig, flip_rotate

    normalize = _normalizer(images, {"train": cols})
    train_x = [normalize(torch.from_numpy(im[..., cols])) for im in images]
    train_y = torch.from_numpy(data.labels[:, cols])
    torch.manual_seed(r.seed)
    model = registry.load("models", model_name)(
        in_channels=data.image.shape[-3], num_classes=len(data.classes), **r.model_options
    )
    config = TrainConfig(
        model=model_name, epochs=epochs, batch_size=r.batch_size, lr=r.lr,
        weight_decay=r.weight_decay, patience=r.patience, seed=r.seed, precision=r.precision,
        patches_per_epoch=r.steps_per_epoch * r.batch_size, patch_size=r.patch_size,
    )  # fmt: skip
    weights = class_weights(train_y.numpy(), len(data.classes), r.class_weight_power)
    engine = Engine(
        model,
        config,
        steps_per_epoch=r.steps_per_epoch,
        autocast=lambda: _autocast(r.precision),
        loss_fn=BalancedLoss(weights),
    )
    sampler = CropSampler(train_y.numpy(), r.patch_size, r.balanced_crops)
    s = r.patch_size

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(r.seed * 1009 + epoch)
        for _ in range(r.steps_per_epoch):
            which = torch.randint(len(train_x), (r.batch_size,), generator=g).tolist()
            origins = sampler.origins(r.batch_size, g)
            pairs = zip(which, origins, strict=True)
            bx = torch.stack([train_x[i][..., a : a + s, b : b + s] for i, (a, b) in pairs])
            by = torch.stack([train_y[a : a + s, b : b + s] for a, b in origins])
            yield flip_rotate(bx, by)

    if early_stopping:
        fitted = _Fitted(model, normalize, {}, 0.0)
        state = engine.fit(batches, lambda: _score(fitted, data, "val", r, tta=False))
    else:  # a fixed number of epochs (the refit on the whole training side)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            torch.manual_seed(r.seed * 7919 + epoch)
            model.train()
            for x, y in batches(epoch):
                engine.train_step(x, y, epoch)
        engine.train_seconds += time.perf_counter() - t0
        state = {"epoch": epochs - 1, "best_epoch": epochs - 1, "history": []}
    ips = round(engine.images_seen / max(engine.train_seconds, 1e-9), 1)
    return _Fitted(model, normalize, state, ips)


def _ensemble(fitted: Sequence[_Fitted]) -> _Fitted:
    """One :class:`_Fitted` averaging the softmax of several (one: unchanged)."""
    if len(fitted) == 1:
        return fitted[0]
    model = SoftmaxEnsemble([f.model for f in fitted])
    ips = round(float(np.mean([f.images_per_second for f in fitted])), 1)
    return _Fitted(model, fitted[0].normalize, fitted[0].state, ips)


def _score(fitted: _Fitted, data: SceneData, part: str, r: Recipe, *, tta: bool) -> dict:
    from senland_geo.train import predict_array

    cols = data.columns[part]
    x = fitted.normalize(torch.from_numpy(data.image[..., cols]))
    net = FlipAverage(fitted.model) if tta else fitted.model
    pred = predict_array(net, x, tile=r.eval_tile, autocast=_autocast(r.precision))
    return _confusion(pred.numpy(), data.labels[:, cols], data.classes)


def _early_stopped(
    model_name: str, data: SceneData, r: Recipe, images: Sequence[np.ndarray]
) -> tuple[list[Recipe], list[_Fitted], dict[str, Any]]:
    """Per-seed recipes, the early-stopped networks and their ensemble's validation score."""
    if r.seeds < 1:
        raise UserError(f"recipe seeds={r.seeds} must be at least 1 (the ensemble size)")
    seeds = [replace(r, seed=r.seed + i) for i in range(r.seeds)]
    train = data.columns["train"]
    firsts = [
        _fit(model_name, data, ri, images, train, epochs=r.epochs, early_stopping=True)
        for ri in seeds
    ]
    if r.flip_tta or r.seeds > 1:
        validation = _score(_ensemble(firsts), data, "val", r, tta=r.flip_tta)
    else:
        validation = firsts[0].state["best_val"]
    return seeds, firsts, validation


def validate_in_memory(
    model_name: str,
    data: SceneData,
    recipe: Recipe | None = None,
    *,
    extra_images: Sequence[np.ndarray] = (),
) -> dict[str, Any]:
    """Train with early stopping and score the validation columns only (never the test).

    The tool for choosing a recipe: the test columns are neither read for training nor
    predicted, so trying settings with it leaves the test holdout untouched.

    Args:
        model_name: Model plugin.
        data: Image, labels and columns.
        recipe: Training settings (default :class:`Recipe`); ``refit`` is not used.
        extra_images: More images of the same place (see :func:`train_in_memory`).

    Returns:
        Validation metrics (:meth:`ConfusionMatrix.compute`, flip-averaged when
        ``recipe.flip_tta``, the seed ensemble when ``recipe.seeds > 1``) with
        ``best_epochs``, ``first_seed_miou`` (the first seed's network alone: the
        ensemble's gain), ``seconds`` and ``images_per_second``.
    """
    r = recipe or Recipe()
    t0 = time.perf_counter()
    _, firsts, validation = _early_stopped(model_name, data, r, [data.image, *extra_images])
    first_seed = _score(firsts[0], data, "val", r, tta=r.flip_tta) if r.seeds > 1 else validation
    return {
        **validation,
        "first_seed_miou": first_seed["miou"],
        "best_epochs": [f.state["best_epoch"] for f in firsts],
        "epochs_run": [f.state["epoch"] + 1 for f in firsts],
        "seconds": round(time.perf_counter() - t0, 1),
        "images_per_second": round(float(np.mean([f.images_per_second for f in firsts])), 1),
    }


def _refit(
    model_name: str,
    data: SceneData,
    seeds: Sequence[Recipe],
    images: Sequence[np.ndarray],
    best_epochs: Sequence[int],
) -> _Fitted:
    """The seed ensemble trained on the whole training side for ``best_epochs + 1``."""
    side = training_side(data.columns)
    return _ensemble(
        [
            _fit(model_name, data, ri, images, side, epochs=e + 1, early_stopping=False)
            for ri, e in zip(seeds, best_epochs, strict=True)
        ]
    )


def train_in_memory(
    model_name: str,
    data: SceneData,
    recipe: Recipe | None = None,
    *,
    extra_images: Sequence[np.ndarray] = (),
    best_epochs: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Train a registered model on the training columns; early-stop on val; score test.

    With ``recipe.refit`` the model is then trained again from scratch on the whole
    training side (training block, buffer and validation block: :func:`training_side`)
    for the best epoch count found, and that model is scored on the test columns; the
    early-stopped model's test score is kept as ``test_before_refit``.

    Args:
        model_name: Model plugin (a temporal model takes a ``(T, C, H, W)`` image).
        data: Image, labels and columns.
        recipe: Training settings (default :class:`Recipe`).
        extra_images: More images of the same place and labels (e.g. other dates of a
            tile), drawn as training crops alongside ``data.image`` (augmentation); only
            their training columns are read.
        best_epochs: The early-stopped best epoch of each seed, found before by
            :func:`validate_in_memory` with the same recipe (training is deterministic,
            so the early-stopping phase would find them again): skips that phase and
            only refits (``recipe.refit`` must be set); no ``validation`` or
            ``test_before_refit`` in the result.

    Returns:
        Test metrics (:meth:`ConfusionMatrix.compute`) with ``validation``,
        ``best_epoch``, ``epochs_run``, ``history``, ``seconds`` and ``parameters``.

    Raises:
        UserError: ``best_epochs`` without ``recipe.refit`` or not one per seed.
    """
    r = recipe or Recipe()
    images = [data.image, *extra_images]
    t0 = time.perf_counter()
    if best_epochs is not None:
        if not r.refit or len(best_epochs) != r.seeds:
            raise UserError(
                f"best_epochs={list(best_epochs)} needs recipe.refit and one epoch per seed "
                f"(seeds={r.seeds}); pass the best_epochs of a validate_in_memory run"
            )
        seeds = [replace(r, seed=r.seed + i) for i in range(r.seeds)]
        final = _refit(model_name, data, seeds, images, best_epochs)
        metrics = _score(final, data, "test", r, tta=r.flip_tta)
        metrics.update(
            best_epoch=best_epochs[0],
            best_epochs=list(best_epochs),
            seconds=round(time.perf_counter() - t0, 1),
            images_per_second=final.images_per_second,
            parameters=sum(p.numel() for p in final.model.parameters()),
            seeds=r.seeds,
        )
        return metrics
    seeds, firsts, validation = _early_stopped(model_name, data, r, images)
    first = _ensemble(firsts)
    state = firsts[0].state
    metrics = _score(first, data, "test", r, tta=r.flip_tta)
    final = first
    if r.refit:
        before = {k: metrics[k] for k in ("miou", "macro_dice", "overall_accuracy")}
        final = _refit(model_name, data, seeds, images, [f.state["best_epoch"] for f in firsts])
        metrics = _score(final, data, "test", r, tta=r.flip_tta)
        metrics["test_before_refit"] = before
    metrics.update(
        validation={k: validation[k] for k in ("miou", "macro_dice")},
        best_epoch=state["best_epoch"],
        best_epochs=[f.state["best_epoch"] for f in firsts],
        epochs_run=state["epoch"] + 1,
        history=state["history"],
        seconds=round(time.perf_counter() - t0, 1),
        images_per_second=first.images_per_second,
        parameters=sum(p.numel() for p in final.model.parameters()),
        seeds=r.seeds,
    )
    return metrics


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
