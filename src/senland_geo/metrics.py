"""Segmentation metrics from a confusion matrix: per-class IoU, Dice, OA, mIoU."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from senland_geo.classes import IGNORE_INDEX, ClassTable


class ConfusionMatrix:
    """Accumulates a K x K confusion matrix (rows: truth, columns: prediction).

    Pixels whose truth is :data:`IGNORE_INDEX` (unlabelled) or that are marked invalid
    are not counted.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(
        self, pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor | None = None
    ) -> None:
        """Add a batch of predicted and true class indices (same shape)."""
        keep = truth != IGNORE_INDEX
        if valid is not None:
            keep &= valid.bool()
        k = self.num_classes
        idx = truth[keep].long() * k + pred[keep].long()
        self.matrix += torch.bincount(idx.cpu(), minlength=k * k).reshape(k, k).numpy()

    def compute(self, classes: ClassTable | None = None) -> dict[str, Any]:
        """Return metrics; mean IoU/Dice average the classes present in truth or prediction."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        truth = m.sum(1)
        pred = m.sum(0)
        union = truth + pred - tp
        present = union > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(present, tp / union, np.nan)
            dice = np.where(present, 2 * tp / (truth + pred), np.nan)
        total = m.sum()
        names = classes.names if classes is not None else [str(i) for i in range(len(tp))]
        codes = classes.codes if classes is not None else list(range(len(tp)))
        per_class = [
            {
                "code": int(codes[i]),
                "name": names[i],
                "iou": None if np.isnan(iou[i]) else float(iou[i]),
                "dice": None if np.isnan(dice[i]) else float(dice[i]),
                "support": int(truth[i]),
            }
            for i in range(len(tp))
        ]
        return {
            "overall_accuracy": float(tp.sum() / total) if total else float("nan"),
            "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
            "macro_dice": float(np.nanmean(dice)) if present.any() else float("nan"),
            "pixels": int(total),
            "per_class": per_class,
            "confusion": self.matrix.tolist(),
        }


def format_metrics(metrics: dict[str, Any]) -> str:
    """Render metrics as a small text table (classes with support or predictions)."""
    lines = [f"{'class':<28} {'IoU':>6} {'Dice':>6} {'pixels':>9}"]
    for c in metrics["per_class"]:
        if c["iou"] is None:
            continue
        lines.append(
            f"{c['code']:>3} {c['name']:<24} {c['iou']:6.3f} {c['dice']:6.3f} {c['support']:9d}"
        )
    lines.append(
        f"mIoU {metrics['miou']:.3f}   macro Dice {metrics['macro_dice']:.3f}   "
        f"overall accuracy {metrics['overall_accuracy']:.3f}"
    )
    return "\n".join(lines)
