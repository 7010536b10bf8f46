"""Training engine: CE + Dice, AdamW, one-cycle LR, early stopping, k-fold, resume, AMP.

Data flow of one run (:func:`train`)::

    cube -> spatial split: test block (holdout side) | buffer | validation block | buffer | train
         -> z-score statistics from the training boxes only
         -> Engine.fit: per epoch random patches from the training boxes, flips/rotations,
            AdamW + one-cycle LR, NaN guard, validation macro Dice -> early stopping
         -> best-validation weights evaluated on the test block -> metrics.json, plots,
            checkpoint.pt (loads with ``weights_only=True``)

The loop is hand-written PyTorch, not Lightning: on the same step the two ran at the same
speed within noise (see ``benchmarks`` in the project notes), but the hand loop keeps the
checkpoint a plain ``weights_only`` file, makes resumption bit-exact (every epoch draws its
patches and augmentations from generators seeded by ``(seed, epoch)``), and keeps the
backend's autocast/thread settings explicit for the JAX parity benchmark.

Resumption: after each epoch ``state.pt`` holds model, optimizer, scheduler, grad-scaler,
early-stopping counters and the best weights. A killed run started again with the same
config continues after the last finished epoch and ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from senland_geo import __version__, registry, store
from senland_geo.backends import get_backend
from senland_geo.checkpoint import load_training_state, save_checkpoint, save_training_state
from senland_geo.classes import IGNORE_INDEX, TABLES, ClassTable
from senland_geo.datasets import CubeDataset, CubeLabelDataset, collate_patches
from senland_geo.errors import UserError
from senland_geo.metrics import ConfusionMatrix, summarize_runs, write_metrics
from senland_geo.splits import Split, holdout_split

Box = tuple[float, float, float, float]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint).

    Attributes:
        model: Model plugin name.
        model_options: Extra builder options.
        epochs: Maximum passes over ``patches_per_epoch`` random training patches.
        patches_per_epoch: Random patches drawn per epoch.
        batch_size: Patches per optimisation step (the global batch under DDP).
        patch_size: Patch side in pixels.
        lr: Peak AdamW learning rate (one-cycle: warm-up 10%, cosine decay).
        weight_decay: AdamW weight decay.
        holdout_side: Side of the scene held out for the test.
        holdout_fraction: Share of the scene held out for the test.
        buffer_px: Gap between training, validation and test areas.
        eval_tile: Tile size for validation/test evaluation.
        seed: Seed for sampling, initialisation and augmentation.
        num_workers: DataLoader worker processes.
        backend: Backend plugin name (None: chosen from the hardware).
        precision: ``fp32`` or ``bf16`` (cpu), also ``fp16`` (cuda, with gradient scaling).
        threads: CPU threads (None: physical cores).
        half_checkpoint: Store weights in fp16 (half the size).
        val_fraction: Share of the training side carved out as the validation block.
        patience: Epochs without validation-Dice improvement before stopping (seed: 20).
        min_delta: Improvement in validation macro Dice that counts.
        folds: ``k > 1`` runs blocked k-fold cross-validation over the training side.
        augment: Random flips and 90-degree rotations of training patches.
        tf32: Allow TF32 on CUDA (ignored on CPU).
        resume: Continue from ``state.pt`` in the run folder when it exists.
        plots: Write figures into ``plots/``.
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
    val_fraction: float = 0.2
    patience: int = 20
    min_delta: float = 0.0
    folds: int = 1
    augment: bool = True
    tf32: bool = False
    resume: bool = True
    plots: bool = True


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (the message names the step and precision)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's sampling and augmentation (independent of resumption)."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**62


def band_statistics(cube_path: str | Path, roi_bounds: tuple[float, ...]) -> dict[str, list]:
    """Per-band mean and std of observed pixels inside ``roi_bounds`` (streamed with dask)."""
    return pooled_band_statistics(cube_path, [tuple(roi_bounds)])  # type: ignore[list-item]


def pooled_band_statistics(cube_path: str | Path, boxes: Sequence[Box]) -> dict[str, list]:
    """Per-band mean and std of observed pixels pooled over several boxes.

    Args:
        cube_path: The cube store.
        boxes: ``(minx, miny, maxx, maxy)`` boxes in the cube CRS (the training area).

    Returns:
        ``bands``, ``mean`` and ``std`` (std floored at 1e-6).
    """
    ds = store.open_cube(cube_path)
    n = s1 = s2 = None
    for minx, miny, maxx, maxy in boxes:
        area = ds["reflectance"].sel(x=slice(minx, maxx), y=slice(maxy, miny))
        observed = (area != 0).any("band")
        values = area.astype("float64").where(observed)
        dims = ("time", "y", "x")
        count = values.notnull().sum(dims).compute().values
        total = values.sum(dims).compute().values
        squares = (values**2).sum(dims).compute().values
        n, s1, s2 = (count, total, squares) if n is None else (n + count, s1 + total, s2 + squares)
    mean = s1 / np.maximum(n, 1)
    var = np.maximum(s2 / np.maximum(n, 1) - mean**2, 0) * n / np.maximum(n - 1, 1)
    return {
        "bands": store.band_names(ds),
        "mean": [float(v) for v in mean],
        "std": [float(max(math.sqrt(v), 1e-6)) for v in var],
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
    """Cross-entropy + Dice, both ignoring unlabelled pixels.

    Args:
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term (0 gives plain CE, which is additive over
            equal-size shards of a batch, as DDP needs for exact equivalence).
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ce = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.dice = smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return CE + Dice of ``logits`` (B,K,H,W) against ``target`` (B,H,W)."""
        if (target != IGNORE_INDEX).sum() == 0:
            return logits.sum() * 0.0
        loss = self.ce_weight * self.ce(logits, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        return loss


def flip_rotate(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, one draw per sample (global torch RNG).

    Works on ``(B, C, H, W)`` and ``(B, T, C, H, W)`` images with ``(B, H, W)`` masks.
    """
    draws = torch.randint(0, 2, (x.shape[0], 2)).tolist()
    turns = torch.randint(0, 4, (x.shape[0],)).tolist()
    xs, ys = [], []
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        if draws[i][0]:
            xi, yi = xi.flip(-1), yi.flip(-1)
        if draws[i][1]:
            xi, yi = xi.flip(-2), yi.flip(-2)
        if turns[i]:
            xi, yi = xi.rot90(turns[i], (-2, -1)), yi.rot90(turns[i], (-2, -1))
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


