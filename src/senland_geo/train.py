"""Training engine facade: CE + Dice, AdamW, one-cycle LR, early stopping, k-fold, AMP.

Data flow of one run (:func:`train`)::

    cube -> spatial split: test block (holdout side) | buffer | validation block | buffer | train
         -> z-score statistics streamed from the training boxes only (ChannelStats)
         -> Engine.fit: per epoch random patches from the training boxes, moved to the
            device, flipped/rotated there as a batch, AdamW + one-cycle LR, NaN guard,
            validation macro Dice -> early stopping
         -> best-validation weights evaluated on the test block -> metrics.json, plots,
            checkpoint.pt (loads with ``weights_only=True``)

Resumption: after each epoch ``state.pt`` holds model, optimizer, scheduler, grad-scaler,
early-stopping counters and the best weights. A killed run started again with the same
config continues after the last finished epoch and ends with the same weights as an
uninterrupted run.

The code lives in modules with one job each; this module re-exports their public names:

=====================  ==========================================================
``train_config``       :class:`TrainConfig`, :func:`copy_config`, seeds
``train_loss``         :class:`SegmentationLoss`
``train_folds``        :func:`validation_split`, :func:`blocked_folds`
``train_sampling``     :class:`BoxSampler`, :class:`ShardedBatchSampler`
``train_eval``         :func:`predict_array`, :func:`evaluate_boxes`, :func:`evaluate`
``train_engine``       :class:`Engine`, :class:`NonFiniteLossError`
``train_run``          :func:`train`, :func:`train_on_split`, :func:`cross_validate`
``normalization``      :class:`Normalize` (z-score), ``channel_stats``
``augment``            :class:`~senland_geo.augment.FlipRotate` (:func:`flip_rotate`)
=====================  ==========================================================
"""

from __future__ import annotations

import torch

from senland_geo.augment import FlipRotate
from senland_geo.normalization import Normalize
from senland_geo.train_config import Box, TrainConfig, copy_config, epoch_seed, seed_everything
from senland_geo.train_engine import Engine, NonFiniteLossError
from senland_geo.train_eval import evaluate, evaluate_boxes, predict_array
from senland_geo.train_folds import blocked_folds, validation_split
from senland_geo.train_loss import SegmentationLoss
from senland_geo.train_run import (
    check_cube_has_labels,
    cross_validate,
    device_batch,
    train,
    train_on_split,
)
from senland_geo.train_sampling import BoxSampler, ShardedBatchSampler

__all__ = [
    "Box",
    "BoxSampler",
    "Engine",
    "NonFiniteLossError",
    "Normalize",
    "SegmentationLoss",
    "ShardedBatchSampler",
    "TrainConfig",
    "blocked_folds",
    "check_cube_has_labels",
    "copy_config",
    "cross_validate",
    "device_batch",
    "epoch_seed",
    "evaluate",
    "evaluate_boxes",
    "flip_rotate",
    "predict_array",
    "seed_everything",
    "train",
    "train_on_split",
    "validation_split",
]


def flip_rotate(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations of a batch, one D4 draw per sample.

    Kept for callers of the old per-sample loop; it is :class:`FlipRotate` drawing from
    the global torch RNG. Works on ``(B, C, H, W)`` and ``(B, T, C, H, W)`` images with
    ``(B, H, W)`` masks, on any device.
    """
    return FlipRotate()(x, y)
