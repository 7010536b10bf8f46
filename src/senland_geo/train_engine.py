"""One model's optimisation loop: AMP, NaN guard, early stopping, resumable state.

The loop is hand-written PyTorch, not Lightning: on the same step the two ran at the same
speed within noise, but the hand loop keeps the checkpoint a plain ``weights_only`` file,
makes resumption bit-exact (every epoch seeds torch and Python from ``(seed, epoch)``), and
keeps the backend's autocast/thread settings explicit for the JAX parity benchmark.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from senland_geo.backends.base import adamw
from senland_geo.checkpoint import load_training_state, save_training_state
from senland_geo.errors import UserError
from senland_geo.train_config import TrainConfig, epoch_seed
from senland_geo.train_loss import SegmentationLoss


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (the message names the step and precision)."""


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
        self.optimizer = adamw(
            model.parameters(), self.device, lr=config.lr, weight_decay=config.weight_decay
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
