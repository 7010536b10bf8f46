"""Spatial splits that measure generalisation honestly.

A *split* is a set of named regions of interest (shapely boxes in the cube's CRS). The
holdout split keeps a contiguous block of the scene (e.g. its eastern third) apart, with a
buffer so no training patch touches a test patch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import box

from senland_geo.errors import UserError

SIDES = ("east", "west", "north", "south")


@dataclass(frozen=True)
class Split:
    """Train and test regions of interest in the cube's CRS.

    Attributes:
        train: Boxes patches for training may come from.
        test: Boxes patches for evaluation come from.
        description: How the split was made.
    """

    train: tuple[tuple[float, float, float, float], ...]
    test: tuple[tuple[float, float, float, float], ...]
    description: str = ""

    def train_roi(self) -> shapely.Geometry:
        """Union of the training boxes."""
        return shapely.union_all([box(*b) for b in self.train])

    def test_roi(self) -> shapely.Geometry:
        """Union of the test boxes."""
        return shapely.union_all([box(*b) for b in self.test])

    def check_no_leakage(self) -> None:
        """Raise if a training area overlaps or touches a test area."""
        overlap = self.train_roi().intersection(self.test_roi()).area
        if overlap > 0 or self.train_roi().distance(self.test_roi()) <= 0:
            raise RuntimeError(
                f"split leaks: train and test areas touch or overlap ({overlap:.0f} m2 shared)"
            )

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (to reproduce a run exactly)."""
        Path(path).write_text(
            json.dumps({"train": self.train, "test": self.test, "description": self.description})
        )

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        return cls(
            tuple(tuple(b) for b in data["train"]),
            tuple(tuple(b) for b in data["test"]),
            data.get("description", ""),
        )


def holdout_split(
    bounds: tuple[float, float, float, float],
    res: float,
    *,
    side: str = "east",
    fraction: float = 1 / 3,
    buffer_px: int = 16,
) -> Split:
    """Hold out a contiguous block on one side of the scene.

    Args:
        bounds: Scene bounds ``(minx, miny, maxx, maxy)``.
        res: Pixel size (cut lines are aligned to it).
        side: Which side is held out: east, west, north or south.
        fraction: Share of the scene held out (0..1).
        buffer_px: Gap in pixels between training and test areas.

    Returns:
        A checked, leakage-free :class:`Split`.
    """
    if side not in SIDES:
        raise UserError(f"holdout side {side!r} unknown; choose one of {', '.join(SIDES)}")
    if not 0 < fraction < 1:
        raise UserError(f"holdout fraction {fraction} must be between 0 and 1")
    minx, miny, maxx, maxy = bounds
    buf = buffer_px * res
    if side in ("east", "west"):
        extent = maxx - minx
        cut = round(extent * fraction / res) * res
        if side == "east":
            test = (maxx - cut, miny, maxx, maxy)
            train = (minx, miny, maxx - cut - buf, maxy)
        else:
            test = (minx, miny, minx + cut, maxy)
            train = (minx + cut + buf, miny, maxx, maxy)
    else:
        extent = maxy - miny
        cut = round(extent * fraction / res) * res
        if side == "north":
            test = (minx, maxy - cut, maxx, maxy)
            train = (minx, miny, maxx, maxy - cut - buf)
        else:
            test = (minx, miny, maxx, miny + cut)
            train = (minx, miny + cut + buf, maxx, maxy)
    split = Split((train,), (test,), f"{side} {fraction:.3f} held out, {buffer_px} px buffer")
    split.check_no_leakage()
    return split
