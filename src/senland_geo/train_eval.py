"""Evaluation of a model on whole areas: tiled prediction and a confusion matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from senland_geo.classes import ClassTable
from senland_geo.metrics import ConfusionMatrix
from senland_geo.train_config import Box


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


class FlipAverage(nn.Module):
    """Test-time augmentation: mean softmax over the four flips of the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return averaged class probabilities ``(B, K, H, W)``."""
        total = 0
        for dims in ((), (-1,), (-2,), (-2, -1)):
            xi = x.flip(dims) if dims else x
            out = self.model(xi)
            out = out[0] if isinstance(out, list | tuple) else out
            prob = out.float().softmax(1)
            total = total + (prob.flip(dims) if dims else prob)
        return total / 4


def label_counts(dataset: Any, boxes: Sequence[Box], num_classes: int) -> np.ndarray:
    """Valid labelled pixels of each class inside ``boxes`` of a labelled GeoDataset."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for minx, miny, maxx, maxy in boxes:
        sample = dataset[slice(minx, maxx), slice(miny, maxy), dataset.bounds[2]]
        mask = sample["mask"][sample["valid"]]
        mask = mask[(mask >= 0) & (mask < num_classes)]
        counts += np.bincount(mask.numpy().ravel(), minlength=num_classes)
    return counts


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
    flips: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix over whole boxes of a GeoDataset (each pixel counted once).

    With ``flips`` each tile is predicted as the mean softmax of its four flips
    (:class:`FlipAverage`).
    """
    device = device or torch.device("cpu")
    model = FlipAverage(model) if flips else model
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
    normalize: nn.Module,
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
