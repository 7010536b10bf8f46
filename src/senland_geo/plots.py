"""Figures (matplotlib, Agg): learning curves, per-class IoU, confusion, side-by-side maps.

Every figure carries a footer naming the engine that produced it, read from the machine
(:func:`senland_geo.hw.describe`) or from the run's recorded hardware.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from senland_geo import hw


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def hardware_label(hardware: dict[str, Any] | None = None) -> str:
    """The one-line engine label stamped on figures (read from the machine by default)."""
    info = hardware or hw.describe()
    label = info.get("engine") or f"CPU {info.get('cpu_model', 'unknown')}"
    extra = [f"{info['precision']}"] if info.get("precision") else []
    if info.get("processes"):
        extra.append(f"{info['processes']} processes")
    return f"{label}" + (f", {', '.join(extra)}" if extra else "")


def _finish(fig: Any, path: str | Path, hardware: dict[str, Any] | None) -> Path:
    label = f"engine: {hardware_label(hardware)}"
    fig.text(0.01, 0.005, label, fontsize=7, color="0.3")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Description": label} if path.suffix.lower() == ".png" else None
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
    _pyplot().close(fig)
    return path


def learning_curves(
    history: Sequence[dict[str, Any]], path: str | Path, *, hardware: dict[str, Any] | None = None
) -> Path:
    """Training loss and validation Dice/mIoU per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="C0", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (CE + Dice)")
    ax2 = ax.twinx()
    for key, color, label in (
        ("val_macro_dice", "C1", "val macro Dice"),
        ("val_miou", "C2", "val mIoU"),
    ):
        if history and key in history[0]:
            ax2.plot(epochs, [h[key] for h in history], "s--", color=color, label=label)
    ax2.set_ylabel("validation score")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title("Learning curves")
    return _finish(fig, path, hardware)


def per_class_iou(
    metrics: dict[str, Any], path: str | Path, *, hardware: dict[str, Any] | None = None
) -> Path:
    """Bars of per-class IoU (classes present in truth or prediction), mIoU as a line."""
    plt = _pyplot()
    rows = [c for c in metrics["per_class"] if c.get("iou") is not None]
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(len(rows), 2) + 1))
    names = [f"{c['code']} {c['name']}" for c in rows]
    values = [c["iou"] for c in rows]
    errors = [c.get("iou_std") or 0 for c in rows]
    ax.barh(names, values, xerr=errors if any(errors) else None, color="C0")
    for y, v in enumerate(values):
        ax.text(min(v + 0.01, 0.93), y, f"{v:.2f}", va="center", fontsize=8)
    if metrics.get("miou") is not None:
        ax.axvline(metrics["miou"], color="C3", ls="--", label=f"mIoU {metrics['miou']:.3f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("IoU")
    ax.set_title("Per-class IoU")
    return _finish(fig, path, hardware)


def confusion_matrix(
    metrics: dict[str, Any],
    path: str | Path,
    *,
    hardware: dict[str, Any] | None = None,
    normalize: bool = True,
) -> Path:
    """Confusion matrix (rows truth, columns prediction), row-normalised by default."""
    plt = _pyplot()
    m = np.asarray(metrics["confusion"], dtype=float)
    keep = (m.sum(0) + m.sum(1)) > 0
    m = m[np.ix_(keep, keep)]
    names = [c["name"] for c, k in zip(metrics["per_class"], keep, strict=True) if k]
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j] >= 0.01:
                color = "white" if m[i, j] > 0.6 else "black"
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _finish(fig, path, hardware)


def _rgb(image: np.ndarray, rgb: Sequence[int]) -> np.ndarray:
    x = np.asarray(image, dtype=float)
    if x.ndim == 4:  # (T, C, H, W): median over time
        x = np.median(x, axis=0)
    x = np.moveaxis(x[list(rgb)], 0, -1)
    lo, hi = np.nanpercentile(x, 2), np.nanpercentile(x, 98)
    return np.clip((x - lo) / max(hi - lo, 1e-9), 0, 1)


def side_by_side(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    colors: Sequence[str],
    path: str | Path,
    *,
    rgb: Sequence[int] = (2, 1, 0),
    names: Sequence[str] | None = None,
    ignore_index: int = 255,
    hardware: dict[str, Any] | None = None,
) -> Path:
    """Image (RGB stretch), truth and prediction next to each other.

    Args:
        image: ``(C, H, W)`` or ``(T, C, H, W)`` reflectance.
        truth: ``(H, W)`` class indices (``ignore_index`` shown white).
        prediction: ``(H, W)`` class indices.
        colors: One matplotlib colour per class index.
        path: PNG to write.
        rgb: Channel indices for red, green, blue (default B04, B03, B02 of B02..).
        names: Class names for the legend (classes present only).
        ignore_index: Unlabelled value in ``truth``.
        hardware: Engine description (default: read from this machine).
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap(list(colors) + ["white"])
    k = len(colors)

    def show(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a).astype(int).copy()
        a[(a < 0) | (a >= k)] = k
        return a

    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    axes[0].imshow(_rgb(image, rgb))
    axes[0].set_title("image (RGB)")
    axes[1].imshow(show(truth), cmap=cmap, vmin=0, vmax=k, interpolation="nearest")
    axes[1].set_title("truth")
    axes[2].imshow(show(prediction), cmap=cmap, vmin=0, vmax=k, interpolation="nearest")
    axes[2].set_title("prediction")
    for ax in axes:
        ax.set_axis_off()
    if names is not None:
        present = sorted(set(np.unique(show(truth))) | set(np.unique(show(prediction))) - {k})
        handles = [Patch(color=colors[i], label=names[i]) for i in present if i < k]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7)
    return _finish(fig, path, hardware)
