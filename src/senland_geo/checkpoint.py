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


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with 'senland-geo train'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} can't be read safely: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not a senland-geo checkpoint (format {FORMAT})")
    return data


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read only a checkpoint's metadata (bands, classes, model...), safely."""
    return _read(Path(path))["meta"]


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint safely and rebuild its model in fp32 eval mode.

    Raises:
        UserError: Missing file, not a senland-geo checkpoint, or weights that don't fit
            the model it names.
    """
    path = Path(path)
    data = _read(path)
    meta = data["meta"]
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
