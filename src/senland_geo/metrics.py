"""Segmentation metrics from a confusion matrix: per-class IoU, Dice, OA, mIoU.

The confusion matrix is accumulated with ``torch.bincount`` (one pass, exact integers);
``tests/test_metrics.py`` cross-checks every figure against torchmetrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
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


SUMMARY_KEYS = ("miou", "macro_dice", "overall_accuracy")


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": float(np.mean(vals)),
        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        "n": len(vals),
    }


def summarize_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std per metric over runs (k-fold folds, seeds).

    Args:
        runs: Metric dicts from :meth:`ConfusionMatrix.compute`.

    Returns:
        ``summary``: ``{metric: {mean, std, n}}`` for mIoU, macro Dice, OA and per-class
        IoU/Dice; ``mean_metrics``: a metrics-shaped dict of the means (for printing).
    """
    summary: dict[str, Any] = {k: _mean_std([r.get(k) for r in runs]) for k in SUMMARY_KEYS}
    per_class = []
    for i, first in enumerate(runs[0]["per_class"]):
        iou = _mean_std([r["per_class"][i]["iou"] for r in runs])
        dice = _mean_std([r["per_class"][i]["dice"] for r in runs])
        per_class.append(
            {
                "code": first["code"],
                "name": first["name"],
                "iou": iou["mean"],
                "iou_std": iou["std"],
                "dice": dice["mean"],
                "dice_std": dice["std"],
                "support": int(sum(r["per_class"][i]["support"] for r in runs)),
            }
        )
    summary["per_class"] = per_class
    mean_metrics = {k: summary[k]["mean"] for k in SUMMARY_KEYS}
    mean_metrics["per_class"] = per_class
    mean_metrics["pixels"] = int(sum(r.get("pixels", 0) for r in runs))
    return {"summary": summary, "mean_metrics": mean_metrics}


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write a run's metrics as JSON (NaN written as null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    path = Path(path)
    path.write_text(json.dumps(clean(metrics), indent=1, default=str))
    return path


def format_summary(metrics: dict[str, Any]) -> str:
    """One line per metric ``mean ± std`` of a cross-validation (empty if none)."""
    cv = metrics.get("cross_validation")
    if not cv:
        return ""
    lines = [f"{cv['folds']}-fold cross-validation (test holdout), mean ± std:"]
    for key in SUMMARY_KEYS:
        s = cv["test"][key]
        if s["mean"] is not None:
            lines.append(f"  {key:<18} {s['mean']:.3f} ± {s['std']:.3f}")
    return "\n".join(lines)


def format_metrics(metrics: dict[str, Any]) -> str:
    """Render metrics as a small text table (classes with support or predictions)."""
    lines = [f"{'class':<28} {'IoU':>6} {'Dice':>6} {'pixels':>9}"]
    for c in metrics["per_class"]:
        if c["iou"] is None or c.get("dice") is None:
            continue
        lines.append(
            f"{c['code']:>3} {c['name']:<24} {c['iou']:6.3f} {c['dice']:6.3f} {c['support']:9d}"
        )
    lines.append(
        f"mIoU {metrics['miou']:.3f}   macro Dice {metrics['macro_dice']:.3f}   "
        f"overall accuracy {metrics['overall_accuracy']:.3f}"
    )
    return "\n".join(lines)
