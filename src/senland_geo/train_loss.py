"""The segmentation loss: cross-entropy + Dice, ignoring unlabelled pixels."""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn as nn

from senland_geo.classes import IGNORE_INDEX


def class_weights_from_counts(counts: np.ndarray, power: float) -> torch.Tensor:
    """Per-class weights ``frequency ** -power``, mean 1 over the classes with pixels.

    Classes without pixels get weight 1 (they never occur as targets).

    Raises:
        UserError: ``power`` is negative.
    """
    from senland_geo.errors import UserError

    if power < 0:
        raise UserError(f"class_weight_power={power} must be >= 0 (0: unweighted)")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones(counts.size)
    if present.any():
        w = (counts[present] / counts.sum()) ** -power
        weights[present] = w / w.mean()
    return torch.tensor(weights, dtype=torch.float32)


class SegmentationLoss(nn.Module):
    """Cross-entropy + Dice, both ignoring unlabelled pixels.

    Args:
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term (0 gives plain CE, which is additive over
            equal-size shards of a batch, as DDP needs for exact equivalence).
        class_weights: ``(K,)`` per-class cross-entropy weights
            (:func:`class_weights_from_counts`), default unweighted.
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ce = nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE_INDEX)
        self.dice = smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return CE + Dice of ``logits`` (B,K,H,W) against ``target`` (B,H,W)."""
        if (target != IGNORE_INDEX).sum() == 0:
            return logits.sum() * 0.0
        loss = self.ce_weight * self.ce(logits, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        return loss
