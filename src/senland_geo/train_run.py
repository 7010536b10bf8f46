"""Training on a cube: one split, the default holdout layout, blocked k-fold.

:func:`train_on_split` trains on explicit boxes, :func:`train` on the default layout
(test block, validation block, training area) and :func:`cross_validate` over blocked
k-fold strips.

Per run: per-channel z-score statistics streamed from the training boxes only
(:func:`senland_geo.normalization.channel_stats`, stored in the checkpoint as
:meth:`~senland_geo.normalization.ChannelStats.to_dict`), batches moved to the training
device and then flipped/rotated there as a whole batch
(:class:`senland_geo.augment.FlipRotate`, identical for image, labels and validity
mask), :class:`~senland_geo.train_engine.Engine` for the loop, evaluation of the
best-validation weights on the test boxes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from senland_geo import __version__, registry, store
from senland_geo.augment import FlipRotate
from senland_geo.backends import get_backend
from senland_geo.checkpoint import save_checkpoint
from senland_geo.classes import IGNORE_INDEX, TABLES, ClassTable
from senland_geo.datasets import CubeDataset, LabeledCubeDataset, collate_patches
from senland_geo.errors import UserError
from senland_geo.metrics import summarize_runs, write_metrics
from senland_geo.normalization import Normalize, channel_stats
from senland_geo.splits import Split, holdout_split
from senland_geo.train_config import Box, TrainConfig, epoch_seed, seed_everything
from senland_geo.train_engine import Engine
from senland_geo.train_eval import evaluate_boxes, label_counts
from senland_geo.train_folds import blocked_folds, validation_split
from senland_geo.train_loss import SegmentationLoss, class_weights_from_counts
from senland_geo.train_sampling import BoxSampler, ShardedBatchSampler


def _build_model(config: TrainConfig, in_channels: int, num_classes: int) -> nn.Module:
    builder = registry.load("models", config.model)
    try:
        return builder(in_channels=in_channels, num_classes=num_classes, **config.model_options)
    except TypeError as exc:
        raise UserError(
            f"model {config.model!r} rejected options {config.model_options}: {exc}"
        ) from None


def _setup_backend(config: TrainConfig) -> Any:
    options: dict[str, Any] = {"precision": config.precision}
    if config.backend in (None, "cpu"):
        options["threads"] = config.threads
    if config.backend == "cuda":
        options["tf32"] = config.tf32
    backend = get_backend(config.backend, **options)
    backend.setup()
    if backend.device.type == "cuda":  # TF32 switch applied explicitly
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    return backend


def device_batch(
    batch: dict[str, Any],
    device: torch.device,
    normalize: nn.Module,
    augment: FlipRotate | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a collated batch to ``device``, augment it there as a whole, normalise it.

    Image, labels and validity mask get the same flip/rotation per sample; pixels that are
    invalid (no observation) or unlabelled become :data:`IGNORE_INDEX`.

    Args:
        batch: Output of :func:`senland_geo.datasets.collate_patches` (``image``,
            ``mask``, ``valid``).
        device: The training device.
        normalize: Per-channel z-score (on ``device``).
        augment: Batch flips/rotations, or None.

    Returns:
        ``(x, y)``: normalised images and target indices, contiguous, on ``device``.
    """
    x = batch["image"].to(device, non_blocking=True)
    y = batch["mask"].to(device, non_blocking=True)
    valid = batch["valid"].to(device, non_blocking=True)
    if augment is not None:
        x, y, valid = augment(x, y, valid)
    y = torch.where(valid, y, IGNORE_INDEX)
    return normalize(x).contiguous(), y.contiguous()


