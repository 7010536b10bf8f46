"""TorchGeo GeoDatasets over senland-geo Zarr cubes.

:class:`CubeDataset` serves image patches from the ``reflectance`` variable and
:class:`CubeLabelDataset` serves label masks from the ``labels`` variable (WorldCover
codes mapped to model indices). Combine them with TorchGeo's ``&``
(:class:`~torchgeo.datasets.IntersectionDataset`) and sample with TorchGeo's samplers::

    ds = CubeDataset("brandenburg.zarr") & CubeLabelDataset("brandenburg.zarr", WORLDCOVER)
    sampler = RandomGeoSampler(ds, size=64, length=1000, roi=train_roi)

:class:`LabeledCubeDataset` is the fast path for the common case (image and mask from
the same store): one GeoDataset, one read per variable, no
:func:`~torchgeo.datasets.utils.concat_samples` copy. :class:`MultiCubeDataset` joins
several cubes on one CRS (e.g. the regions of an area holdout) into one GeoDataset, and
:class:`RasterLabelDataset` reads a label GeoTIFF that must already sit on the cube's
grid (a label raster on another CRS is refused, never silently reprojected).

Reads go straight to the Zarr arrays (one chunk holds every date and band of a window),
opened lazily in each DataLoader worker; small cubes are read into memory once per
process. Lazy reads keep decoded chunks in a byte-bounded LRU :class:`ChunkCache` (one
per dataset and process), so neighbouring patches do not decode the same chunk again.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import torch
import zarr
from geopandas import GeoDataFrame
from rasterio.crs import CRS
from torchgeo.datasets import GeoDataset, IntersectionDataset, RasterDataset
from torchgeo.datasets.utils import GeoSlice

from senland_geo import store
from senland_geo.classes import ClassTable
from senland_geo.errors import UserError
from senland_geo.timeseries import days_since_epoch, season_mask

#: Cubes up to this size are read into memory once per process (patch reads then cost
#: a slice instead of chunk decompression).
IN_MEMORY_MAX_BYTES = 1 << 30
#: A lazy dataset still reads a secondary variable (the labels next to the reflectance of a
#: :class:`LabeledCubeDataset`) into memory when it is at most this size: a 2-D label
#: raster is T x C x 2 times smaller than the reflectance, and each patch then costs one
#: Zarr read instead of two (measured, interleaved A/B, 1 thread, load 15: 139 -> 208
#: patches/s on 64 px patches of a 128 px-chunked single-date cube).
SECONDARY_IN_MEMORY_MAX_BYTES = 256 << 20
#: Default byte bound of the decoded-chunk cache of a lazy dataset (per dataset instance,
#: per process: each DataLoader worker holds its own cache).
CHUNK_CACHE_BYTES = 256 << 20


class ChunkCache:
    """A thread-safe LRU cache of decoded Zarr chunks, bounded in bytes.

    Keys are ``(variable, chunk index)``; values are read-only NumPy arrays. A chunk larger
    than the bound is returned but not kept. Pickling (DataLoader workers under ``spawn``)
    keeps only the bound: every process starts with an empty cache.

    Args:
        max_bytes: Upper bound of the summed ``nbytes`` of the cached chunks; 0 disables.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._chunks)

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]

    def get(self, key: tuple, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array under ``key``, calling ``load`` (outside the lock) on a miss."""
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                self.hits += 1
                return chunk
            self.misses += 1
        chunk = np.asarray(load())
        chunk.flags.writeable = False  # views of it are handed out
        if chunk.nbytes > self.max_bytes:
            return chunk
        with self._lock:
            if key not in self._chunks:
                while self._chunks and self.nbytes + chunk.nbytes > self.max_bytes:
                    _, old = self._chunks.popitem(last=False)
                    self.nbytes -= old.nbytes
                self._chunks[key] = chunk
                self.nbytes += chunk.nbytes
        return chunk


def read_window(
    array: Any, rows: slice, cols: slice, cache: ChunkCache, key: str = ""
) -> np.ndarray:
    """``array[..., rows, cols]`` of a Zarr array, assembled from cached whole chunks.

    Every chunk touched by the window is decoded once (``array[chunk slices]``) and kept
    in ``cache``; the window is cut out of the chunks and stitched across chunk borders.
    A window inside one chunk is returned as a read-only view of it.

    Args:
        array: A Zarr array (any leading dimensions, then y and x).
        rows: Row slice (step 1, inside the array).
        cols: Column slice (step 1, inside the array).
        cache: The chunk cache.
        key: Prefix of the cache keys (the variable name).

    Returns:
        The window, with the array's dtype.
    """
    shape, chunks = array.shape, array.chunks
    lead = len(shape) - 2
    window = [slice(0, n) for n in shape[:lead]] + [rows, cols]
    ranges = [
        range(w.start // c, (w.stop - 1) // c + 1) for w, c in zip(window, chunks, strict=True)
    ]
    pieces = []
    for index in itertools.product(*ranges):
        bounds = [
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, shape, strict=True)
        ]
        chunk = cache.get((key, index), lambda b=tuple(bounds): array[b])
        src = tuple(
            slice(max(w.start, b.start) - b.start, min(w.stop, b.stop) - b.start)
            for w, b in zip(window, bounds, strict=True)
        )
        dst = tuple(
            slice(max(w.start, b.start) - w.start, min(w.stop, b.stop) - w.start)
            for w, b in zip(window, bounds, strict=True)
        )
        pieces.append((chunk, src, dst))
    if len(pieces) == 1:
        return pieces[0][0][pieces[0][1]]
    out = np.empty(tuple(w.stop - w.start for w in window), dtype=pieces[0][0].dtype)
    for chunk, src, dst in pieces:
        out[dst] = chunk[src]
    return out


def _crs_name(crs: Any) -> str:
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def check_same_crs(first: GeoDataset, second: GeoDataset) -> None:
    """Raise a UserError when two datasets to be intersected are on different CRSs.

    TorchGeo would reproject the second dataset's index (and, for rasters, warp its
    pixels); for label rasters that silently resamples class codes, and a Zarr cube grid
    cannot be warped at all.

    Raises:
        UserError: The CRSs differ.
    """
    if CRS.from_user_input(first.crs) != CRS.from_user_input(second.crs):
        name = getattr(second, "paths", type(second).__name__)
        raise UserError(
            f"{name} is on {_crs_name(second.crs)} but {getattr(first, 'paths', 'the cube')} "
            f"is on {_crs_name(first.crs)}; reproject the labels onto the cube grid "
            "(nearest, e.g. with senland_geo.labels) or rebuild the cube with labels"
        )


class _GridMixin:
    """CRS/resolution guards and ``&`` with a CRS check, shared by our GeoDatasets."""

    index: GeoDataFrame
    _res: tuple[float, float]

    @property
    def crs(self) -> CRS:
        """The CRS of the cube (fixed: a Zarr grid cannot be reprojected)."""
        return self.index.crs

    @crs.setter
    def crs(self, new_crs: Any) -> None:
        if CRS.from_user_input(new_crs) != CRS.from_user_input(self.index.crs):
            raise UserError(
                f"{getattr(self, 'paths', 'cube')} is on {_crs_name(self.index.crs)} and "
                f"cannot be reprojected to {_crs_name(new_crs)}; put the other dataset on "
                "the cube's grid first"
            )

    @property
    def res(self) -> tuple[float, float]:
        """The pixel size (fixed)."""
        return self._res

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        if isinstance(new_res, int | float):
            new_res = (float(new_res), float(new_res))
        if tuple(new_res) != tuple(self._res):
            raise UserError(
                f"{getattr(self, 'paths', 'cube')} has {self._res[0]} m pixels and cannot be "
                f"resampled to {new_res[0]} m; put the other dataset on the cube's grid first"
            )

    def __and__(self, other: GeoDataset) -> IntersectionDataset:
        """Intersect with another GeoDataset on the same CRS (TorchGeo ``&``)."""
        check_same_crs(self, other)  # type: ignore[arg-type]
        return IntersectionDataset(self, other)  # type: ignore[arg-type]


class _ZarrGridDataset(_GridMixin, GeoDataset):
    """Shared grid handling: index, CRS, resolution and query -> pixel window."""

    variable = "reflectance"

    def __init__(
        self,
        path: str | Path,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
        chunk_cache_bytes: int = CHUNK_CACHE_BYTES,
    ) -> None:
        if not isinstance(chunk_cache_bytes, int) or chunk_cache_bytes < 0:
            raise UserError(
                f"chunk_cache_bytes {chunk_cache_bytes!r} must be a byte count >= 0 "
                "(0 disables the chunk cache)"
            )
        self.path = Path(path)
        self.paths = str(self.path)
        self.transforms = transforms
        ds = store.open_cube(self.path)
        if self.variable not in ds:
            raise UserError(
                f"cube {self.path} has no '{self.variable}' variable; rebuild it with labels"
                if self.variable == "labels"
                else f"cube {self.path} has no '{self.variable}' variable"
            )
        grid = store.grid_of(ds)
        self.grid = grid
        self.band_names = store.band_names(ds)
        self.times = pd.DatetimeIndex(ds["time"].values)
        self._res = (grid["res"], grid["res"])
        minx, miny, maxx, maxy = grid["bounds"]
        crs = CRS.from_user_input(grid["crs"])
        tmin = self.times.min() - pd.Timedelta(days=1)
        tmax = self.times.max() + pd.Timedelta(days=1)
        index = pd.IntervalIndex.from_tuples([(tmin, tmax)], closed="both", name="datetime")
        self.index = GeoDataFrame(
            {"filepath": [str(self.path)]},
            index=index,
            geometry=[shapely.box(minx, miny, maxx, maxy)],
            crs=crs,
        )
        self._arrays: dict[str, Any] = {}
        self._bounds: tuple[slice, slice, slice] | None = None
        nbytes = sum(ds[v].nbytes for v in self._variables())
        self.in_memory = nbytes <= IN_MEMORY_MAX_BYTES if in_memory is None else in_memory
        self.chunk_cache = ChunkCache(chunk_cache_bytes)

    def _variables(self) -> tuple[str, ...]:
        return (self.variable,)

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounds of the index (cached: GeoDataset recomputes them from the index)."""
        if self._bounds is None:
            self._bounds = super().bounds
        return self._bounds

    def _open(self, variable: str) -> Any:
        """A Zarr array (or a NumPy copy when in memory), opened on first use.

        A secondary variable (not :attr:`variable`) is read into memory when it is at most
        :data:`SECONDARY_IN_MEMORY_MAX_BYTES`, even in a lazy dataset.
        """
        array = self._arrays.get(variable)
        if array is None:
            array = zarr.open_group(self.path, mode="r")[variable]
            small = variable != self.variable and array.nbytes <= SECONDARY_IN_MEMORY_MAX_BYTES
            if self.in_memory or small:
                array = array[...]
            self._arrays[variable] = array
        return array

    @property
    def array(self) -> Any:
        """The main variable's array (Zarr, or NumPy when in memory)."""
        return self._open(self.variable)

    def _read(self, variable: str, rows: slice, cols: slice) -> np.ndarray:
        """``variable[..., rows, cols]``, through the chunk cache when read lazily.

        May return a read-only view (of the in-memory array or of a cached chunk).
        """
        array = self._open(variable)
        if isinstance(array, np.ndarray):
            return array[..., rows, cols]
        if self.chunk_cache.max_bytes == 0:
            return np.asarray(array[..., rows, cols])
        return read_window(array, rows, cols, self.chunk_cache, variable)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # each worker opens (or loads) its own copy
        return state

    def window(self, query: GeoSlice) -> tuple[slice, slice]:
        """Convert a TorchGeo query to (row, col) pixel slices, checking the bounds."""
        x, y, _ = self._disambiguate_slice(query)
        minx, _, _, maxy = self.grid["bounds"]
        res = self.grid["res"]
        col0 = round((x.start - minx) / res)
        col1 = round((x.stop - minx) / res)
        row0 = round((maxy - y.stop) / res)
        row1 = round((maxy - y.start) / res)
        height, width = self.grid["shape"]
        if col0 < 0 or row0 < 0 or col1 > width or row1 > height or col1 <= col0 or row1 <= row0:
            raise IndexError(f"query {query} is outside the cube bounds {self.grid['bounds']}")
        return slice(row0, row1), slice(col0, col1)


