"""TorchGeo GeoDatasets over senland-geo Zarr cubes.

:class:`CubeDataset` serves image patches from the ``reflectance`` variable and
:class:`CubeLabelDataset` serves label masks from the ``labels`` variable (WorldCover
codes mapped to model indices). Combine them with TorchGeo's ``&``
(:class:`~torchgeo.datasets.IntersectionDataset`) and sample with TorchGeo's samplers::

    ds = CubeDataset("brandenburg.zarr") & CubeLabelDataset("brandenburg.zarr", WORLDCOVER)
    sampler = RandomGeoSampler(ds, size=64, length=1000, roi=train_roi)

Reads go straight to the Zarr arrays (one chunk holds every date and band of a window),
opened lazily in each DataLoader worker.
"""

from __future__ import annotations

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
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice

from senland_geo import store
from senland_geo.classes import ClassTable
from senland_geo.errors import UserError

#: Cubes up to this size are read into memory once per process (patch reads then cost
#: a slice instead of chunk decompression).
IN_MEMORY_MAX_BYTES = 1 << 30


class _ZarrGridDataset(GeoDataset):
    """Shared grid handling: index, CRS, resolution and query -> pixel window."""

    variable = "reflectance"

    def __init__(
        self,
        path: str | Path,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
    ) -> None:
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
        self._array: Any = None
        self._bounds: tuple[slice, slice, slice] | None = None
        nbytes = ds[self.variable].nbytes
        self.in_memory = nbytes <= IN_MEMORY_MAX_BYTES if in_memory is None else in_memory

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounds of the cube (cached: GeoDataset recomputes them from the index)."""
        if self._bounds is None:
            self._bounds = super().bounds
        return self._bounds

    @property
    def array(self) -> Any:
        """The Zarr array (or a NumPy copy when in memory), opened on first use."""
        if self._array is None:
            array = zarr.open_group(self.path, mode="r")[self.variable]
            self._array = array[...] if self.in_memory else array
        return self._array

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
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
    ``(H, W)`` (observed in at least one date), ``crs`` and ``bounds``.

    Args:
        path: The ``*.zarr`` cube.
        bands: Bands to return (and their order); default all bands of the cube.
        time_series: Always return ``(T, C, H, W)``.
        transforms: Optional sample transform.
        in_memory: Read the whole array once (default: when it is at most 1 GiB).
    """

    variable = "reflectance"

    def __init__(
        self,
        path: str | Path,
        bands: Sequence[str] | None = None,
        time_series: bool = False,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
    ) -> None:
        super().__init__(path, transforms, in_memory)
        self.bands = list(bands) if bands is not None else list(self.band_names)
        missing = [b for b in self.bands if b not in self.band_names]
        if missing:
            raise UserError(
                f"cube {self.path} lacks bands {missing} (it has {self.band_names}); "
                "rebuild the cube with those bands or use a model trained on these"
            )
        self.band_index = [self.band_names.index(b) for b in self.bands]
        self.time_series = time_series

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the patch covering ``query``."""
        rows, cols = self.window(query)
        data = np.asarray(self.array[:, :, rows, cols])  # (T, all bands, H, W), one read
        if self.band_index != list(range(data.shape[1])):
            data = data[:, self.band_index]
        valid = (data != 0).any(axis=1).any(axis=0)
        image = torch.from_numpy(data.astype(np.float32))
        if not self.time_series and image.shape[0] == 1:
            image = image[0]
        sample = {
            "image": image,
            "valid": torch.from_numpy(valid),
            "crs": self.crs,
            "bounds": query,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


class CubeLabelDataset(_ZarrGridDataset):
    """Label masks from a cube store, as model indices of a class table.

    Samples: ``mask`` int64 ``(H, W)`` with codes outside the table (0 included) set to
    :data:`senland_geo.classes.IGNORE_INDEX`.
    """

    variable = "labels"
    is_image = False

    def __init__(
        self,
        path: str | Path,
        classes: ClassTable,
        transforms: Callable[[dict], dict] | None = None,
        in_memory: bool | None = None,
    ) -> None:
        super().__init__(path, transforms, in_memory)
        self.classes = classes
        self.lut = classes.code_to_index_lut()

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return the label mask covering ``query``."""
        rows, cols = self.window(query)
        codes = np.asarray(self.array[rows, cols])
        sample = {
            "mask": torch.from_numpy(self.lut[codes]),
            "crs": self.crs,
            "bounds": query,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


def collate_patches(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack image/mask/valid tensors of a batch; keep the bounds as a list."""
    batch: dict[str, Any] = {}
    for key in ("image", "mask", "valid"):
        if key in samples[0]:
            batch[key] = torch.stack([s[key] for s in samples])
    batch["bounds"] = [s["bounds"] for s in samples]
    return batch
