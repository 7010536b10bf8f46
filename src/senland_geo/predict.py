"""Tiled, blended, nodata-aware prediction of a cube into a Cloud-Optimized GeoTIFF.

Tiles overlap; each tile's class probabilities are weighted by a smooth 2-D Hann window
(floored so scene borders keep full weight where only one tile covers them), summed, and
divided by the summed weights before the argmax, so no seams appear between tiles.
Pixels with no valid input get nodata (0), never a guessed class.

The map is written under a temporary name and renamed at the end: an interrupted run
leaves no file that looks complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from senland_geo import __version__, hw, store
from senland_geo.checkpoint import class_table, file_sha256, load_checkpoint, read_meta
from senland_geo.classes import NODATA_CODE, ClassTable
from senland_geo.errors import UserError
from senland_geo.train import Normalize


def check_output_path(out: str | Path) -> Path:
    """Check that a map can be written at ``out`` before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise UserError(f"output {out} must end in .tif (a Cloud-Optimized GeoTIFF)")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"output folder {out.parent} is not writable; choose another --out")
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"output {out} exists and is read-only; choose another --out")
    return out


def blend_window(size: int, floor: float = 1e-3) -> np.ndarray:
    """2-D Hann window of ``size`` x ``size`` (float32), floored to stay positive."""
    w = np.hanning(size + 2)[1:-1]
    return np.maximum(np.outer(w, w), floor).astype(np.float32)


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # last tile flush with the border: no pixel lost
    return starts


def check_compatible(meta: dict[str, Any], bands: list[str], classes: ClassTable) -> None:
    """Refuse a checkpoint whose bands or classes do not match the cube."""
    missing = [b for b in meta["bands"] if b not in bands]
    if missing:
        raise UserError(
            f"checkpoint needs bands {missing} that the cube lacks (cube has {bands}); "
            "use a checkpoint trained on these bands or rebuild the cube"
        )
    if meta["classes"]["name"] != classes.name:
        raise UserError(
            f"checkpoint predicts class table {meta['classes']['name']!r} but the region uses "
            f"{classes.name!r}; use a checkpoint trained for this region's labels"
        )


class TilePredictor:
    """Runs a model on normalised tiles and returns per-class probabilities."""

    def __init__(self, model: nn.Module, normalize: Normalize, batch_size: int = 8) -> None:
        self.model = model.eval()
        self.normalize = normalize
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """``tiles`` (N, C, H, W) or (N, T, C, H, W) uint16 -> probabilities (N, K, H, W)."""
        out = []
        for i in range(0, len(tiles), self.batch_size):
            x = torch.from_numpy(tiles[i : i + self.batch_size].astype(np.float32))
            logits = self.model(self.normalize(x))
            out.append(torch.softmax(logits.float(), dim=1).numpy())
        return np.concatenate(out)


def _windows(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int]]:
    for r in tile_origins(height, tile, overlap):
        for c in tile_origins(width, tile, overlap):
            yield r, c


def predict_cube(
    cube_path: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Predict a land-cover map for a cube store and write it as a COG.

    Args:
        cube_path: Cube written by ``senland-geo cube``.
        checkpoint: Checkpoint written by ``senland-geo train``.
        out: Destination ``.tif``.
        tile: Tile side in pixels.
        overlap: Overlap between neighbouring tiles in pixels.
        batch_size: Tiles per forward pass.
        progress: Show a progress bar.
        provenance: Extra tags for the map (region, catalog...).

    Returns:
        The path of the written map.
    """
    out = check_output_path(out)
    if not 0 <= overlap < tile:
        raise UserError(f"overlap {overlap} must be >= 0 and smaller than the tile {tile}")
    meta = read_meta(checkpoint)
    classes = class_table(meta)
    ds = store.open_cube(cube_path)
    bands = store.band_names(ds)
    cube_classes = ds.attrs.get("class_table", classes.name)
    check_compatible(meta, bands, ClassTable(cube_classes, classes.classes))
    model, meta = load_checkpoint(checkpoint)
    band_index = [bands.index(b) for b in meta["bands"]]
    temporal = bool(meta.get("temporal", False))
    norm = meta["normalization"]
    predictor = TilePredictor(model, Normalize(norm["mean"], norm["std"]), batch_size)

    grid = store.grid_of(ds)
    height, width = grid["shape"]
    tile = min(tile, max(height, width))
    array = ds["reflectance"]
    k = len(classes)
    probs = np.zeros((k, height, width), dtype=np.float32)
    weights = np.zeros((height, width), dtype=np.float32)
    valid = np.zeros((height, width), dtype=bool)
    window = blend_window(tile)
    windows = list(_windows(height, width, tile, overlap))
    batch: list[tuple[int, int, int, int]] = []
    data: list[np.ndarray] = []

    def flush() -> None:
        stacked = np.stack(data)
        if not temporal:
            stacked = stacked[:, 0] if stacked.shape[1] == 1 else stacked.mean(1)
        p = predictor(stacked)
        for (r, c, h, w), pr in zip(batch, p, strict=True):
            wt = window[:h, :w]
            probs[:, r : r + h, c : c + w] += pr[:, :h, :w] * wt
            weights[r : r + h, c : c + w] += wt
        batch.clear()
        data.clear()

    for r, c in tqdm(windows, desc="predict", unit="tile", disable=not progress):
        h, w = min(tile, height - r), min(tile, width - c)
        block = np.asarray(array[:, band_index, r : r + h, c : c + w].values)
        valid[r : r + h, c : c + w] |= (block != 0).any(axis=(0, 1))
        if (h, w) != (tile, tile):
            block = np.pad(block, ((0, 0), (0, 0), (0, tile - h), (0, tile - w)))
        batch.append((r, c, h, w))
        data.append(block)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()

    index = (probs / np.maximum(weights, 1e-12)).argmax(0)
    codes = classes.index_to_code_lut()[index]
    codes[~valid] = NODATA_CODE
    tags = {
        "model": meta["model"],
        "checkpoint_sha256": file_sha256(checkpoint),
        "classes": json.dumps(classes.to_dict()["classes"]),
        "items": ds.attrs.get("items", "[]"),
        "software": f"senland-geo {__version__}",
        "hardware": hw.describe("cpu")["engine"],
        "tile": str(tile),
        "overlap": str(overlap),
        **{k: str(v) for k, v in (provenance or {}).items()},
    }
    return write_cog(codes.astype(np.uint8), grid, out, classes, tags)


def write_cog(
    codes: np.ndarray, grid: dict[str, Any], out: Path, classes: ClassTable, tags: dict
) -> Path:
    """Write a uint8 class map as a COG with colormap, nodata 0, overviews and tags."""
    tmp_gtiff = out.with_name(f".{out.name}.partial.tif")
    tmp_cog = out.with_name(f".{out.name}.partial.cog.tif")
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "height": codes.shape[0],
        "width": codes.shape[1],
        "crs": grid["crs"],
        "transform": grid["transform"],
        "nodata": NODATA_CODE,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    try:
        with rasterio.open(tmp_gtiff, "w", **profile) as dst:
            dst.write(codes, 1)
            dst.write_colormap(1, classes.colormap())
            dst.update_tags(**tags)
            dst.set_band_description(1, "land cover class code")
        rasterio.shutil.copy(
            tmp_gtiff,
            tmp_cog,
            driver="COG",
            compress="DEFLATE",
            overview_resampling="MODE",
            blocksize=256,
        )
        tmp_cog.replace(out)
    finally:
        for p in (tmp_gtiff, tmp_cog):
            p.unlink(missing_ok=True)
    return out
