"""The segmentation loss: cross-entropy + Dice, ignoring unlabelled pixels."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn as nn

from senland_geo.classes import IGNORE_INDEX


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
