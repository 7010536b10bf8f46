"""Spatial splits that measure generalisation honestly.

A *split* is a set of training and test boxes (``minx, miny, maxx, maxy`` in one CRS),
kept at least a buffer apart so that no training patch touches a test patch:

- :func:`holdout_split`: a contiguous block on one side of a scene (e.g. its eastern
  third) is held out;
- :func:`kfold_splits`: blocked spatial k-fold (k=5 by default): the scene is cut into
  square blocks, each block is assigned to one fold, and the training area of fold *i*
  is every other block minus a buffer around the test blocks, decomposed into disjoint
  rectangles;
- :func:`region_holdout`: area holdout across cubes: train on some regions, evaluate on
  another (sample them with :class:`senland_geo.datasets.MultiCubeDataset`).

Sample from a split with :func:`subset` (``restrict`` the dataset's index to the boxes,
one row per box) rather than ``roi=split.train_roi()``: TorchGeo samplers draw patches
inside each index row's *bounding box*, so a non-rectangular ROI would let patches fall
into the gaps. :meth:`Split.check_queries` verifies the patches actually drawn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from shapely.geometry import box

from senland_geo import store
from senland_geo.datasets import check_patch_size, restrict
from senland_geo.errors import UserError

SIDES = ("east", "west", "north", "south")

Box = tuple[float, float, float, float]


class EmptySplitError(UserError, ValueError):
    """A split without training or test area."""


class LeakageError(RuntimeError):
    """Training and test areas (or patches) overlap, touch, or are closer than the buffer."""


@dataclass(frozen=True)
class Split:
    """Train and test regions of interest in the cube's CRS.

    Attributes:
        train: Boxes patches for training may come from.
        test: Boxes patches for evaluation come from.
        description: How the split was made.
        buffer: Minimum gap between training and test areas, in CRS units.
        crs: CRS of the boxes (e.g. ``"EPSG:32633"``), when known.
        train_regions: Region (cube) names trained on, for area holdouts.
        test_regions: Region (cube) names evaluated on, for area holdouts.
        fold: Fold number of a k-fold split (0-based).
        k: Number of folds of a k-fold split.
    """

    train: tuple[Box, ...]
    test: tuple[Box, ...]
    description: str = ""
    buffer: float = 0.0
    crs: str = ""
    train_regions: tuple[str, ...] = ()
    test_regions: tuple[str, ...] = ()
    fold: int | None = None
    k: int | None = None

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            boxes = getattr(self, name)
            if not boxes:
                raise EmptySplitError(
                    f"split '{self.description}' has no {name} area; use a smaller buffer, "
                    "smaller blocks or fewer folds, or pick other regions"
                )
            for b in boxes:
                if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
                    raise ValueError(
                        f"split {name} box {b} is not (minx, miny, maxx, maxy) with min < max"
                    )

    def train_roi(self) -> shapely.Geometry:
        """Union of the training boxes."""
        return shapely.union_all([box(*b) for b in self.train])

    def test_roi(self) -> shapely.Geometry:
        """Union of the test boxes."""
        return shapely.union_all([box(*b) for b in self.test])

    def check_no_leakage(self) -> None:
        """Raise if a training area overlaps, touches, or is closer than ``buffer`` to a test area.

        Raises:
            LeakageError: The areas leak.
        """
        train, test = self.train_roi(), self.test_roi()
        overlap = train.intersection(test).area
        gap = train.distance(test)
        if overlap > 0 or gap <= 0 or gap < self.buffer:
            raise LeakageError(
                f"split leaks: train and test areas touch or overlap ({overlap:.0f} m2 shared, "
                f"gap {gap:g} < buffer {self.buffer:g})"
            )

    def check_queries(self, queries: Iterable[Any], role: str = "train") -> int:
        """Check that sampled patches stay inside their area and clear of the other.

        Args:
            queries: TorchGeo queries (``(x slice, y slice, t slice)``), e.g. a sampler.
            role: ``"train"`` or ``"test"``: which area the patches must lie in.

        Returns:
            The number of patches checked.

        Raises:
            LeakageError: A patch leaves its area or comes within ``buffer`` of the other.
        """
        inside = (self.train_roi() if role == "train" else self.test_roi()).buffer(1e-6)
        other = self.test_roi() if role == "train" else self.train_roi()
        n = 0
        for query in queries:
            for q in query if isinstance(query, list) else [query]:
                patch = box(q[0].start, q[1].start, q[0].stop, q[1].stop)
                gap = patch.distance(other)
                if not inside.covers(patch) or gap <= 0 or gap < self.buffer:
                    raise LeakageError(
                        f"{role} patch {patch.bounds} leaves the {role} area or comes within "
                        f"{gap:g} of the other area (buffer {self.buffer:g})"
                    )
                n += 1
        return n

    def to_dict(self) -> dict[str, Any]:
        """The split as JSON-serialisable data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        """Rebuild a split from :meth:`to_dict` output."""
        return cls(
            train=tuple(tuple(b) for b in data["train"]),  # type: ignore[misc]
            test=tuple(tuple(b) for b in data["test"]),  # type: ignore[misc]
            description=data.get("description", ""),
            buffer=data.get("buffer", 0.0),
            crs=data.get("crs", ""),
            train_regions=tuple(data.get("train_regions", ())),
            test_regions=tuple(data.get("test_regions", ())),
            fold=data.get("fold"),
            k=data.get("k"),
        )

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (to reproduce a run exactly)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def subset(dataset: Any, split: Split, role: str = "train", patch_size: int | None = None) -> Any:
    """Restrict a dataset to a split's training or test boxes (one index row per box).

    Args:
        dataset: A GeoDataset on the split's CRS.
        split: The split.
        role: ``"train"`` or ``"test"``.
        patch_size: When given, check that at least one box fits a patch this large.

    Returns:
        A shallow copy of ``dataset`` for TorchGeo samplers.

    Raises:
        UserError: No box overlaps the dataset, or the patch is larger than every box.
    """
    if role not in ("train", "test"):
        raise UserError(f"split role {role!r} unknown; choose 'train' or 'test'")
    if split.crs and CRS.from_user_input(split.crs) != CRS.from_user_input(dataset.crs):
        raise UserError(
            f"split is on {split.crs} but the dataset on {dataset.crs}; make the split for "
            "this cube"
        )
    out = restrict(dataset, split.train if role == "train" else split.test)
    if patch_size is not None:
        check_patch_size(out, patch_size)
    return out


