"""Training-run settings (:class:`TrainConfig`) and the seeds derived from them."""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

#: A ``(minx, miny, maxx, maxy)`` box in the cube CRS.
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
        class_weight_power: Cross-entropy class weights ``frequency ** -power`` from the
            training boxes' label counts (mean 1 over the classes present); 0 (default)
            leaves the loss unweighted. 0.5 helped rare classes on the real holdouts
            (``benchmarks/eval_real_data.py``).
        test_flips: Score the test block with the mean softmax over the four flips of
            each tile (flip test-time augmentation, 4x the prediction cost).
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
    class_weight_power: float = 0.0
    test_flips: bool = False
    tf32: bool = False
    resume: bool = True
    plots: bool = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's sampling and augmentation (independent of resumption)."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**62


def copy_config(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with some fields changed."""
    data = copy.deepcopy(asdict(config))
    data.update(changes)
    return TrainConfig(**data)