# --- spatial splits with a validation block ---------------------------------------------


def validation_split(
    bounds: Sequence[float],
    res: float,
    *,
    side: str = "east",
    holdout_fraction: float = 1 / 3,
    val_fraction: float = 0.2,
    buffer_px: int = 16,
) -> tuple[Split, Split]:
    """Test block on ``side``, then a validation block carved from the training side.

    Layout (side east): ``train | buffer | validation | buffer | test``.

    Returns:
        ``(outer, inner)``: ``outer`` is training side vs test block; ``inner`` is the
        training boxes (``train``) vs the validation block (``test``).
    """
    outer = holdout_split(
        tuple(bounds), res, side=side, fraction=holdout_fraction, buffer_px=buffer_px
    )
    inner = holdout_split(
        outer.train[0], res, side=side, fraction=val_fraction, buffer_px=buffer_px
    )
    inner = Split(
        inner.train, inner.test, f"validation: {side} {val_fraction:.3f} of the training side"
    )
    return outer, inner


def blocked_folds(train_box: Box, res: float, k: int, *, buffer_px: int = 16) -> list[Split]:
    """Blocked k-fold over a training box: k strips across its longer side.

    Fold ``i`` validates on strip ``i``; its training boxes are the other strips minus a
    ``buffer_px`` gap on each side of the validation strip.

    Raises:
        UserError: ``k < 2`` or strips too narrow for the buffer.
    """
    if k < 2:
        raise UserError(f"k-fold needs folds >= 2, got {k}")
    minx, miny, maxx, maxy = train_box
    along_x = (maxx - minx) >= (maxy - miny)
    lo, hi = (minx, maxx) if along_x else (miny, maxy)
    width = round((hi - lo) / res / k) * res
    buf = buffer_px * res
    if width <= 2 * buf:
        raise UserError(
            f"{k} folds give {width / res:.0f} px strips, too narrow for a {buffer_px} px "
            "buffer; use fewer folds or a smaller buffer"
        )
    folds = []
    for i in range(k):
        a = lo + i * width
        b = hi if i == k - 1 else a + width
        parts = [(lo, a - buf), (b + buf, hi)]
        parts = [(p, q) for p, q in parts if q - p > 0]

        def box(p: float, q: float) -> Box:
            return (p, miny, q, maxy) if along_x else (minx, p, maxx, q)

        split = Split(
            tuple(box(p, q) for p, q in parts),
            (box(a, b),),
            f"blocked fold {i + 1}/{k}, {buffer_px} px buffer",
        )
        split.check_no_leakage()
        folds.append(split)
    return folds