def holdout_split(
    bounds: tuple[float, float, float, float],
    res: float,
    *,
    side: str = "east",
    fraction: float = 1 / 3,
    buffer_px: int = 16,
    crs: Any = None,
) -> Split:
    """Hold out a contiguous block on one side of the scene.

    Args:
        bounds: Scene bounds ``(minx, miny, maxx, maxy)``.
        res: Pixel size (cut lines are aligned to it).
        side: Which side is held out: east, west, north or south.
        fraction: Share of the scene held out (0..1).
        buffer_px: Gap in pixels between training and test areas.
        crs: CRS of ``bounds``, recorded in the split.

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
    if cut <= 0 or train[0] >= train[2] or train[1] >= train[3]:
        raise EmptySplitError(
            f"holdout of {fraction:.3f} ({side}) with a {buffer_px} px buffer leaves no "
            f"training or test area in a {extent / res:.0f} px scene; lower the buffer or fraction"
        )
    split = Split(
        (train,),
        (test,),
        f"{side} {fraction:.3f} held out, {buffer_px} px buffer",
        buffer=buf,
        crs=_crs_str(crs),
    )
    split.check_no_leakage()
    return split


def _crs_str(crs: Any) -> str:
    if crs is None or crs == "":
        return ""
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _rectangles(cells: np.ndarray, xs: Sequence[int], ys: Sequence[int]) -> list[tuple[int, ...]]:
    """Decompose a boolean cell grid into disjoint rectangles (pixel col0, row0, col1, row1).

    Runs of True cells are merged along each row, then identical runs of consecutive rows
    are merged downwards.
    """
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row index
    out: list[tuple[int, ...]] = []
    for j in range(cells.shape[0] + 1):
        runs: set[tuple[int, int]] = set()
        if j < cells.shape[0]:
            i = 0
            while i < cells.shape[1]:
                if cells[j, i]:
                    i0 = i
                    while i < cells.shape[1] and cells[j, i]:
                        i += 1
                    runs.add((i0, i))
                else:
                    i += 1
        for run in list(open_runs):
            if run not in runs:
                out.append((xs[run[0]], ys[open_runs[run]], xs[run[1]], ys[j]))
                del open_runs[run]
        for run in runs:
            open_runs.setdefault(run, j)
    return sorted(out, key=lambda r: (r[1], r[0]))


def kfold_splits(
    bounds: tuple[float, float, float, float],
    res: float,
    *,
    k: int = 5,
    block_px: int = 128,
    buffer_px: int = 16,
    seed: int = 0,
    crs: Any = None,
) -> list[Split]:
    """Blocked spatial k-fold: square blocks assigned to folds, buffered training areas.

    Blocks of ``block_px`` pixels (the last row/column may be smaller) are shuffled with
    ``seed`` and dealt to the ``k`` folds in turn, so folds differ by at most one block.
    For fold ``i`` the test area is its blocks; the training area is all other blocks
    minus every pixel within ``buffer_px`` (Chebyshev distance) of a test block, as
    disjoint rectangles aligned to the pixel grid.

    Args:
        bounds: Scene bounds ``(minx, miny, maxx, maxy)``.
        res: Pixel size.
        k: Number of folds.
        block_px: Block side in pixels (make it several patch sizes).
        buffer_px: Gap in pixels between training and test areas.
        seed: Seed of the block-to-fold assignment.
        crs: CRS of ``bounds``, recorded in the splits.

    Returns:
        ``k`` checked, leakage-free splits (``split.fold`` = 0..k-1).

    Raises:
        UserError: Fewer blocks than folds, bad arguments, or a fold without training area.
    """
    if k < 2:
        raise UserError(f"k-fold needs k >= 2 folds, got {k}")
    if block_px < 1 or buffer_px < 0:
        raise UserError(f"block_px ({block_px}) must be >= 1 and buffer_px ({buffer_px}) >= 0")
    minx, miny, maxx, maxy = bounds
    width, height = round((maxx - minx) / res), round((maxy - miny) / res)
    nx, ny = math.ceil(width / block_px), math.ceil(height / block_px)
    if nx * ny < k:
        raise UserError(
            f"a {width} x {height} px scene has only {nx * ny} blocks of {block_px} px, fewer "
            f"than k={k} folds; use smaller blocks or fewer folds"
        )
    order = np.random.default_rng(seed).permutation(nx * ny)
    fold_of = np.empty(nx * ny, dtype=np.int64)
    fold_of[order] = np.arange(nx * ny) % k
    fold_of = fold_of.reshape(ny, nx)  # row 0 = northernmost blocks
    bx = [min(i * block_px, width) for i in range(nx + 1)]
    by = [min(j * block_px, height) for j in range(ny + 1)]

    def to_box(r: tuple[int, ...]) -> Box:
        c0, r0, c1, r1 = r
        return (minx + c0 * res, maxy - r1 * res, minx + c1 * res, maxy - r0 * res)

    splits = []
    for fold in range(k):
        test_blocks = [
            (bx[i], by[j], bx[i + 1], by[j + 1])
            for j in range(ny)
            for i in range(nx)
            if fold_of[j, i] == fold
        ]
        xs = {0, width, *bx}
        ys = {0, height, *by}
        for c0, r0, c1, r1 in test_blocks:
            xs |= {max(0, c0 - buffer_px), min(width, c1 + buffer_px)}
            ys |= {max(0, r0 - buffer_px), min(height, r1 + buffer_px)}
        xs_s, ys_s = sorted(xs), sorted(ys)
        cx = np.array([(a + b) / 2 for a, b in zip(xs_s[:-1], xs_s[1:], strict=True)])
        cy = np.array([(a + b) / 2 for a, b in zip(ys_s[:-1], ys_s[1:], strict=True)])
        block_fold = fold_of[
            np.minimum((cy // block_px).astype(int), ny - 1)[:, None],
            np.minimum((cx // block_px).astype(int), nx - 1)[None, :],
        ]
        is_test = block_fold == fold
        near = np.zeros_like(is_test)
        for c0, r0, c1, r1 in test_blocks:
            near |= (
                (cy[:, None] > r0 - buffer_px)
                & (cy[:, None] < r1 + buffer_px)
                & (cx[None, :] > c0 - buffer_px)
                & (cx[None, :] < c1 + buffer_px)
            )
        train = tuple(to_box(r) for r in _rectangles(~is_test & ~near, xs_s, ys_s))
        test = tuple(to_box(r) for r in _rectangles(is_test, xs_s, ys_s))
        split = Split(
            train,
            test,
            f"blocked {k}-fold, fold {fold}: {block_px} px blocks (seed {seed}), "
            f"{buffer_px} px buffer",
            buffer=buffer_px * res,
            crs=_crs_str(crs),
            fold=fold,
            k=k,
        )
        split.check_no_leakage()
        splits.append(split)
    return splits


def region_holdout(
    cubes: Mapping[str, str | Path], test: str | Sequence[str], *, buffer: float = 0.0
) -> Split:
    """Area holdout across regions: train on some cubes, evaluate on others.

    Args:
        cubes: Region name -> cube store, all on one CRS.
        test: The region name(s) held out.
        buffer: Minimum gap required between training and test cubes (CRS units).

    Returns:
        A checked split whose boxes are the cubes' bounds and whose ``train_regions`` /
        ``test_regions`` name the cubes (sample them with
        :class:`senland_geo.datasets.MultiCubeDataset`).

    Raises:
        UserError: Unknown test region, cubes on different CRSs, or an empty side.
        LeakageError: A training cube overlaps or touches a test cube.
    """
    held = [test] if isinstance(test, str) else list(test)
    unknown = [t for t in held if t not in cubes]
    if unknown:
        raise UserError(f"held-out regions {unknown} are not among the cubes {sorted(cubes)}")
    grids = {name: store.grid_of(store.open_cube(path)) for name, path in cubes.items()}
    crss = {_crs_str(g["crs"]) for g in grids.values()}
    if len(crss) > 1:
        raise UserError(
            f"cubes are on different CRSs ({', '.join(sorted(crss))}); an area holdout "
            "needs one CRS: rebuild the cubes on one UTM zone"
        )
    train_names = tuple(n for n in cubes if n not in held)
    split = Split(
        tuple(tuple(grids[n]["bounds"]) for n in train_names),  # type: ignore[misc]
        tuple(tuple(grids[n]["bounds"]) for n in held),  # type: ignore[misc]
        f"area holdout: train on {', '.join(train_names) or 'nothing'}, test on {', '.join(held)}",
        buffer=buffer,
        crs=crss.pop(),
        train_regions=train_names,
        test_regions=tuple(held),
    )
    split.check_no_leakage()
    return split
