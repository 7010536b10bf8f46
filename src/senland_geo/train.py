"""Training on a cube with a spatial holdout: CE + Dice loss, AdamW, cosine LR schedule.

The loop is plain PyTorch (the whole step is a few lines, and it keeps the backend's
autocast and thread settings explicit). Normalisation statistics come from the training
area only and are stored in the checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import kornia.augmentation as K
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler
from tqdm.auto import tqdm

from senland_geo import __version__, registry, store
from senland_geo.backends import get_backend
from senland_geo.checkpoint import save_checkpoint
from senland_geo.classes import IGNORE_INDEX, TABLES, ClassTable
from senland_geo.datasets import CubeDataset, CubeLabelDataset, collate_patches
from senland_geo.errors import UserError
from senland_geo.metrics import ConfusionMatrix
from senland_geo.splits import holdout_split


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint).

    Attributes:
        model: Model plugin name.
        model_options: Extra builder options.
        epochs: Passes over ``patches_per_epoch`` random training patches.
        patches_per_epoch: Random patches drawn per epoch.
        batch_size: Patches per optimisation step.
        patch_size: Patch side in pixels.
        lr: Peak AdamW learning rate (cosine decay to 1% of it).
        weight_decay: AdamW weight decay.
        holdout_side: Side of the scene held out for evaluation.
        holdout_fraction: Share of the scene held out.
        buffer_px: Gap between training and holdout areas.
        eval_tile: Tile size for holdout evaluation.
        seed: Seed for sampling, initialisation and augmentation.
        num_workers: DataLoader worker processes.
        backend: Backend plugin name (None: chosen from the hardware).
        precision: ``fp32`` or ``bf16`` (cpu), also ``fp16`` (cuda).
        threads: CPU threads (None: physical cores).
        half_checkpoint: Store weights in fp16 (half the size).
    """

    model: str = "unet-resnet34"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    patches_per_epoch: int = 512
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    holdout_side: str = "east"
    holdout_fraction: float = 1 / 3
    buffer_px: int = 16
    eval_tile: int = 128
    seed: int = 0
    num_workers: int = 0
    backend: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    half_checkpoint: bool = False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def band_statistics(cube_path: str | Path, roi_bounds: tuple[float, ...]) -> dict[str, list]:
    """Per-band mean and std of observed pixels inside ``roi_bounds`` (streamed with dask)."""
    ds = store.open_cube(cube_path)
    minx, miny, maxx, maxy = roi_bounds
    area = ds["reflectance"].sel(x=slice(minx, maxx), y=slice(maxy, miny))
    observed = (area != 0).any("band")
    values = area.astype("float64").where(observed)
    mean = values.mean(("time", "y", "x")).compute()
    std = values.std(("time", "y", "x")).compute()
    return {
        "bands": store.band_names(ds),
        "mean": [float(v) for v in mean.values],
        "std": [float(max(v, 1e-6)) for v in std.values],
    }


class Normalize(nn.Module):
    """Per-channel z-score with fixed statistics (works on (B,C,H,W) and (B,T,C,H,W))."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` along its channel axis (dim -3)."""
        shape = [1] * x.dim()
        shape[-3] = -1
        return (x - self.mean.view(shape)) / self.std.view(shape)


class SegmentationLoss(nn.Module):
    """Cross-entropy + Dice, both ignoring unlabelled pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.dice = smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return CE + Dice of ``logits`` (B,K,H,W) against ``target`` (B,H,W)."""
        if (target != IGNORE_INDEX).sum() == 0:
            return logits.sum() * 0.0
        return self.ce(logits, target) + self.dice(logits, target)


def _augment(seed: int) -> K.AugmentationSequential:
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
        K.RandomRotation90(times=(0, 3)),
        data_keys=["input", "mask"],
    )


def evaluate(
    model: nn.Module,
    dataset: Any,
    roi: Any,
    classes: ClassTable,
    normalize: Normalize,
    *,
    tile: int = 128,
    batch_size: int = 8,
    device: torch.device | None = None,
    autocast: Any = None,
) -> dict[str, Any]:
    """Compute metrics over a region of interest with non-overlapping tiles."""
    import contextlib

    device = device or torch.device("cpu")
    sampler = GridGeoSampler(dataset, size=tile, stride=tile, roi=roi)
    loader = DataLoader(dataset, sampler=sampler, batch_size=batch_size, collate_fn=collate_patches)
    cm = ConfusionMatrix(len(classes))
    model.eval()
    with torch.inference_mode(), autocast or contextlib.nullcontext():
        for batch in loader:
            logits = model(normalize(batch["image"].to(device)))
            cm.update(logits.argmax(1).cpu(), batch["mask"], batch["valid"])
    return cm.compute(classes)