class BoxSampler(Sampler):
    """Random pixel-aligned patches fully inside one of several boxes (area-weighted).

    TorchGeo's ``RandomGeoSampler`` uses the bounding box of a multi-part ROI, which would
    sample the validation strip between two training boxes; this samples each box alone.

    Args:
        dataset: The GeoDataset (for its time bounds).
        size: Patch side in pixels.
        length: Patches per iteration.
        boxes: Allowed boxes ``(minx, miny, maxx, maxy)``.
        res: Pixel size.
        generator: Source of randomness (re-seed it to reproduce an epoch).
    """

    def __init__(
        self,
        dataset: Any,
        size: int,
        length: int,
        boxes: Sequence[Box],
        res: float,
        generator: torch.Generator,
    ) -> None:
        self.t = dataset.bounds[2]
        self.size = size * res
        self.res = res
        self.length = length
        self.boxes = [b for b in boxes if b[2] - b[0] >= self.size and b[3] - b[1] >= self.size]
        if not self.boxes:
            raise UserError(f"no training box is large enough for {size} px patches: {boxes}")
        self.areas = torch.tensor(
            [float((b[2] - b[0]) * (b[3] - b[1])) for b in self.boxes], dtype=torch.float64
        )
        self.generator = generator

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        for _ in range(self.length):
            i = int(torch.multinomial(self.areas, 1, generator=self.generator))
            minx, miny, maxx, maxy = self.boxes[i]
            nx = int(round((maxx - minx - self.size) / self.res)) + 1
            ny = int(round((maxy - miny - self.size) / self.res)) + 1
            x0 = minx + int(torch.randint(nx, (1,), generator=self.generator)) * self.res
            y0 = miny + int(torch.randint(ny, (1,), generator=self.generator)) * self.res
            yield slice(x0, x0 + self.size), slice(y0, y0 + self.size), self.t


