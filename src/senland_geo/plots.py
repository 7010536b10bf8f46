"""Figures (matplotlib, Agg): learning curves, per-class IoU, confusion, side-by-side maps.

Each figure is drawn by one ``*_figure`` function that returns the matplotlib figure; the
standalone writers (:func:`learning_curves`, :func:`per_class_iou`, :func:`confusion_matrix`,
:func:`side_by_side`) save it as a PNG with a footer naming the engine that produced it,
read from the machine (:func:`senland_geo.hw.describe`) or from the run's recorded
hardware, and the HTML report (:mod:`senland_geo.report`) embeds the same figures with
:func:`data_uri`.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
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


def data_uri(fig: Any) -> str:
    """Render a figure to a base64 PNG data URI (for self-contained HTML) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finish(fig: Any, path: str | Path, hardware: dict[str, Any] | None) -> Path:
    label = f"engine: {hardware_label(hardware)}"
    fig.text(0.01, 0.005, label, fontsize=7, color="0.3")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Description": label} if path.suffix.lower() == ".png" else None
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
    _pyplot().close(fig)
    return path


# --- learning curves ------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def learning_curves_figure(history: Sequence[dict[str, Any]]) -> Any:
    """Loss series on the left axis, the other per-epoch series (scores) on the right."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    keys = sorted({k for h in history for k, v in h.items() if k != "epoch" and _number(v)})
    losses = [k for k in keys if "loss" in k]
    scores = [k for k in keys if k not in losses and k != "lr"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, key in enumerate(losses):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], "o-", color=f"C{i}", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    for i, key in enumerate(scores, start=len(losses)):
        values = [h.get(key, np.nan) for h in history]
        ax2.plot(epochs, values, "s--", color=f"C{i}", label=key.replace("_", " "))
    ax2.set_ylabel("validation score")
    ax2.set_ylim(0, 1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if h1 or h2:
        ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Learning curves")
    return fig


def learning_curves(
    history: Sequence[dict[str, Any]], path: str | Path, *, hardware: dict[str, Any] | None = None
) -> Path:
    """Write :func:`learning_curves_figure` as a PNG stamped with the engine."""
    return _finish(learning_curves_figure(history), path, hardware)


# --- per-class scores ------------------------------------------------------------------


def per_class_figure(
    per_class: Sequence[dict[str, Any]], *, miou: float | None = None, classes: Any = None
) -> Any:
    """Bars of per-class IoU (and Dice when given) for the classes present; mIoU as a line.

    Args:
        per_class: Rows of :meth:`ConfusionMatrix.compute` (``code``, ``name``, ``iou``,
            optional ``dice`` and ``iou_std``); rows without IoU are left out.
        miou: Mean IoU drawn as a dashed line.
        classes: Class table whose colours fill the IoU bars (default one colour).
    """
    plt = _pyplot()
    rows = [c for c in per_class if c.get("iou") is not None]
    colors = {c.code: c.color for c in classes.classes} if classes is not None else {}
    dice = all(c.get("dice") is not None for c in rows) and bool(rows)
    fig, ax = plt.subplots(figsize=(8, (0.45 if dice else 0.4) * max(len(rows), 2) + 1))
    y = np.arange(len(rows))
    height = 0.4 if dice else 0.8
    values = [c["iou"] for c in rows]
    errors = [c.get("iou_std") or 0 for c in rows]
    ax.barh(
        y - (0.2 if dice else 0), values, height=height,
        xerr=errors if any(errors) else None, edgecolor="#333", label="IoU",
        color=[colors.get(c["code"], "C0") for c in rows],
    )  # fmt: skip
    if dice:
        ax.barh(y + 0.2, [c["dice"] for c in rows], height=0.4, color="#cccccc",
                edgecolor="#333", label="Dice")  # fmt: skip
    for i, v in enumerate(values):
        ax.text(min(v + 0.01, 0.93), i - (0.2 if dice else 0), f"{v:.2f}", va="center",
                fontsize=8)  # fmt: skip
    if miou is not None:
        ax.axvline(miou, color="C3", ls="--", label=f"mIoU {miou:.3f}")
    ax.set_yticks(y, [f"{c['code']} {c['name']}" for c in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score on the holdout")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Per-class IoU")
    return fig


def per_class_iou(
    metrics: dict[str, Any], path: str | Path, *, hardware: dict[str, Any] | None = None
) -> Path:
    """Write :func:`per_class_figure` of a metrics dict as a PNG stamped with the engine."""
    fig = per_class_figure(metrics["per_class"], miou=metrics.get("miou"))
    return _finish(fig, path, hardware)


# --- confusion matrix ------------------------------------------------------------------


def confusion_figure(
    confusion: Sequence[Sequence[int]], names: Sequence[str], *, normalize: bool = True
) -> Any:
    """Confusion matrix (truth rows, prediction columns) of the classes that occur.

    Cells show the row share (``normalize``) or the count, and the count below the share.
    """
    plt = _pyplot()
    m = np.asarray(confusion, dtype=np.float64)
    keep = (m.sum(0) + m.sum(1)) > 0
    if not keep.any():
        keep[:] = True
    m = m[np.ix_(keep, keep)]
    labels = [n for n, k in zip(names, keep, strict=True) if k]
    shown = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    top = 1.0 if normalize else max(float(shown.max()), 1.0)
    size = 1.0 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=top)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for i in range(len(labels)):
        for j in range(len(labels)):
            text = f"{shown[i, j]:.2f}\n{int(m[i, j])}" if normalize else f"{int(m[i, j])}"
            color = "white" if shown[i, j] > 0.5 * top else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color=color)
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the truth row" if normalize else "")
    return fig


def confusion_matrix(
    metrics: dict[str, Any],
    path: str | Path,
    *,
    hardware: dict[str, Any] | None = None,
    normalize: bool = True,
) -> Path:
    """Write :func:`confusion_figure` of a metrics dict as a PNG stamped with the engine."""
    names = [c["name"] for c in metrics["per_class"]]
    fig = confusion_figure(metrics["confusion"], names, normalize=normalize)
    return _finish(fig, path, hardware)


# --- image, truth and prediction ------------------------------------------------------


def stretch_rgb(rgb: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scale a ``(3, H, W)`` reflectance array to ``(H, W, 3)`` in 0..1 (2-98 % stretch).

    Each channel is stretched over the ``valid`` pixels (default: not all-zero); invalid
    pixels are black.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    mask = (rgb != 0).any(0) if valid is None else valid
    out = np.zeros(rgb.shape[1:] + (3,), dtype=np.float32)
    if not mask.any():
        return out
    for i in range(3):
        lo, hi = np.percentile(rgb[i][mask], (2, 98))
        out[..., i] = np.clip((rgb[i] - lo) / max(hi - lo, 1e-6), 0, 1)
    out[~mask] = 0
    return out


@dataclass
class MapRow:
    """One row of :func:`maps_figure`: three ``(H, W, 3)`` RGB panels in 0..1.

    Attributes:
        image: The image (e.g. :func:`stretch_rgb`).
        truth: Coloured truth.
        prediction: Coloured prediction.
        title: Prefix of the panel titles (e.g. the area).
        note: Label beside the row (e.g. the pixel window).
    """

    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    title: str = ""
    note: str = ""


def maps_figure(
    rows: Sequence[MapRow],
    legend: Sequence[tuple[str, str]],
    *,
    image_title: str = "image (RGB)",
) -> Any:
    """Image, truth and prediction side by side, one row each, with a class legend.

    Args:
        rows: The rows.
        legend: ``(colour, label)`` of each class shown.
        image_title: Title of the image panels.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for axrow, row in zip(axes, rows, strict=True):
        prefix = f"{row.title}: " if row.title else ""
        panels = ((row.image, image_title), (row.truth, "truth"), (row.prediction, "prediction"))
        for ax, (img, title) in zip(axrow, panels, strict=True):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(prefix + title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        axrow[0].set_ylabel(row.note, fontsize=8)
    handles = [Patch(facecolor=c, edgecolor="#444", label=label) for c, label in legend]
    if handles:
        ncol = min(4, len(handles))
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8)
        fig.subplots_adjust(bottom=0.08 + 0.02 * math.ceil(len(handles) / ncol))
    return fig


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
    """Write :func:`maps_figure` of one image with index-coded truth and prediction.

    Args:
        image: ``(C, H, W)`` or ``(T, C, H, W)`` reflectance (a series shows its median).
        truth: ``(H, W)`` class indices (``ignore_index`` and out-of-range shown white).
        prediction: ``(H, W)`` class indices.
        colors: One matplotlib colour per class index.
        path: PNG to write.
        rgb: Channel indices for red, green, blue (default B04, B03, B02 of B02..).
        names: Class names for the legend (classes present only).
        ignore_index: Unlabelled value in ``truth``.
        hardware: Engine description (default: read from this machine).
    """
    from matplotlib.colors import to_rgb

    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 4:
        x = np.median(x, axis=0)
    lut = np.array([to_rgb(c) for c in colors] + [(1.0, 1.0, 1.0)], dtype=np.float32)
    k = len(colors)

    def paint(a: np.ndarray) -> tuple[np.ndarray, set[int]]:
        a = np.asarray(a).astype(int)
        a = np.where((a < 0) | (a >= k) | (a == ignore_index), k, a)
        return lut[a], set(np.unique(a).tolist()) - {k}

    (truth_rgb, in_truth), (pred_rgb, in_pred) = paint(truth), paint(prediction)
    present = sorted(in_truth | in_pred)
    legend = [(colors[i], names[i]) for i in present] if names is not None else []
    row = MapRow(stretch_rgb(x[list(rgb)]), truth_rgb, pred_rgb)
    return _finish(maps_figure([row], legend), path, hardware)
