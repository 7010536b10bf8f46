"""Tiled, nodata-aware, streaming prediction of a cube into a Cloud-Optimized GeoTIFF.

How a map is made, tile by tile:

1. The scene is cut into ``tile`` x ``tile`` *cores* on a fixed grid of the scene
   (:func:`tile_origins`: origins are multiples of ``tile``, hence of the U-Nets' 32-px
   pooling grid). The model sees each core with ``overlap / 2`` pixels of *context* on
   every side (model input ``tile + overlap``; the scene is mirrored beyond its border), so
   neighbouring inputs overlap by ``overlap`` pixels. How the overlapping predictions
   become one map (``blend``):

   * ``hann`` (default, :mod:`senland_geo.blend`): each input's class probabilities are
     weighted by a separable cosine-tapered window (0 for the ``overlap / 4`` pixels at its
     edges, a half-Hann ramp, 1 in the middle; the ramps of two neighbours sum to 1),
     summed, divided by the summed weights and arg-maxed. No seams, and no pixel is
     decided by a prediction made with less than ``overlap / 4`` pixels of context.
   * ``crop``: only each input's core is kept (crop and stitch); every pixel is predicted
     with at least ``overlap / 2`` pixels of context.

   On the shipped Brandenburg model, whether a pixel's class matches a whole-scene
   prediction depends on its context (82% at 0-8 px, 99.9% at 64-96 px, 99.998% beyond
   96 px, the same for 128, 256 and 512 px tiles); with the default overlap of 192 the maps
   of 128, 256 and 512 px tiles agree on >= 99.97% of the pixels with ``hann`` and
   >= 99.99% with ``crop`` (``tests/test_predict_cli.py``). ``block`` only groups the
   tiles into *batches* (units of work: one read, one dask task) that never span two tile
   rows, and results are combined in scene order, so the map is bit-identical however the
   work is cut (block size) or spread (number of workers).
2. Each batch is read from the Zarr cube (one bounding-box read), reduced to the model's
   input ((C, H, W) for single-image models, (T, C, H, W) for time-series models with
   ``meta["temporal"]``) and run through the model. In-process, tiles are read when the
   model needs them (``prefetch`` > 0: a reader thread reads ahead); on dask.distributed
   each worker reads and predicts its own batches with the model loaded once per worker
   (a worker plugin ships the checkpoint bytes, so remote workers need no copy of it).
3. The probabilities go into a *strip* that holds one tile row of the scene (``hann``:
   float32 weighted sums of the ``tile + overlap`` rows the row's inputs cover; ``crop``:
   ``tile`` rows of uint8). When a tile row is done, its final rows are arg-maxed and
   written to a tiled GeoTIFF by a writer thread; memory does not grow with the number of
   rows.
4. Pixels with no valid input (zero in every band and date) get nodata (0). The GeoTIFF is
   converted to a COG (DEFLATE, mode overviews, colormap, class names, provenance tags),
   under a temporary name, and renamed at the end: an interrupted or refused run leaves no
   file that looks complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import inspect
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
import torch.nn as nn
from rasterio.windows import Window as RioWindow
from tqdm.auto import tqdm

from senland_geo import __version__, hw, store
from senland_geo.blend import BlendAccumulator
from senland_geo.checkpoint import class_table, file_sha256, load_checkpoint, read_meta
from senland_geo.classes import NODATA_CODE, TABLES, ClassTable
from senland_geo.errors import UserError
from senland_geo.train import Normalize

#: Probability rasters are uint8: value = round(p * PROB_SCALE); PROB_NODATA marks no data.
PROB_SCALE = 254
PROB_NODATA = 255
#: GDAL block cache while writing (MiB): bounds memory whatever the map size.
GDAL_CACHE_MB = 128
#: Default tile: the core each model pass predicts, in pixels (a multiple of 32).
DEFAULT_TILE = 512
#: Default overlap of neighbouring model inputs in pixels: ``overlap / 2`` pixels of context
#: on each side of a tile (a multiple of 64, so every model input starts on the 32-px grid).
DEFAULT_OVERLAP = 192
#: Input pixels per forward pass when no batch size is given (8 inputs of 256 x 256): the
#: model's memory is the same for any tile, and batching big inputs gains nothing on a CPU.
FORWARD_PIXELS = 8 * 256 * 256
#: Default unit of work in pixels: the tiles of one tile row whose origins fall in the same
#: ``block``-wide column span are read and predicted together (one dask task). Larger blocks
#: mean fewer reads and tasks; the map does not depend on it. One default tile per block:
#: a block's predictions (full inputs, float32) are held until the block is done, and two
#: tiles per block cost 20-70 MiB more peak RSS at 16x the area (session 4, load 5-8).
DEFAULT_BLOCK = 512
#: How overlapping predictions are combined: ``hann`` (weighted by cosine-tapered windows and
#: averaged before the arg-max, :mod:`senland_geo.blend`) or ``crop`` (each input's core kept).
BLENDS = ("hann", "crop")
DEFAULT_BLEND = "hann"
#: Longest side of the quicklook PNG in pixels.
QUICKLOOK_SIZE = 1024

# Per-process cache of loaded models (one per checkpoint hash): on a dask worker the model
# is loaded once and reused by every task.
_PREDICTORS: dict[str, TilePredictor] = {}
_PREDICTOR_LOCK = threading.Lock()
_LOADS = 0


@functools.cache
def _glibc() -> Any:
    """The C library when it is glibc (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - missing on musl: AttributeError
    except (OSError, AttributeError):
        return None
    return libc


def trim_heap() -> None:
    """Return the free memory of every malloc arena to the system (glibc; else no-op).

    glibc's mmap threshold grows with the largest block freed (up to 32 MiB), after which
    tile-sized buffers are carved from the heaps of the thread that allocates them (main,
    reader, writer, OpenMP threads: one arena each) and their free space is kept: peak RSS
    crept up with the number of tiles, the more when a busy machine interleaves the threads
    (test config, tile 128, batch 4: +15.6% for 16x the area; +10.9% trimming after each
    tile row). Fixing the threshold with ``mallopt`` (4 MiB) helped in that config but not
    in the benchmark's (tile 256, batch 8), so it is not done.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def check_output_path(out: str | Path, suffixes: Sequence[str] = (".tif", ".tiff")) -> Path:
    """Check that a file can be written at ``out`` before any work is done.

    The check creates and removes a probe file, so a read-only folder is caught even when
    running as root (where ``os.access`` always says yes).

    Raises:
        UserError: Wrong suffix, missing or read-only folder, read-only existing file.
    """
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise UserError(f"output {out} must end in {' or '.join(suffixes)}; rename it")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist; create it first")
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"output {out} exists and is read-only; choose another --out")
    probe = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"output folder {out.parent} is not writable ({exc.strerror}); choose another --out"
        ) from None
    return out


def tile_origins(length: int, tile: int) -> list[int]:
    """Start offsets of the cores covering ``length`` pixels (multiples of ``tile``)."""
    return list(range(0, length, tile))


def context_of(overlap: int) -> int:
    """Pixels of context the model sees on each side of a tile: ``overlap // 2``."""
    return overlap // 2


def default_batch_size(tile: int, overlap: int) -> int:
    """Model inputs per forward pass: how many ``tile + overlap`` squares fit in 0.5 Mpx.

    At least 1; :data:`FORWARD_PIXELS` is the budget.
    """
    return max(1, FORWARD_PIXELS // (tile + overlap) ** 2)


def check_tiling(tile: int, overlap: int, block: int) -> None:
    """Refuse a tile, overlap or work block the prediction cannot use.

    Raises:
        UserError: ``tile`` is not a positive multiple of 32, ``overlap`` is not a
            non-negative multiple of 64, or ``block`` is not positive.
    """
    if tile <= 0 or tile % 32:
        raise UserError(
            f"tile {tile} must be a positive multiple of 32 (the U-Nets downsample 5 times); "
            f"try --tile {DEFAULT_TILE}"
        )
    if overlap < 0 or overlap % 64:
        raise UserError(
            f"overlap {overlap} must be a non-negative multiple of 64 (half of it is context "
            f"on each side, on the 32-px grid); try --overlap {DEFAULT_OVERLAP}"
        )
    if block < 1:
        raise UserError(
            f"block {block} must be a positive number of pixels; try --block {DEFAULT_BLOCK}"
        )


def check_blend(blend: str) -> None:
    """Refuse an unknown blending mode (one of :data:`BLENDS`)."""
    if blend not in BLENDS:
        raise UserError(f"blend {blend!r} is not one of {', '.join(BLENDS)}; try --blend hann")


def check_compatible(meta: dict[str, Any], bands: list[str], classes: ClassTable) -> None:
    """Refuse a checkpoint whose bands or classes do not match the cube or region.

    Raises:
        UserError: A band the model needs is missing, or the class tables differ.
    """
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
    theirs = [c["code"] for c in meta["classes"]["classes"]]
    if theirs != classes.codes:
        raise UserError(
            f"checkpoint class codes {theirs} differ from the region's {classes.codes}; "
            "use a checkpoint trained for this region's labels"
        )


@dataclass(frozen=True)
class Window:
    """One tile's core: its origin and the part of it inside the scene.

    Attributes:
        row: Top row in the scene (a multiple of the tile).
        col: Left column in the scene (a multiple of the tile).
        height: Rows inside the scene (``<= tile``).
        width: Columns inside the scene (``<= tile``).
    """

    row: int
    col: int
    height: int
    width: int


def plan_batches(
    height: int, width: int, tile: int, block: int | None = None
) -> list[list[Window]]:
    """Cut a scene into tile cores, grouped into batches (units of work), row by row.

    The cores depend only on the scene size and ``tile``; ``block`` only groups them: the
    cores of one tile row whose origins fall in the same ``block``-wide column span form
    one batch (one read, one dask task). A batch never spans two tile rows. Nothing
    depends on the number of workers.
    """
    block = block or tile
    batches: list[list[Window]] = []
    for r in tile_origins(height, tile):
        groups: dict[int, list[Window]] = {}
        for c in tile_origins(width, tile):
            w = Window(r, c, min(tile, height - r), min(tile, width - c))
            groups.setdefault(c // block, []).append(w)
        batches.extend(groups.values())
    return batches


class TilePredictor:
    """Runs a model on raw tiles and returns per-class probabilities."""

    def __init__(
        self,
        model: nn.Module,
        normalize: Normalize,
        batch_size: int = 8,
        temporal: bool = False,
    ) -> None:
        self.model = model.eval()
        self.normalize = normalize
        self.batch_size = batch_size
        self.temporal = temporal
        params = inspect.signature(model.forward).parameters
        self._date_mask = temporal and "date_mask" in params

    @torch.inference_mode()
    def __call__(
        self,
        tiles: np.ndarray,
        date_valid: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Predict class probabilities.

        Args:
            tiles: ``(N, C, H, W)`` or, for time-series models, ``(N, T, C, H, W)``.
            date_valid: ``(N, T)`` booleans, True where a date has data (time series).
            batch_size: Tiles per forward pass (default: the predictor's).

        Returns:
            ``(N, K, H, W)`` float32 probabilities.
        """
        step = batch_size or self.batch_size
        out = []
        for i in range(0, len(tiles), step):
            x = self.normalize(
                torch.from_numpy(np.ascontiguousarray(tiles[i : i + step], dtype=np.float32))
            )
            if self._date_mask and date_valid is not None:
                mask = torch.from_numpy(date_valid[i : i + step])
                mask[~mask.any(1)] = True  # an all-empty tile: let the model see every date
                logits = self.model(x, date_mask=mask)
            else:
                logits = self.model(x)
            out.append(torch.softmax(logits.float(), dim=1).numpy())
        return np.concatenate(out)


def build_predictor(checkpoint: str | Path, batch_size: int) -> TilePredictor:
    """Load a checkpoint into a :class:`TilePredictor` (fp32, eval mode)."""
    global _LOADS
    model, meta = load_checkpoint(checkpoint)
    norm = meta["normalization"]
    _LOADS += 1
    return TilePredictor(
        model,
        Normalize(norm["mean"], norm["std"]),
        batch_size,
        temporal=bool(meta.get("temporal", False)),
    )


def cached_predictor(key: str, checkpoint: str | Path, batch_size: int) -> TilePredictor:
    """The process's predictor for checkpoint hash ``key``, loaded on first use."""
    with _PREDICTOR_LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = build_predictor(checkpoint, batch_size)
        return _PREDICTORS[key]


def loaded_model_count() -> int:
    """How many times this process loaded a model (a dask worker should say 1)."""
    return _LOADS


class CubeReader:
    """Reads batches of model inputs (cores with context) of a cube's bands.

    Reads go straight to the Zarr array (no dask graph), one bounding box per batch.
    """

    def __init__(
        self,
        cube_path: str | Path,
        band_index: Sequence[int],
        tile: int,
        temporal: bool,
        context: int = 0,
    ):
        import zarr

        self.array = zarr.open_group(str(cube_path), mode="r")["reflectance"]
        self.band_index = list(band_index)
        self.tile = tile
        self.temporal = temporal
        self.context = context

    def read_tiles(
        self, batch: Sequence[Window]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Read a batch with one bounding-box read and yield it tile by tile.

        Yields:
            ``(x, valid, date_valid)`` per tile: model input ``([T,] C, tile + 2 context,
            tile + 2 context)`` float32 (the scene mirrored beyond its border), the core's
            ``(tile, tile)`` valid-pixel mask (False outside the scene) and the ``(T,)``
            per-date validity of the input.
        """
        height, width = self.array.shape[-2:]
        t, ctx = self.tile, self.context
        size = t + 2 * ctx
        r0 = batch[0].row - ctx
        c0 = min(w.col for w in batch) - ctx
        c1 = max(w.col for w in batch) + t + ctx
        rr0, rr1 = max(r0, 0), min(r0 + size, height)
        cc0, cc1 = max(c0, 0), min(c1, width)
        raw = np.asarray(self.array[:, :, rr0:rr1, cc0:cc1])[:, self.band_index]
        pad_rows = (rr0 - r0, r0 + size - rr1)
        for w in batch:
            a, b = w.col - ctx, w.col + t + ctx  # the input's columns in the scene
            sub = raw[..., max(a, 0) - cc0 : min(b, width) - cc0]  # (T, C, h, w)
            pix_date = (sub != 0).any(axis=1)  # (T, h, w)
            if self.temporal:
                x = sub.astype(np.float32)
            else:  # mean of the valid dates
                x = sub.sum(axis=0, dtype=np.float32)
                x /= np.maximum(pix_date.sum(axis=0, dtype=np.float32), 1)
            pad = (pad_rows, (max(a, 0) - a, b - min(b, width)))
            if pad != ((0, 0), (0, 0)):
                x = np.pad(x, ((0, 0),) * (x.ndim - 2) + pad, mode="symmetric")
            core = np.zeros((t, t), dtype=bool)
            rows, cols = w.row - rr0, w.col - max(a, 0)
            core[: w.height, : w.width] = pix_date.any(axis=0)[
                rows : rows + w.height, cols : cols + w.width
            ]
            yield x, core, pix_date.any(axis=(1, 2))

    def read(self, batch: Sequence[Window]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read a batch: the tiles of :meth:`read_tiles`, stacked (``(N, ...)`` arrays)."""
        xs, valids, dates = zip(*self.read_tiles(batch), strict=True)
        return np.stack(xs), np.stack(valids), np.stack(dates)


def crop_core(probs: np.ndarray, context: int) -> np.ndarray:
    """The cores of ``(N, K, S, S)`` predictions: drop ``context`` pixels on every side."""
    if context == 0:
        return probs
    return np.ascontiguousarray(probs[..., context:-context, context:-context])


class StripAccumulator:
    """Class codes (and quantized probabilities) of one tile row of the scene.

    Each core is reduced to uint8 as it arrives (arg-max to class codes, probabilities to
    ``round(p * PROB_SCALE)``), so the strip holds ``tile`` rows of uint8, not float32.
    """

    def __init__(
        self, width: int, num_classes: int, tile: int, lut: np.ndarray, probabilities: bool
    ) -> None:
        self.lut = lut
        self.codes = np.zeros((tile, width), dtype=np.uint8)
        self.probs = np.zeros((num_classes, tile, width), np.uint8) if probabilities else None
        self.any_valid = False
        self.row, self.rows = 0, 0  # the current tile row: first scene row, rows inside

    def add(self, w: Window, probs: np.ndarray, valid: np.ndarray) -> None:
        """Put one core's ``(K, tile, tile)`` probabilities, with its valid mask, in the strip."""
        self.row, self.rows = w.row, w.height
        p = probs[:, : w.height, : w.width]
        ok = valid[: w.height, : w.width]
        self.any_valid |= bool(ok.any())
        codes = self.lut[p.argmax(0)]
        codes[~ok] = NODATA_CODE
        cols = slice(w.col, w.col + w.width)
        self.codes[: w.height, cols] = codes
        if self.probs is not None:
            q = np.rint(p * PROB_SCALE).astype(np.uint8)
            q[:, ~ok] = PROB_NODATA
            self.probs[:, : w.height, cols] = q

    def release(self, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of the first ``rows`` rows: class codes and quantized probabilities."""
        probs = None if self.probs is None else self.probs[:, :rows].copy()
        return self.codes[:rows].copy(), probs

    def end_row(self, last: bool) -> tuple[int, np.ndarray, np.ndarray | None]:
        """Release the current tile row: ``(first scene row, codes, probabilities)``."""
        del last  # every tile row is final as soon as its cores are in
        return (self.row, *self.release(self.rows))


class _MapWriter:
    """Writes finished rows into tiled GeoTIFFs from a background thread."""

    def __init__(
        self,
        path: Path,
        grid: dict[str, Any],
        classes: ClassTable,
        tags: dict[str, str],
        prob_path: Path | None,
    ) -> None:
        height, width = grid["shape"]
        base = {
            "driver": "GTiff",
            "height": height,
            "width": width,
            "crs": grid["crs"],
            "transform": grid["transform"],
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "BIGTIFF": "IF_SAFER",
        }
        self.dst = rasterio.open(path, "w", dtype="uint8", count=1, nodata=NODATA_CODE, **base)
        self.dst.write_colormap(1, classes.colormap())
        self.dst.update_tags(**tags)
        self.dst.set_band_description(1, "land cover class code")
        self.prob = None
        if prob_path is not None:
            k = len(classes)
            self.prob = rasterio.open(
                prob_path, "w", dtype="uint8", count=k, nodata=PROB_NODATA, **base
            )
            self.prob.update_tags(**tags, probability=f"value / {PROB_SCALE}")
            self.prob.scales = [1.0 / PROB_SCALE] * k
            for i, name in enumerate(classes.names, start=1):
                self.prob.set_band_description(i, f"P({name})")
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="senland-writer")
        self.pending: deque[Future] = deque()

    def submit(self, row: int, codes: np.ndarray, probs: np.ndarray | None) -> None:
        while len(self.pending) > 2:  # bounded: at most a few strips in flight
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, row, codes, probs))

    def _write(self, row: int, codes: np.ndarray, probs: np.ndarray | None) -> None:
        win = RioWindow(0, row, codes.shape[1], codes.shape[0])
        self.dst.write(codes, 1, window=win)
        if self.prob is not None and probs is not None:
            self.prob.write(probs, window=win)

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)
            self.dst.close()
            if self.prob is not None:
                self.prob.close()


def _read_ahead(
    reader: CubeReader, batches: Sequence[Sequence[Window]], depth: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Yield the tiles of ``batches`` in order, read ahead by a thread (``depth`` tiles).

    ``depth`` 0 reads in the calling thread when a tile is needed (no thread, no queue).

    Yields:
        ``(x, valid, date_valid, last)`` per tile; ``last`` marks the end of a batch.
    """
    if depth <= 0:  # read in this thread, just in time
        for b in batches:
            for i, tile in enumerate(reader.read_tiles(b)):
                yield (*tile, i + 1 == len(b))
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for b in batches:
                for i, tile in enumerate(reader.read_tiles(b)):
                    if stop.is_set():
                        return
                    q.put(("ok", (*tile, i + 1 == len(b))))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=work, name="senland-reader", daemon=True)
    thread.start()
    try:
        for _ in range(sum(len(b) for b in batches)):
            kind, value = q.get()
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()


def _predict_in_full_batches(
    predictor: TilePredictor,
    reads: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]],
    batch_size: int,
    timing: dict[str, float],
    context: int = 0,
) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Predict tiles in forward passes of exactly ``batch_size`` tiles, block by block.

    Tiles are taken in scene order across block boundaries, so every forward pass but the
    last is full whatever the block size: the speed and peak memory depend on
    ``batch_size``, not on the block or the scene width, and the forward passes (hence the
    floating-point results) are the same for every block size.

    Args:
        predictor: The model.
        reads: ``(x, valid, date_valid, last)`` per tile, ``last`` ending a block.
        batch_size: Tiles per forward pass.
        timing: ``model_seconds`` is added to it.
        context: Pixels cropped on every side of each prediction.

    Yields:
        ``(probs, valid)`` per block (lists, one entry per tile), in the order read;
        ``probs`` are the cores' (``context`` pixels cropped on every side).
    """
    blocks: deque[int] = deque()  # tiles per block awaiting results
    tiles: list[np.ndarray] = []
    dates: list[np.ndarray] = []
    valids: list[np.ndarray] = []
    done: list[np.ndarray] = []
    count = 0

    def forward(n: int) -> None:
        x, d = np.stack(tiles[:n]), np.stack(dates[:n])
        del tiles[:n], dates[:n]
        t0 = time.perf_counter()
        done.extend(crop_core(predictor(x, d, batch_size), context))
        timing["model_seconds"] += time.perf_counter() - t0

    def finished() -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        while blocks and len(done) >= blocks[0]:
            n = blocks.popleft()
            probs, valid = done[:n], valids[:n]
            del done[:n], valids[:n]
            yield probs, valid

    for x, valid, d, last in reads:
        tiles.append(x)
        dates.append(d)
        valids.append(valid)
        count += 1
        if last:
            blocks.append(count)
            count = 0
        while len(tiles) >= batch_size:
            forward(batch_size)
        yield from finished()
    if tiles:
        forward(len(tiles))
    yield from finished()


def _run_inprocess(
    cube_path: Path,
    checkpoint: Path,
    key: str,
    band_index: list[int],
    tile: int,
    temporal: bool,
    batches: list[list[Window]],
    batch_size: int,
    prefetch: int,
    timing: dict[str, float],
    context: int,
    crop: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    predictor = cached_predictor(key, checkpoint, batch_size)
    reader = CubeReader(cube_path, band_index, tile, temporal, context)
    reads = _read_ahead(reader, batches, prefetch)
    yield from _predict_in_full_batches(predictor, reads, batch_size, timing, crop)


def _predict_task(
    key: str,
    checkpoint: str,
    cube_path: str,
    band_index: list[int],
    tile: int,
    temporal: bool,
    batch: list[Window],
    batch_size: int,
    context: int = 0,
    crop: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One dask task: read a batch of tiles and predict their cores with the worker's model."""
    with _PREDICTOR_LOCK:
        predictor = _PREDICTORS.get(key)
    if predictor is None:  # no plugin ran here (e.g. a worker joined late): load from path
        predictor = cached_predictor(key, checkpoint, batch_size)
    x, valid, dates = CubeReader(cube_path, band_index, tile, temporal, context).read(batch)
    t0 = time.perf_counter()
    probs = crop_core(predictor(x, dates, batch_size), crop)
    # float16 halves the transfer; the same on every worker, so maps stay identical.
    return probs.astype(np.float16), valid, time.perf_counter() - t0


def _model_plugin(key: str, data: bytes, batch_size: int, threads: int | None) -> Any:
    """A dask WorkerPlugin that loads the model once per worker (also after a restart)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class SenlandModelPlugin(WorkerPlugin):
        name = f"senland-geo-model-{key[:16]}"

        def __init__(self) -> None:
            self.key, self.data, self.batch_size, self.threads = key, data, batch_size, threads

        def setup(self, worker: Any) -> None:
            if self.threads:
                torch.set_num_threads(self.threads)
            path = Path(worker.local_directory) / f"senland-{self.key[:16]}.pt"
            path.write_bytes(self.data)
            cached_predictor(self.key, path, self.batch_size)

    return SenlandModelPlugin()


@contextlib.contextmanager
def dask_client(scheduler: str, workers: int | None = None) -> Iterator[Any]:
    """A dask.distributed client: ``local`` starts a LocalCluster, else connect to an address.

    Raises:
        UserError: dask.distributed is missing or the scheduler can't be reached.
    """
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError(
            "dask.distributed is not installed; pip install distributed, or drop --scheduler"
        ) from None
    if scheduler == "local":
        n = workers or 1
        threads = max(1, hw.physical_cores() // n)
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
                memory_limit=0,
                env={
                    "OMP_NUM_THREADS": str(threads),
                    # passive unless the user chose a policy (docs/performance.md)
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                },
            ) as cluster,
            Client(cluster) as client,
        ):
            client.senland_threads = threads  # type: ignore[attr-defined]
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise UserError(
            f"cannot reach dask scheduler {scheduler!r} ({exc}); start one with "
            "'dask scheduler' or use --scheduler local"
        ) from None
    with client:
        yield client


def _run_distributed(
    client: Any,
    cube_path: Path,
    checkpoint: Path,
    key: str,
    band_index: list[int],
    tile: int,
    temporal: bool,
    batches: list[list[Window]],
    batch_size: int,
    timing: dict[str, float],
    context: int,
    crop: int,
    on_result: Callable[[int], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    threads = getattr(client, "senland_threads", None)
    plugin = _model_plugin(key, Path(checkpoint).read_bytes(), batch_size, threads)
    client.register_plugin(plugin)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    inflight = 2 * n_workers + 2  # bounded: results don't pile up however big the region
    run = uuid.uuid4().hex[:8]
    args = (key, str(checkpoint), str(cube_path), band_index, tile, temporal)
    futures: deque = deque()
    nxt = 0
    try:
        for i in range(len(batches)):
            while nxt < len(batches) and len(futures) < inflight:
                futures.append(
                    client.submit(
                        _predict_task,
                        *args,
                        batches[nxt],
                        batch_size,
                        context,
                        crop,
                        key=f"senland-predict-{run}-{nxt}",
                        pure=False,
                        retries=1,
                    )
                )
                nxt += 1
            fut = futures.popleft()
            probs, valid, seconds = fut.result()
            fut.release()
            timing["model_seconds"] += seconds
            if on_result is not None:
                on_result(i)
            yield probs.astype(np.float32), valid
    finally:
        for fut in futures:
            fut.cancel()


def predict_cube(
    cube_path: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    block: int = DEFAULT_BLOCK,
    batch_size: int | None = None,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    probabilities: str | Path | None = None,
    quicklook: str | Path | None = None,
    prefetch: int = 0,
    stats: dict[str, Any] | None = None,
    on_result: Callable[[int], None] | None = None,
    blend: str = DEFAULT_BLEND,
) -> Path:
    """Predict a land-cover map for a cube store and write it as a COG, streaming.

    Args:
        cube_path: Cube written by ``senland-geo cube``.
        checkpoint: Checkpoint written by ``senland-geo train``.
        out: Destination ``.tif``.
        tile: Tile: the core each model pass predicts, in pixels (a multiple of 32), on a
            fixed grid of the scene. The model's input is ``tile + overlap``.
        overlap: Overlap of neighbouring model inputs in pixels (a multiple of 64): the
            model sees ``overlap / 2`` pixels of context on each side of a tile.
        block: Unit of work in pixels: the tiles of a tile row within one ``block``-wide
            column span are read and predicted together (one dask task). It changes how
            the work is cut, never the map.
        batch_size: Model inputs per forward pass (default: :func:`default_batch_size`).
        progress: Show a progress bar.
        provenance: Extra tags for the map (region, catalog...).
        scheduler: None: in this process (tiles are read as the model needs them, or
            by a reader thread with ``prefetch``); ``"local"``: a dask LocalCluster; else a
            dask scheduler address.
        workers: LocalCluster size (default 1 worker using every core).
        client: An existing ``distributed.Client`` (overrides ``scheduler``).
        probabilities: Also write per-class probabilities (uint8, value/254) to this COG.
        quicklook: Also write a colour PNG preview (at most 1024 px) to this path.
        prefetch: Tiles read ahead of the model by a reader thread (in-process only). 0
            (default): read each tile when the model needs it. At the default tile a
            read is a few % of a forward pass, the thread gained no time on 2 busy
            cores and cost ~130 MiB peak RSS at 16x (docs/performance.md).
        stats: If given, filled with timings: tiles, seconds, model_seconds, km2, and the
            phases: setup_seconds (checks, model load, threads), loop_seconds (read,
            predict, write the GeoTIFF), cog_seconds (COG, overviews, quicklook).
        on_result: Called with the batch index as each batch's result arrives (tests).
        blend: ``hann`` (default): every model input's probabilities, weighted by a
            cosine-tapered window that is 0 at its edges, are summed with their neighbours'
            and arg-maxed (:mod:`senland_geo.blend`); ``crop``: only each input's core is
            kept, cut without blending.

    Returns:
        The path of the written map.

    Raises:
        UserError: Bad output path, tile/overlap/block/blend, incompatible checkpoint, or a
            cube with no valid pixel (no file is left behind).
    """
    t_start = time.perf_counter()
    out = check_output_path(out)
    prob_out = check_output_path(probabilities) if probabilities else None
    ql_out = check_output_path(quicklook, (".png",)) if quicklook else None
    check_tiling(tile, overlap, block)
    check_blend(blend)
    cube_path, checkpoint = Path(cube_path), Path(checkpoint)
    meta = read_meta(checkpoint)
    classes = class_table(meta)
    ds = store.open_cube(cube_path)
    bands = store.band_names(ds)
    cube_classes = ds.attrs.get("class_table", classes.name)
    check_compatible(
        meta, bands, TABLES.get(cube_classes) or ClassTable(cube_classes, classes.classes)
    )
    band_index = [bands.index(b) for b in meta["bands"]]
    temporal = bool(meta.get("temporal", False))
    key = file_sha256(checkpoint)
    grid = store.grid_of(ds)
    height, width = grid["shape"]
    context = context_of(overlap)
    crop = context if blend == "crop" else 0  # pixels cut off each prediction's sides
    batch_size = batch_size or default_batch_size(tile, overlap)
    batches = plan_batches(height, width, tile, block)
    n_tiles = sum(len(b) for b in batches)
    timing = {"model_seconds": 0.0}

    tags = {
        "model": meta["model"],
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": key,
        "classes": json.dumps(classes.to_dict()["classes"]),
        "class_names": ";".join(f"{c.code}={c.name}" for c in classes.classes),
        "class_table": classes.name,
        "bands": ",".join(meta["bands"]),
        "temporal": str(temporal).lower(),
        "items": ds.attrs.get("items", "[]"),
        "cube": str(cube_path),
        "software": f"senland-geo {__version__}",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tile": str(tile),
        "overlap": str(overlap),
        "context": str(context),
        "stitching": blend,
        **{k: str(v) for k, v in (provenance or {}).items()},
    }
    tmp = out.with_name(f".{out.name}.partial.tif")
    tmp_prob = prob_out.with_name(f".{prob_out.name}.partial.tif") if prob_out else None
    temps = [p for p in (tmp, tmp_prob) if p is not None]
    lut = classes.index_to_code_lut()
    any_valid = False
    try:
        with contextlib.ExitStack() as stack:
            if client is None and scheduler is not None:
                client = stack.enter_context(dask_client(scheduler, workers))
            if client is not None:
                engines = sorted(set(client.run(lambda: hw.describe("cpu")["engine"]).values()))
                n_workers = len(client.scheduler_info().get("workers", {}))
                tags["hardware"] = f"dask.distributed, {n_workers} workers: " + "; ".join(engines)
                results = _run_distributed(
                    client, cube_path, checkpoint, key, band_index, tile, temporal, batches,
                    batch_size, timing, context, crop, on_result,
                )  # fmt: skip
            else:
                tags["hardware"] = hw.describe("cpu")["engine"]
                results = _run_inprocess(
                    cube_path, checkpoint, key, band_index, tile, temporal, batches,
                    batch_size, prefetch, timing, context, crop,
                )  # fmt: skip
            trim_heap()
            if blend == "crop":
                strip = StripAccumulator(width, len(classes), tile, lut, tmp_prob is not None)
            else:
                strip = BlendAccumulator(
                    height, width, len(classes), tile, context, lut, tmp_prob is not None,
                    PROB_SCALE, PROB_NODATA,
                )  # fmt: skip
            writer = _MapWriter(tmp, grid, classes, tags, tmp_prob)
            bar = tqdm(total=n_tiles, desc="predict", unit="tile", disable=not progress)
            try:
                with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
                    timing["loop_start"] = time.perf_counter()
                    for i, (probs, valid) in enumerate(results):
                        batch = batches[i]
                        for w, p, v in zip(batch, probs, valid, strict=True):
                            strip.add(w, p, v)
                        del probs, valid
                        bar.update(len(batch))
                        last_in_row = i + 1 == len(batches) or batches[i + 1][0].row != batch[0].row
                        if last_in_row:
                            row0, codes, qprobs = strip.end_row(last=i + 1 == len(batches))
                            if len(codes):
                                writer.submit(row0, codes, qprobs)
                            del codes, qprobs
                            trim_heap()  # a tile row's buffers are free now
                any_valid = strip.any_valid
            finally:
                bar.close()
                writer.close()
                timing["loop_end"] = time.perf_counter()
        if not any_valid:
            raise UserError(
                f"cube {cube_path} has no valid pixel (every band and date is 0/no data); "
                "rebuild it with wider dates or a higher --max-cloud"
            )
        t_cog = time.perf_counter()
        _to_cog(tmp, out, "MODE")
        if tmp_prob is not None and prob_out is not None:
            _to_cog(tmp_prob, prob_out, "AVERAGE")
        if ql_out is not None:
            write_quicklook(out, ql_out)
        t_end = time.perf_counter()
    finally:
        for p in temps:
            p.unlink(missing_ok=True)
    seconds = time.perf_counter() - t_start
    if stats is not None:
        res = grid["res"]
        stats.update(
            tiles=n_tiles,
            batches=len(batches),
            pixels=height * width,
            km2=height * width * res * res / 1e6,
            seconds=seconds,
            model_seconds=timing["model_seconds"],
            tiles_per_second=n_tiles / seconds,
            hardware=tags["hardware"],
            setup_seconds=timing["loop_start"] - t_start,
            loop_seconds=timing["loop_end"] - timing["loop_start"],
            cog_seconds=t_end - t_cog,
            batch_size=batch_size,
        )
    return out


def _to_cog(src: Path, out: Path, resampling: str) -> None:
    """Convert a tiled GeoTIFF into a COG at ``out`` (through a temporary name)."""
    tmp = out.with_name(f".{out.name}.partial.cog.tif")
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                compress="DEFLATE",
                overview_resampling=resampling,
                blocksize=256,
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
            )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def write_quicklook(map_path: str | Path, png: str | Path, size: int = QUICKLOOK_SIZE) -> Path:
    """Write a colour PNG preview of a class map (read from its overviews, memory-bounded)."""
    png = Path(png)
    with rasterio.open(map_path) as src:
        scale = max(src.height, src.width) / size
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        codes = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.mode)
        cmap = src.colormap(1)
    lut = np.zeros((256, 4), dtype=np.uint8)
    for code, rgba in cmap.items():
        lut[code] = rgba
    rgba = np.moveaxis(lut[codes], -1, 0)
    tmp = png.with_name(f".{png.name}.partial.png")
    try:
        with rasterio.open(
            tmp, "w", driver="PNG", width=shape[1], height=shape[0], count=4, dtype="uint8"
        ) as dst:
            dst.write(rgba)
        tmp.replace(png)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".aux.xml").unlink(missing_ok=True)
    return png