class ShardedBatchSampler(Sampler):
    """Split each global batch of a sampler between DDP ranks (rank ``r`` takes ``r::n``).

    Every rank iterates the same seeded sampler, so together they see exactly the global
    batch a single process would see.
    """

    def __init__(self, sampler: Iterable, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.sampler, self.batch_size = sampler, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        for q in self.sampler:
            batch.append(q)
            if len(batch) == self.batch_size:
                yield batch[self.rank :: self.world_size]
                batch = []


# --- evaluation --------------------------------------------------------------------------


def _tiles(rows: int, cols: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    for r in range(0, rows, tile):
        for c in range(0, cols, tile):
            yield r, min(r + tile, rows), c, min(c + tile, cols)


def predict_array(
    model: nn.Module,
    image: torch.Tensor,
    *,
    tile: int = 128,
    multiple: int = 32,
    autocast: Any = None,
) -> torch.Tensor:
    """Class indices for a whole ``(C, H, W)`` or ``(T, C, H, W)`` normalised image.

    Non-overlapping tiles, each reflect-padded to a multiple of ``multiple`` and cropped
    back, so every pixel is predicted once.
    """
    model.eval()
    rows, cols = image.shape[-2:]
    out = torch.empty((rows, cols), dtype=torch.long)
    with torch.inference_mode():
        for r0, r1, c0, c1 in _tiles(rows, cols, tile):
            x = image[..., r0:r1, c0:c1].unsqueeze(0)
            h, w = x.shape[-2:]
            ph, pw = (-h) % multiple, (-w) % multiple
            if ph or pw:
                flat = x.reshape(-1, *x.shape[-3:]) if x.dim() == 5 else x
                mode = "reflect" if ph < h and pw < w else "replicate"
                flat = F.pad(flat, (0, pw, 0, ph), mode=mode)
                x = flat.reshape(*x.shape[:-2], h + ph, w + pw)
            with autocast if autocast is not None else contextlib.nullcontext():
                logits = model(x)
            if isinstance(logits, list | tuple):
                logits = logits[0]
            out[r0:r1, c0:c1] = logits[0, :, :h, :w].float().argmax(0).cpu()
    return out


def evaluate_boxes(
    model: nn.Module,
    dataset: Any,
    boxes: Sequence[Box],
    num_classes: int,
    normalize: nn.Module,
    *,
    tile: int = 128,
    device: torch.device | None = None,
    autocast: Any = None,
) -> ConfusionMatrix:
    """Confusion matrix over whole boxes of a GeoDataset (each pixel counted once)."""
    device = device or torch.device("cpu")
    cm = ConfusionMatrix(num_classes)
    for minx, miny, maxx, maxy in boxes:
        sample = dataset[slice(minx, maxx), slice(miny, maxy), dataset.bounds[2]]
        image = normalize(sample["image"].to(device))
        pred = predict_array(model, image, tile=tile, autocast=autocast)
        cm.update(pred, sample["mask"], sample["valid"])
    return cm


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
    """Metrics over a region of interest (a shapely geometry or a list of boxes)."""
    if hasattr(roi, "geoms"):
        boxes = [g.bounds for g in roi.geoms]
    elif hasattr(roi, "bounds"):
        boxes = [roi.bounds]
    else:
        boxes = list(roi)
    cm = evaluate_boxes(
        model, dataset, boxes, len(classes), normalize, tile=tile, device=device, autocast=autocast
    )
    return cm.compute(classes)


# --- the engine ----------------------------------------------------------------------------


class Engine:
    """Optimisation, early stopping and resumable state for one model.

    Args:
        model: The model (on its device).
        config: Run settings (lr, weight decay, epochs, patience, precision, seed).
        steps_per_epoch: Optimiser steps per epoch (for the LR schedule).
        device: Where batches go.
        autocast: Factory of the autocast context (the backend's ``autocast``).
        loss_fn: Loss (default CE + Dice).
        net: What forward calls (a DDP wrapper of ``model``), default ``model``.
        rank: Process rank (only rank 0 writes files).
        world_size: Number of processes.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        steps_per_epoch: int,
        device: torch.device | None = None,
        autocast: Callable[[], Any] | None = None,
        loss_fn: nn.Module | None = None,
        net: nn.Module | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.model = model
        self.net = net or model
        self.config = config
        self.device = device or torch.device("cpu")
        self.autocast = autocast or contextlib.nullcontext
        self.loss_fn = loss_fn or SegmentationLoss()
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=config.lr,
            total_steps=max(1, config.epochs * steps_per_epoch),
            pct_start=0.1,
        )
        use_scaler = self.device.type == "cuda" and config.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.state: dict[str, Any] = {
            "epoch": -1,
            "step": 0,
            "best_score": -math.inf,
            "best_epoch": -1,
            "bad_epochs": 0,
            "stopped_early": False,
            "history": [],
            "best_val": None,
        }
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.images_seen = 0
        self.train_seconds = 0.0

    # resumable state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue (tensors and plain data only)."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loop": json.loads(json.dumps(self.state, default=float)),
            "best_weights": self.best_weights,
            "config": asdict(self.config),
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (checks the config matches)."""
        saved, now = dict(data["config"]), asdict(self.config)
        for key in ("resume", "plots", "num_workers", "progress"):
            saved.pop(key, None)
            now.pop(key, None)
        if saved != json.loads(json.dumps(now)):
            diff = sorted(k for k in now if saved.get(k) != json.loads(json.dumps(now[k])))
            raise UserError(
                f"the saved training state was made with other settings ({', '.join(diff)}); "
                "use a new run folder or delete state.pt to start afresh"
            )
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.state = data["loop"]
        self.best_weights = data["best_weights"]
        self.images_seen = data.get("images_seen", 0)
        self.train_seconds = data.get("train_seconds", 0.0)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> float:
        """One optimisation step; raises :class:`NonFiniteLossError` on NaN/inf loss."""
        with self.autocast():
            logits = self.net(x)
            if isinstance(logits, list | tuple):  # deep supervision
                loss = sum(self.loss_fn(lg.float(), y) for lg in logits) / len(logits)
            else:
                loss = self.loss_fn(logits.float(), y)
        value = loss.detach()
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(value)  # every rank stops together
            value /= self.world_size
        if not torch.isfinite(value):
            raise NonFiniteLossError(
                f"loss became {value.item()} at step {self.state['step']} (epoch {epoch}) "
                f"with precision {self.config.precision}; lower the learning rate "
                "(--lr) or train in fp32/bf16"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.state["step"] += 1
        self.images_seen += x.shape[0] * self.world_size
        return float(value)

    def fit(
        self,
        batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        validate: Callable[[], dict[str, Any]],
        *,
        state_path: str | Path | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; restore the best-validation weights.

        Args:
            batches: ``batches(epoch)`` yields ``(x, y)`` on the device for that epoch.
            validate: Returns validation metrics with ``macro_dice`` (the score).
            state_path: Save a resumable state here after every epoch (and resume from it
                when it exists and ``config.resume``).
            on_epoch_end: Called with the epoch record (raise to stop, e.g. to prune).
            progress: Show a progress bar.

        Returns:
            The loop state: history, best epoch and score, whether it stopped early.
        """
        cfg = self.config
        if state_path is not None and cfg.resume and Path(state_path).is_file():
            self.load_state_dict(load_training_state(state_path))
        first = self.state["epoch"] + 1
        if self.state["stopped_early"]:
            first = cfg.epochs
        bar = tqdm(range(first, cfg.epochs), desc="train", unit="epoch", disable=not progress)
        for epoch in bar:
            seed = epoch_seed(cfg.seed, epoch)
            torch.manual_seed(seed)
            random.seed(seed)
            self.model.train()
            losses = []
            t0 = time.perf_counter()
            for x, y in batches(epoch):
                losses.append(self.train_step(x, y, epoch))
            self.train_seconds += time.perf_counter() - t0
            val = validate()
            score = float(val["macro_dice"])
            record = {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "lr": float(self.scheduler.get_last_lr()[0]),
                "val_macro_dice": score,
                "val_miou": float(val["miou"]),
                "val_overall_accuracy": float(val["overall_accuracy"]),
            }
            self.state["history"].append(record)
            if score > self.state["best_score"] + cfg.min_delta:
                self.state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
                self.state["best_val"] = json.loads(json.dumps(val, default=float))
                self.best_weights = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
            else:
                self.state["bad_epochs"] += 1
            self.state["epoch"] = epoch
            stop = self.state["bad_epochs"] >= cfg.patience
            self.state["stopped_early"] = bool(stop and epoch < cfg.epochs - 1)
            if state_path is not None and self.rank == 0:
                save_training_state(state_path, self.state_dict())
            if self.world_size > 1:
                import torch.distributed as dist

                dist.barrier()
            bar.set_postfix(loss=f"{record['loss']:.3f}", val_dice=f"{score:.3f}")
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stop:
                break
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return self.state


# --- training on a cube ----------------------------------------------------------------------


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
    probe = CubeDataset(cube_path)
    torch.manual_seed(config.seed)
    model = _build_model(config, len(probe.bands), len(classes))
    temporal = bool(getattr(model, "temporal", False))
    images = CubeDataset(cube_path, time_series=temporal)
    dataset = images & CubeLabelDataset(cube_path, classes)
    split = Split(tuple(train_boxes), tuple(test_boxes), description)
    split.check_no_leakage()
    Split(tuple(train_boxes), tuple(val_boxes)).check_no_leakage()
    Split(tuple(val_boxes), tuple(test_boxes)).check_no_leakage()
    if rank == 0:
        split.save(out / "split.json")
        (out / "validation.json").write_text(json.dumps({"validation": list(val_boxes)}))
    stats = pooled_band_statistics(cube_path, train_boxes)
    normalize = Normalize(stats["mean"], stats["std"]).to(device)
    model = model.to(device)

    net: nn.Module = model
    if world_size > 1:
        from senland_geo.ddp import wrap_model

        net = wrap_model(model, device)
    steps_per_epoch = max(1, config.patches_per_epoch // config.batch_size)
    engine = Engine(
        model,
        config,
        steps_per_epoch=steps_per_epoch,
        device=device,
        autocast=backend.autocast,
        net=net,
        rank=rank,
        world_size=world_size,
    )
    res = images.grid["res"]

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        sampler = BoxSampler(
            dataset,
            config.patch_size,
            steps_per_epoch * config.batch_size,
            train_boxes,
            res,
            generator,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=ShardedBatchSampler(sampler, config.batch_size, rank, world_size),
            collate_fn=collate_patches,
            num_workers=config.num_workers,
        )
        for batch in loader:
            x = normalize(batch["image"].to(device))
            y = batch["mask"].to(device)
            y = torch.where(batch["valid"].to(device), y, IGNORE_INDEX)
            if config.augment:
                x, y = flip_rotate(x, y)
            yield x.contiguous(), y.contiguous()

    def run_eval(boxes: Sequence[Box]) -> dict[str, Any]:
        cm = evaluate_boxes(
            model,
            dataset,
            boxes,
            len(classes),
            normalize,
            tile=config.eval_tile,
            device=device,
            autocast=backend.autocast(),
        )
        return cm.compute(classes)

    state = engine.fit(
        batches,
        lambda: run_eval(val_boxes),
        state_path=out / "state.pt",
        on_epoch_end=on_epoch_end,
        progress=progress and rank == 0,
    )
    metrics = run_eval(test_boxes)
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
        "bands": images.bands,
        "normalization": {"mean": stats["mean"], "std": stats["std"]},
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


def copy_config(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with some fields changed."""
    data = copy.deepcopy(asdict(config))
    data.update(changes)
    return TrainConfig(**data)