class CubeDataset(_ZarrGridDataset):
    """Image patches from a cube store.

    Samples: ``image`` float32 ``(C, H, W)`` for a single composite or ``(T, C, H, W)``
    for a series (or always the latter with ``time_series=True``), ``valid`` bool
    ``(H, W)`` (observed in at least one date), ``crs`` and ``bounds``; series samples
    also carry ``dates`` int64 ``(T,)`` (days since 1970-01-01) and ``date_mask`` bool
    ``(T,)`` (True for dates observed somewhere in the patch), like the crop datasets.

    Args:
        path: The ``*.zarr`` cube.
        bands: Bands to return (and their order); default all bands of the cube.
        time_series: Always return ``(T, C, H, W)``.
        transforms: Optional sample transform.
        in_memory: Read the whole array once (default: when it is at most 1 GiB).
        season: Keep only the dates inside a yearly window, e.g. ``(1, 7)`` for
            January-July (see :func:`senland_geo.timeseries.season_mask`).
        chunk_cache_bytes: Byte bound of the decoded-chunk LRU cache of a lazy dataset
            (per instance and process; 0 disables it).

    Raises:
        UserError: The cube lacks some of ``bands``, no date falls in ``season``, or
            ``chunk_cache_bytes`` is negative.
    """

    variable = "reflectance"

    def __init__(
        self,
        path: str | Path,
        bands: Sequence[str] | None = None,
        time_series: bool = False,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
        season: tuple[int, int] | tuple[str, str] | None = None,
        chunk_cache_bytes: int = CHUNK_CACHE_BYTES,
    ) -> None:
        super().__init__(path, transforms, in_memory, chunk_cache_bytes)
        self.bands = list(bands) if bands is not None else list(self.band_names)
        missing = [b for b in self.bands if b not in self.band_names]
        if missing:
            raise UserError(
                f"cube {self.path} lacks bands {missing} (it has {self.band_names}); "
                "rebuild the cube with those bands or use a model trained on these"
            )
        self.band_index = [self.band_names.index(b) for b in self.bands]
        self._all_bands = self.band_index == list(range(len(self.band_names)))
        self.time_series = time_series
        self.season = season
        self.time_index: list[int] | None = None
        if season is not None:
            keep = season_mask(self.times.values, season)
            if not keep.any():
                raise UserError(
                    f"no date of cube {self.path} ({self.times.min():%Y-%m-%d} to "
                    f"{self.times.max():%Y-%m-%d}) falls in season {season}; pick another"
                )
            self.time_index = [int(i) for i in np.flatnonzero(keep)]
        times = self.times if self.time_index is None else self.times[self.time_index]
        self.dates = days_since_epoch(times.values.astype("datetime64[D]"))

    def _read_image(self, rows: slice, cols: slice) -> dict[str, Any]:
        data = self._read(self.variable, rows, cols)  # (T, all bands, H, W), one read
        if self.time_index is not None:
            data = data[self.time_index]
        if not self._all_bands:
            data = data[:, self.band_index]
        observed = (data != 0).any(axis=1)  # (T, H, W)
        sample: dict[str, Any] = {
            "image": torch.from_numpy(data.astype(np.float32)),
            "valid": torch.from_numpy(observed.any(axis=0)),
        }
        if self.time_series or data.shape[0] > 1:
            sample["dates"] = torch.from_numpy(self.dates.copy())
            sample["date_mask"] = torch.from_numpy(observed.any(axis=(1, 2)))
        else:
            sample["image"] = sample["image"][0]
        return sample

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the patch covering ``query``."""
        rows, cols = self.window(query)
        sample = self._read_image(rows, cols)
        sample["crs"] = self.crs
        sample["bounds"] = query
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


class CubeLabelDataset(_ZarrGridDataset):
    """Label masks from a cube store, as model indices of a class table.

    Samples: ``mask`` int64 ``(H, W)`` with codes outside the table (0 included) set to
    :data:`senland_geo.classes.IGNORE_INDEX`.

    Args:
        path: The ``*.zarr`` cube (with ``labels``).
        classes: Class table the label codes are mapped to.
        transforms: Optional sample transform.
        in_memory: Read the labels once (default: when at most 1 GiB).
        chunk_cache_bytes: Byte bound of the decoded-chunk LRU cache of a lazy dataset
            (0 disables it).
    """

    variable = "labels"
    is_image = False

    def __init__(
        self,
        path: str | Path,
        classes: ClassTable,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
        chunk_cache_bytes: int = CHUNK_CACHE_BYTES,
    ) -> None:
        super().__init__(path, transforms, in_memory, chunk_cache_bytes)
        self.classes = classes
        self.lut = classes.code_to_index_lut()

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the label mask covering ``query``."""
        rows, cols = self.window(query)
        codes = self._read(self.variable, rows, cols)
        sample = {
            "mask": torch.from_numpy(self.lut[codes]),
            "crs": self.crs,
            "bounds": query,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


class LabeledCubeDataset(CubeDataset):
    """Image, validity and label mask from one cube store in one GeoDataset.

    Same samples as ``CubeDataset(path) & CubeLabelDataset(path, classes)`` (``image``,
    ``valid``, ``mask``, ...) without the IntersectionDataset overhead (index overlay,
    per-sample ``concat_samples`` copy of every tensor).

    Args:
        path: The ``*.zarr`` cube (with ``labels``).
        classes: Class table the label codes are mapped to.
        bands: Bands to return; default all.
        time_series: Always return ``(T, C, H, W)``.
        transforms: Optional sample transform.
        in_memory: Read both arrays once (default: when together at most 1 GiB); when
            False the labels are still held in memory if at most 256 MiB.
        season: Keep only the dates inside a yearly window.
        chunk_cache_bytes: Byte bound of the decoded-chunk LRU cache of a lazy dataset
            (shared by both variables; 0 disables it).
    """

    def __init__(
        self,
        path: str | Path,
        classes: ClassTable,
        bands: Sequence[str] | None = None,
        time_series: bool = False,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
        season: tuple[int, int] | tuple[str, str] | None = None,
        chunk_cache_bytes: int = CHUNK_CACHE_BYTES,
    ) -> None:
        ds = store.open_cube(path)
        if "labels" not in ds:
            raise UserError(f"cube {path} has no 'labels' variable; rebuild it with labels")
        super().__init__(path, bands, time_series, transforms, in_memory, season, chunk_cache_bytes)
        self.classes = classes
        self.lut = classes.code_to_index_lut()

    def _variables(self) -> tuple[str, ...]:
        return ("reflectance", "labels")

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return image, valid and mask covering ``query``."""
        rows, cols = self.window(query)
        sample = self._read_image(rows, cols)
        sample["mask"] = torch.from_numpy(self.lut[self._read("labels", rows, cols)])
        sample["crs"] = self.crs
        sample["bounds"] = query
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


class MultiCubeDataset(_GridMixin, GeoDataset):
    """Several cube datasets on one CRS and pixel size as one GeoDataset.

    The index has one row per cube, so TorchGeo samplers draw each patch from inside one
    cube (weighted by area); a query is answered by the cube that contains it.

    Args:
        datasets: Cube datasets (e.g. one :class:`LabeledCubeDataset` per region).
        names: Optional names (e.g. region names), one per dataset.

    Raises:
        UserError: No datasets, or they differ in CRS, pixel size or bands.
    """

    def __init__(
        self, datasets: Sequence[_ZarrGridDataset], names: Sequence[str] | None = None
    ) -> None:
        if not datasets:
            raise UserError("MultiCubeDataset needs at least one cube")
        first = datasets[0]
        for ds in datasets[1:]:
            if CRS.from_user_input(ds.crs) != CRS.from_user_input(first.crs):
                raise UserError(
                    f"cube {ds.paths} is on {_crs_name(ds.crs)} but {first.paths} is on "
                    f"{_crs_name(first.crs)}; cubes sampled together must share a CRS "
                    "(rebuild them on one UTM zone, or train per zone)"
                )
            if tuple(ds.res) != tuple(first.res):
                raise UserError(
                    f"cube {ds.paths} has {ds.res[0]} m pixels but {first.paths} has "
                    f"{first.res[0]} m; rebuild them at one resolution"
                )
            if getattr(ds, "bands", None) != getattr(first, "bands", None):
                raise UserError(
                    f"cube {ds.paths} serves bands {getattr(ds, 'bands', None)} but "
                    f"{first.paths} serves {getattr(first, 'bands', None)}; pass the same bands"
                )
        self.datasets = list(datasets)
        self.names = list(names) if names is not None else [str(d.paths) for d in datasets]
        if len(self.names) != len(self.datasets):
            raise UserError(f"{len(self.names)} names for {len(self.datasets)} cubes")
        self.paths = [str(d.paths) for d in datasets]
        self._res = tuple(first.res)  # type: ignore[assignment]
        index = pd.concat([d.index for d in datasets])
        index["dataset"] = np.arange(len(datasets))
        self.index = GeoDataFrame(index, geometry="geometry", crs=first.crs)
        self._boxes = [d.grid["bounds"] for d in datasets]
        self._bounds: tuple[slice, slice, slice] | None = None
        self.bands = getattr(first, "bands", None)

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounds of all cubes (cached)."""
        if self._bounds is None:
            self._bounds = super().bounds
        return self._bounds

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the sample from the cube containing ``query``."""
        x, y, _ = self._disambiguate_slice(query)
        for ds, (minx, miny, maxx, maxy) in zip(self.datasets, self._boxes, strict=True):
            if x.start >= minx and x.stop <= maxx and y.start >= miny and y.stop <= maxy:
                return ds[query]
        raise IndexError(f"query {query} is not inside one of the cubes {self.names}")


class RasterLabelDataset(_GridMixin, RasterDataset):
    """A label GeoTIFF (class codes) on the cube's grid, as model indices.

    Intersect it with a cube dataset (``cube & RasterLabelDataset(tif, classes)``); a
    raster on another CRS is refused with a :class:`UserError` instead of being warped.

    Args:
        paths: GeoTIFF file(s) or folder.
        classes: Class table the codes are mapped to.
        transforms: Optional sample transform.
    """

    is_image = False
    filename_glob = "*.tif"

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        classes: ClassTable,
        transforms: Callable[[dict], dict] | None = None,
    ) -> None:
        super().__init__(paths, transforms=None)
        self.classes = classes
        self.lut = torch.from_numpy(classes.code_to_index_lut())
        self._label_transforms = transforms

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the label mask covering ``query``."""
        sample = super().__getitem__(query)
        sample["mask"] = self.lut[sample["mask"].clamp(0, 255)]
        if self._label_transforms is not None:
            sample = self._label_transforms(sample)
        return sample


def check_patch_size(dataset: GeoDataset, size: int) -> None:
    """Raise a UserError when no area of ``dataset``'s index fits a ``size`` patch.

    Args:
        dataset: A GeoDataset (possibly restricted to a split with
            :func:`senland_geo.splits.subset`).
        size: Patch side in pixels.
    """
    res = dataset.res[0]
    sides = [
        (round((b[2] - b[0]) / res), round((b[3] - b[1]) / res))
        for b in dataset.index.geometry.bounds.itertuples(index=False)
    ]
    if not any(w >= size and h >= size for w, h in sides):
        largest = max(sides, key=lambda s: min(s), default=(0, 0))
        raise UserError(
            f"patch size {size} px is larger than every area to sample from (largest "
            f"{largest[0]} x {largest[1]} px); use a smaller --patch-size or larger areas"
        )


def restrict(dataset: GeoDataset, boxes: Sequence[tuple[float, float, float, float]]) -> Any:
    """A shallow copy of ``dataset`` whose index is cut to ``boxes``, one row per box.

    TorchGeo samplers take each index row's *bounding box*, so passing a union of several
    boxes as ``roi`` lets patches fall between them (e.g. into a k-fold test block). With
    one row per box every patch stays inside one box.

    Args:
        dataset: Any GeoDataset (cube, intersection, multi-cube).
        boxes: ``(minx, miny, maxx, maxy)`` boxes in the dataset's CRS.

    Returns:
        The restricted dataset.

    Raises:
        UserError: No box overlaps the dataset.
    """
    rows = []
    for minx, miny, maxx, maxy in boxes:
        cut = dataset.index.clip(shapely.box(minx, miny, maxx, maxy), keep_geom_type=True)
        cut = cut[cut.geometry.area > 0]
        if not cut.empty:
            cut = cut.copy()
            cut["geometry"] = [shapely.box(*g.bounds) for g in cut.geometry]
            rows.append(cut)
    if not rows:
        raise UserError(
            f"none of the {len(boxes)} split areas overlaps the dataset (bounds "
            f"{tuple(dataset.index.total_bounds)}); the split was made for another cube"
        )
    out = copy.copy(dataset)
    out.index = GeoDataFrame(pd.concat(rows), geometry="geometry", crs=dataset.index.crs)
    if hasattr(out, "_bounds"):
        out._bounds = None
    return out


def collate_patches(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors of a batch (image, mask, valid, dates, date_mask); bounds as a list."""
    batch: dict[str, Any] = {}
    for key in ("image", "mask", "valid", "dates", "date_mask"):
        if key in samples[0]:
            batch[key] = torch.stack([s[key] for s in samples])
    batch["bounds"] = [s["bounds"] for s in samples]
    return batch