def train(
    cube_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Train a model on a cube with a spatial holdout and write a checkpoint.

    Args:
        cube_path: A cube store with ``labels`` (``senland-geo cube``).
        out_dir: Folder for ``checkpoint.pt``, ``metrics.json``, ``history.json``,
            ``split.json``, ``state.pt`` and ``plots/`` (created if missing).
        config: Run settings; ``folds > 1`` runs blocked k-fold cross-validation.
        progress: Show a progress bar.
        on_epoch_end: Called after every epoch with its record (loss, validation Dice).
        rank: DDP rank (see :mod:`senland_geo.ddp`).
        world_size: DDP processes.

    Returns:
        The test-holdout metrics (also written to ``metrics.json``); with k folds the
        means over folds, and ``cross_validation`` with mean and std per metric.
    """
    config = config or TrainConfig()
    if config.folds > 1:
        return cross_validate(cube_path, out_dir, config, progress=progress)
    images = CubeDataset(cube_path)
    outer, inner = validation_split(
        images.grid["bounds"],
        images.grid["res"],
        side=config.holdout_side,
        holdout_fraction=config.holdout_fraction,
        val_fraction=config.val_fraction,
        buffer_px=config.buffer_px,
    )
    return train_on_split(
        cube_path,
        out_dir,
        config,
        train_boxes=inner.train,
        val_boxes=inner.test,
        test_boxes=outer.test,
        description=f"{outer.description}; {inner.description}, {config.buffer_px} px buffer",
        progress=progress,
        on_epoch_end=on_epoch_end,
        rank=rank,
        world_size=world_size,
    )


def train_on_split(
    cube_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    train_boxes: Sequence[Box],
    val_boxes: Sequence[Box],
    test_boxes: Sequence[Box],
    description: str = "",
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Train with explicit train/validation/test boxes (see :func:`train`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    backend = _setup_backend(config)
    device = backend.device

    ds_store = store.open_cube(cube_path)
    classes = TABLES[ds_store.attrs.get("class_table", "esa-worldcover")]
    bands = store.band_names(ds_store)
    torch.manual_seed(config.seed)
    model = _build_model(config, len(bands), len(classes))
    temporal = bool(getattr(model, "temporal", False))
    dataset = LabeledCubeDataset(cube_path, classes, time_series=temporal)
    split = Split(tuple(train_boxes), tuple(test_boxes), description)
    split.check_no_leakage()
    Split(tuple(train_boxes), tuple(val_boxes)).check_no_leakage()
    Split(tuple(val_boxes), tuple(test_boxes)).check_no_leakage()
    if rank == 0:
        split.save(out / "split.json")
        (out / "validation.json").write_text(json.dumps({"validation": list(val_boxes)}))
    stats = channel_stats(cube_path, train_boxes, bands=dataset.bands)
    normalize = Normalize.from_stats(stats).to(device)
    model = model.to(device)
    if hasattr(backend, "limit_bf16_weight_grads"):  # cpu bf16: see backends/conv_wgrad.py
        backend.limit_bf16_weight_grads(model)

    net: nn.Module = model
    if world_size > 1:
        from senland_geo.ddp import wrap_model

        net = wrap_model(model, device)
    steps_per_epoch = max(1, config.patches_per_epoch // config.batch_size)
    weights = None
    if config.class_weight_power:
        counts = label_counts(dataset, train_boxes, len(classes))
        weights = class_weights_from_counts(counts, config.class_weight_power).to(device)
    engine = Engine(
        model,
        config,
        steps_per_epoch=steps_per_epoch,
        device=device,
        autocast=backend.autocast,
        loss_fn=SegmentationLoss(class_weights=weights),
        net=net,
        rank=rank,
        world_size=world_size,
    )
    augment = FlipRotate() if config.augment else None  # global RNG: seeded per epoch

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        sampler = BoxSampler(
            dataset,
            config.patch_size,
            steps_per_epoch * config.batch_size,
            train_boxes,
            dataset.grid["res"],
            generator,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=ShardedBatchSampler(sampler, config.batch_size, rank, world_size),
            collate_fn=collate_patches,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            yield device_batch(batch, device, normalize, augment)

    def run_eval(boxes: Sequence[Box], flips: bool = False) -> dict[str, Any]:
        cm = evaluate_boxes(
            model,
            dataset,
            boxes,
            len(classes),
            normalize,
            tile=config.eval_tile,
            device=device,
            autocast=backend.autocast(),
            flips=flips,
        )
        return cm.compute(classes)

    state = engine.fit(
        batches,
        lambda: run_eval(val_boxes),
        state_path=out / "state.pt",
        on_epoch_end=on_epoch_end,
        progress=progress and rank == 0,
    )
    metrics = run_eval(test_boxes, flips=config.test_flips)
    if weights is not None:  # as the loss holds them
        metrics["class_weights"] = [round(float(w), 4) for w in engine.loss_fn.ce.weight]
    hardware = backend.describe()
    if world_size > 1:
        hardware["processes"] = world_size
    seconds = engine.train_seconds
    metrics.update(
        {
            "split": description,
            "validation": state["best_val"],
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"] + 1,
            "stopped_early": state["stopped_early"],
            "train_seconds": round(seconds, 1),
            "train_images_per_second": round(engine.images_seen / max(seconds, 1e-9), 1),
            "hardware": hardware,
            "config": asdict(config),
        }
    )
    if rank != 0:
        return metrics
    meta = {
        "model": config.model,
        "model_options": config.model_options,
        "bands": dataset.bands,
        "normalization": stats.to_dict(),
        "classes": classes.to_dict(),
        "patch_size": config.patch_size,
        "temporal": temporal,
        "config": asdict(config),
        "holdout_metrics": {k: metrics[k] for k in ("miou", "macro_dice", "overall_accuracy")},
        "hardware": hardware,
        "software": f"senland-geo {__version__}",
        "cube": str(cube_path),
    }
    save_checkpoint(out / "checkpoint.pt", model.to("cpu"), meta, half=config.half_checkpoint)
    model.to(device)
    (out / "history.json").write_text(json.dumps(state["history"], indent=1))
    write_metrics(out / "metrics.json", metrics)
    if config.plots:
        _write_plots(out, state["history"], metrics, classes, hardware)
    return metrics


def _write_plots(
    out: Path,
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    classes: ClassTable,
    hardware: dict[str, Any],
) -> None:
    from senland_geo import plots

    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    plots.learning_curves(history, folder / "learning_curves.png", hardware=hardware)
    plots.per_class_iou(metrics, folder / "per_class_iou.png", hardware=hardware)
    plots.confusion_matrix(metrics, folder / "confusion.png", hardware=hardware)


def cross_validate(
    cube_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Blocked k-fold cross-validation on the training side, tested on the fixed holdout.

    Each fold trains in ``fold-<i>/`` with its strip as validation (early stopping) and is
    tested on the same holdout block. ``metrics.json`` holds every fold, and mean and std
    per metric; ``checkpoint.pt`` is the fold with the best validation Dice.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = CubeDataset(cube_path)
    res = images.grid["res"]
    outer = holdout_split(
        images.grid["bounds"],
        res,
        side=config.holdout_side,
        fraction=config.holdout_fraction,
        buffer_px=config.buffer_px,
    )
    folds = blocked_folds(outer.train[0], res, config.folds, buffer_px=config.buffer_px)
    results = []
    for i, fold in enumerate(folds):
        results.append(
            train_on_split(
                cube_path,
                out / f"fold-{i + 1}",
                config,
                train_boxes=fold.train,
                val_boxes=fold.test,
                test_boxes=outer.test,
                description=f"{outer.description}; {fold.description}",
                progress=progress,
            )
        )
    best = max(range(len(results)), key=lambda i: results[i]["validation"]["macro_dice"])
    shutil.copyfile(out / f"fold-{best + 1}" / "checkpoint.pt", out / "checkpoint.pt")
    outer.save(out / "split.json")
    summary = summarize_runs(results)
    val_summary = summarize_runs([r["validation"] for r in results])
    metrics = {
        **summary["mean_metrics"],
        "cross_validation": {
            "folds": config.folds,
            "test": summary["summary"],
            "validation": val_summary["summary"],
            "best_fold": best + 1,
        },
        "fold_metrics": results,
        "split": outer.description,
        "train_seconds": round(sum(r["train_seconds"] for r in results), 1),
        "train_images_per_second": round(
            float(np.mean([r["train_images_per_second"] for r in results])), 1
        ),
        "hardware": results[0]["hardware"],
    }
    write_metrics(out / "metrics.json", metrics)
    (out / "history.json").write_text(
        json.dumps(json.loads((out / f"fold-{best + 1}" / "history.json").read_text()), indent=1)
    )
    return metrics


def check_cube_has_labels(cube_path: str | Path) -> None:
    """Raise a UserError when a cube store has no labels to train on."""
    ds = store.open_cube(cube_path)
    if "labels" not in ds:
        raise UserError(
            f"cube {cube_path} has no labels; build it for a region with a label source"
        )
