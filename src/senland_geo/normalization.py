"""Per-channel z-score statistics from the training split only, streamed chunk by chunk.

:func:`channel_stats` walks the Zarr chunks of a cube's ``reflectance`` array that
intersect the training boxes, one chunk at a time (memory: one chunk), and merges the
per-chunk count, mean and sum of squared deviations with Chan et al.'s parallel update of
Welford's algorithm, in float64. A pixel of a date counts when it is observed in that
date (any band non-zero), the cube's nodata convention. The result is a small,
JSON-serialisable :class:`ChannelStats` that goes into the checkpoint; :class:`Normalize`
applies it to ``(C,H,W)``, ``(B,C,H,W)`` or ``(B,T,C,H,W)`` tensors.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import zarr

from senland_geo import store
from senland_geo.errors import UserError

#: Floor of the standard deviation (a constant band must not divide by zero).
MIN_STD = 1e-6


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel count, mean and sum of squared deviations (``m2``).

    Attributes:
        bands: Band names, in channel order.
        count: Observations per channel.
        mean: Mean per channel.
        m2: Sum of squared deviations from the mean per channel.
    """

    bands: tuple[str, ...]
    count: tuple[int, ...]
    mean: tuple[float, ...]
    m2: tuple[float, ...]

    @property
    def std(self) -> tuple[float, ...]:
        """Population standard deviation per channel (floored at :data:`MIN_STD`)."""
        return tuple(
            max(float(np.sqrt(m / n)) if n else 0.0, MIN_STD)
            for m, n in zip(self.m2, self.count, strict=True)
        )

    @classmethod
    def from_values(cls, bands: Sequence[str], values: np.ndarray) -> ChannelStats:
        """Statistics of ``values`` ``(C, N)`` (exact, for tests and small data)."""
        values = np.asarray(values, dtype=np.float64)
        n = values.shape[1]
        mean = values.mean(axis=1) if n else np.zeros(len(values))
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        return cls(tuple(bands), (n,) * len(bands), tuple(mean.tolist()), tuple(m2.tolist()))

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Combine with statistics of disjoint data (Chan et al. parallel update)."""
        if tuple(other.bands) != tuple(self.bands):
            raise UserError(f"cannot merge statistics of bands {other.bands} into {self.bands}")
        na, nb = np.array(self.count, np.float64), np.array(other.count, np.float64)
        ma, mb = np.array(self.mean), np.array(other.mean)
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mb - ma
            mean = np.where(n > 0, ma + delta * nb / n, 0.0)
            m2 = (
                np.array(self.m2)
                + np.array(other.m2)
                + np.where(n > 0, delta**2 * na * nb / n, 0.0)
            )
        count = tuple(int(a) + int(b) for a, b in zip(self.count, other.count, strict=True))
        return ChannelStats(self.bands, count, tuple(mean.tolist()), tuple(m2.tolist()))

    def select(self, bands: Sequence[str]) -> ChannelStats:
        """The statistics of some bands, in the given order."""
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise UserError(f"statistics lack bands {missing} (they have {list(self.bands)})")
        idx = [self.bands.index(b) for b in bands]
        return ChannelStats(
            tuple(bands),
            tuple(self.count[i] for i in idx),
            tuple(self.mean[i] for i in idx),
            tuple(self.m2[i] for i in idx),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (also carries ``std`` for readers that only need it)."""
        return {
            "bands": list(self.bands),
            "count": list(self.count),
            "mean": list(self.mean),
            "m2": list(self.m2),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelStats:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            tuple(data["bands"]),
            tuple(int(c) for c in data["count"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["m2"]),
        )

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> ChannelStats:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def normalizer(self) -> Normalize:
        """A :class:`Normalize` module with these statistics."""
        return Normalize(list(self.mean), list(self.std))


def _chunk_stats(data: np.ndarray, mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, per-channel mean and m2 of ``data`` (T, C, h, w) where ``mask`` (T, h, w)."""
    n = int(mask.sum())
    if n == 0:
        c = data.shape[1]
        return 0, np.zeros(c), np.zeros(c)
    x = np.moveaxis(data, 1, 0)[:, mask].astype(np.float64)  # (C, n)
    mean = x.mean(axis=1)
    m2 = ((x - mean[:, None]) ** 2).sum(axis=1)
    return n, mean, m2


def channel_stats(
    cube: str | Path,
    boxes: Sequence[tuple[float, float, float, float]] | Any | None = None,
    bands: Sequence[str] | None = None,
) -> ChannelStats:
    """Stream per-channel statistics of a cube over the training boxes only.

    Args:
        cube: A cube store.
        boxes: Training boxes ``(minx, miny, maxx, maxy)`` in the cube's CRS, or a
            :class:`senland_geo.splits.Split` (its ``train`` boxes are used; never its
            test boxes); default the whole cube. Overlapping boxes count pixels once.
        bands: Bands to report (default all of the cube's bands).

    Returns:
        The statistics.

    Raises:
        UserError: The cube lacks ``bands``, or the boxes hold no observed pixel.
    """
    ds = store.open_cube(cube)
    grid = store.grid_of(ds)
    names = store.band_names(ds)
    if boxes is not None and hasattr(boxes, "train"):
        boxes = boxes.train
    height, width = grid["shape"]
    minx, _, _, maxy = grid["bounds"]
    res = grid["res"]
    if boxes is None:
        windows = [(0, 0, width, height)]
    else:
        windows = []
        for bminx, bminy, bmaxx, bmaxy in boxes:
            c0 = max(0, round((bminx - minx) / res))
            c1 = min(width, round((bmaxx - minx) / res))
            r0 = max(0, round((maxy - bmaxy) / res))
            r1 = min(height, round((maxy - bminy) / res))
            if c1 > c0 and r1 > r0:
                windows.append((c0, r0, c1, r1))
    array = zarr.open_group(Path(cube), mode="r")["reflectance"]
    _, _, ch, cw = array.chunks
    total = ChannelStats(tuple(names), (0,) * len(names), (0.0,) * len(names), (0.0,) * len(names))
    if windows:
        r_lo, r_hi = min(w[1] for w in windows), max(w[3] for w in windows)
        c_lo, c_hi = min(w[0] for w in windows), max(w[2] for w in windows)
        for cr, cc in itertools.product(
            range(r_lo // ch, (r_hi - 1) // ch + 1), range(c_lo // cw, (c_hi - 1) // cw + 1)
        ):
            r0, c0 = cr * ch, cc * cw
            r1, c1 = min(r0 + ch, height), min(c0 + cw, width)
            inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
            for wc0, wr0, wc1, wr1 in windows:
                a, b = max(wr0, r0), min(wr1, r1)
                c, d = max(wc0, c0), min(wc1, c1)
                if b > a and d > c:
                    inside[a - r0 : b - r0, c - c0 : d - c0] = True
            if not inside.any():
                continue
            data = np.asarray(array[:, :, r0:r1, c0:c1])  # one chunk, every date and band
            mask = (data != 0).any(axis=1) & inside[None]
            n, mean, m2 = _chunk_stats(data, mask)
            if n:
                total = total.merge(
                    ChannelStats(total.bands, (n,) * len(names), tuple(mean), tuple(m2))
                )
    if not total.count or total.count[0] == 0:
        raise UserError(
            f"no observed pixel of cube {cube} inside the training boxes {list(boxes or [])}; "
            "the split does not cover this cube's data"
        )
    return total.select(bands) if bands is not None else total


class Normalize(nn.Module):
    """Per-channel z-score with fixed statistics.

    Works on ``(C,H,W)``, ``(B,C,H,W)`` and ``(B,T,C,H,W)`` (channels at dim -3), on
    whatever device the module is on.

    Args:
        mean: Mean per channel.
        std: Standard deviation per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    @classmethod
    def from_stats(cls, stats: ChannelStats | dict[str, Any]) -> Normalize:
        """Build from :class:`ChannelStats` or its dict (as stored in a checkpoint)."""
        if isinstance(stats, dict):
            stats = ChannelStats.from_dict(stats)
        return cls(stats.mean, stats.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` along its channel axis (dim -3)."""
        if x.shape[-3] != self.mean.numel():
            raise ValueError(
                f"input has {x.shape[-3]} channels at dim -3 but the statistics have "
                f"{self.mean.numel()}"
            )
        shape = [1] * x.dim()
        shape[-3] = -1
        return (x - self.mean.view(shape)) / self.std.view(shape)
