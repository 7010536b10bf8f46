"""Checkpoints: weights plus everything needed to use them, loaded safely.

A checkpoint is a ``torch.save`` file holding only tensors and plain data, so it loads
with ``torch.load(weights_only=True)``: ``state_dict``, and ``meta`` with the model name
and options, band list, normalisation statistics, class table, training summary and the
hardware it ran on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from senland_geo import registry
from senland_geo.classes import ClassTable
from senland_geo.errors import UserError

FORMAT = "senland-geo-checkpoint/1"


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: dict[str, Any], *, half: bool = False
) -> Path:
    """Save weights and metadata; ``half`` stores floating weights as fp16 (smaller)."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = json.loads(json.dumps(meta, default=str))  # plain data only: safe to load
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "state_dict": state, "meta": meta}, tmp)
    tmp.replace(path)
    return path


def _safe_load(path: Path, fmt: str, what: str, not_ours: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` a dict and check its ``format`` tag."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{what} {path} can't be read safely: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise UserError(f"{path} is not a senland-geo {what}{not_ours}")
    return data


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with 'senland-geo train'")
    return _safe_load(path, FORMAT, "checkpoint", f" (format {FORMAT})")


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read only a checkpoint's metadata (bands, classes, model...), safely."""
    return _read(Path(path))["meta"]


def check_compatible(
    meta: dict[str, Any],
    *,
    model: str | None = None,
    classes: ClassTable | dict[str, Any] | None = None,
    bands: list[str] | None = None,
    source: str = "checkpoint",
) -> None:
    """Refuse a checkpoint whose model, class table or bands differ from what is expected.

    Args:
        meta: Checkpoint metadata (:func:`read_meta`).
        model: Expected model plugin name (None: not checked).
        classes: Expected class table (None: not checked).
        bands: Expected input bands in order (None: not checked).
        source: Name of the checkpoint in the message.

    Raises:
        UserError: Naming the mismatching field, both values, and what to do.
    """
    if model is not None and meta.get("model") != model:
        raise UserError(
            f"{source} was trained with model {meta.get('model')!r}, not {model!r}; "
            f"use --model {meta.get('model')} or train a new checkpoint"
        )
    if classes is not None:
        want = classes.to_dict() if isinstance(classes, ClassTable) else classes
        have = meta.get("classes", {})
        if have.get("name") != want.get("name") or have.get("classes") != want.get("classes"):
            have_codes = [c.get("code") for c in have.get("classes", [])]
            want_codes = [c.get("code") for c in want.get("classes", [])]
            raise UserError(
                f"{source} has class table {have.get('name')!r} (codes {have_codes}), "
                f"incompatible with {want.get('name')!r} (codes {want_codes}); "
                "retrain on data labelled with that class table"
            )
    if bands is not None and list(meta.get("bands", [])) != list(bands):
        raise UserError(
            f"{source} expects bands {meta.get('bands')}, the data has {list(bands)}; "
            "rebuild the cube with those bands or retrain"
        )


def load_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    classes: ClassTable | dict[str, Any] | None = None,
    bands: list[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint safely and rebuild its model in fp32 eval mode.

    Args:
        path: The ``checkpoint.pt``.
        model: If given, refuse a checkpoint of another model.
        classes: If given, refuse a checkpoint with another class table.
        bands: If given, refuse a checkpoint expecting other bands.

    Raises:
        UserError: Missing file, not a senland-geo checkpoint, incompatible with the
            expected model/classes/bands, or weights that don't fit the model it names.
    """
    path = Path(path)
    data = _read(path)
    meta = data["meta"]
    check_compatible(meta, model=model, classes=classes, bands=bands, source=f"checkpoint {path}")
    builder = registry.load("models", meta["model"])
    model = builder(
        in_channels=len(meta["bands"]),
        num_classes=len(meta["classes"]["classes"]),
        **meta.get("model_options", {}),
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(
            f"checkpoint {path} does not fit model {meta['model']!r}: {first}"
        ) from None
    model.eval()
    return model, meta


TRAINING_STATE_FORMAT = "senland-geo-training-state/1"


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save a resumable training state (tensors and plain data only).

    Args:
        path: Destination, e.g. ``run/state.pt``.
        state: Model/optimizer/scheduler/scaler state dicts, loop counters, history.

    Returns:
        The path written. A crash mid-write leaves the previous state intact.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": TRAINING_STATE_FORMAT, **state}, tmp)
    tmp.replace(path)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Load a training state written by :func:`save_training_state` (``weights_only``).

    Raises:
        UserError: The file can't be read safely or is not a training state.
    """
    return _safe_load(
        Path(path), TRAINING_STATE_FORMAT, "training state", "; delete it to start afresh"
    )


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (recorded as provenance in maps)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def class_table(meta: dict[str, Any]) -> ClassTable:
    """The class table stored in a checkpoint's metadata."""
    return ClassTable.from_dict(meta["classes"])