def train(
    cube_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a model on a cube with a spatial holdout and write a checkpoint.

    Args:
        cube_path: A cube store with ``labels`` (``senland-geo cube``).
        out_dir: Folder for ``checkpoint.pt``, ``metrics.json``, ``history.json``,
            ``split.json`` (created if missing).
        config: Run settings.
        progress: Show a progress bar.

    Returns:
        The holdout metrics (also written to ``metrics.json``).
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    backend = get_backend(
        config.backend,
        precision=config.precision,
        **({"threads": config.threads} if config.backend in (None, "cpu") else {}),
    )
    backend.setup()
    device = backend.device

    ds_store = store.open_cube(cube_path)
    table_name = ds_store.attrs.get("class_table", "esa-worldcover")
    classes = TABLES[table_name]
    images = CubeDataset(cube_path)
    dataset = images & CubeLabelDataset(cube_path, classes)
    split = holdout_split(
        images.grid["bounds"],
        images.grid["res"],
        side=config.holdout_side,
        fraction=config.holdout_fraction,
        buffer_px=config.buffer_px,
    )
    split.save(out / "split.json")
    stats = band_statistics(cube_path, split.train[0])
    normalize = Normalize(stats["mean"], stats["std"]).to(device)

    builder = registry.load("models", config.model)
    model = builder(
        in_channels=len(images.bands), num_classes=len(classes), **config.model_options
    ).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, config.patches_per_epoch // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    loss_fn = SegmentationLoss()
    augment = _augment(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = RandomGeoSampler(
        dataset,
        size=config.patch_size,
        length=steps_per_epoch * config.batch_size,
        roi=split.train_roi(),
        generator=generator,
    )
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=config.batch_size,
        collate_fn=collate_patches,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    images_seen = 0
    bar = tqdm(range(config.epochs), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        losses = []
        for batch in loader:
            x = normalize(batch["image"].to(device))
            y = batch["mask"].to(device)
            y = torch.where(batch["valid"].to(device), y, IGNORE_INDEX)
            x, y = augment(x, y.unsqueeze(1).float())
            y = y.squeeze(1).long()
            with backend.autocast():
                logits = model(x)
                if isinstance(logits, list | tuple):
                    loss = sum(loss_fn(lg.float(), y) for lg in logits) / len(logits)
                else:
                    loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"loss became {loss.item()} at epoch {epoch} step {len(losses)} "
                    f"with precision {config.precision}; lower the learning rate or use fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            images_seen += x.shape[0]
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    train_seconds = time.perf_counter() - start

    metrics = evaluate(
        model,
        dataset,
        split.test_roi(),
        classes,
        normalize,
        tile=config.eval_tile,
        device=device,
        autocast=backend.autocast(),
    )
    hardware = backend.describe()
    metrics.update(
        {
            "split": split.description,
            "train_seconds": round(train_seconds, 1),
            "train_images_per_second": round(images_seen / train_seconds, 1),
            "hardware": hardware,
        }
    )
    meta = {
        "model": config.model,
        "model_options": config.model_options,
        "bands": images.bands,
        "normalization": {"mean": stats["mean"], "std": stats["std"]},
        "classes": classes.to_dict(),
        "patch_size": config.patch_size,
        "temporal": bool(getattr(model, "temporal", False)),
        "config": asdict(config),
        "holdout_metrics": {k: metrics[k] for k in ("miou", "macro_dice", "overall_accuracy")},
        "hardware": hardware,
        "software": f"senland-geo {__version__}",
        "cube": str(cube_path),
    }
    model.to("cpu")
    save_checkpoint(out / "checkpoint.pt", model, meta, half=config.half_checkpoint)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def check_cube_has_labels(cube_path: str | Path) -> None:
    """Raise a UserError when a cube store has no labels to train on."""
    ds = store.open_cube(cube_path)
    if "labels" not in ds:
        raise UserError(
            f"cube {cube_path} has no labels; build it for a region with a label source"
        )
