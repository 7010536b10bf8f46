"""Data-loader benchmark: Zarr cube datasets vs TorchGeo RasterDataset over COGs.

Prints one JSON document: random 64x64 patches/s for a single date and for 32 dates from
the Zarr cube (lazy reads and in-memory) against TorchGeo's ``RasterDataset`` over the same
pixels written as COGs in this run (one COG per date, read per date and stacked, since
RasterDataset mosaics overlapping files instead of stacking them); the IntersectionDataset
vs the single-store LabeledCubeDataset; loader images/s with 2 workers against a
``unet-resnet34`` training step (batch 16, 64x64x10) measured in the same run; batch
augmentation cost. Every number names the engine (CPU model, threads, load average).

    python benchmarks/bench_loader.py [--cube brandenburg.zarr] [--patches 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
import xarray as xr
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset
from torchgeo.samplers import RandomGeoSampler

from senland_geo import hw, registry, store
from senland_geo.augment import FlipRotate, kornia_flip_rotate
from senland_geo.classes import WORLDCOVER
from senland_geo.datasets import (
    CHUNK_CACHE_BYTES,
    CubeDataset,
    CubeLabelDataset,
    LabeledCubeDataset,
    collate_patches,
)

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


class S2Cog(RasterDataset):
    """The cube's reflectance written as a 10-band COG."""

    filename_glob = "*.tif"
    all_bands = BANDS


def rate(ds, queries) -> float:
    """Patches per second reading ``queries`` in order (after one warm-up read)."""
    ds[queries[0]]
    t0 = time.perf_counter()
    for q in queries:
        ds[q]
    return len(queries) / (time.perf_counter() - t0)


def series_rate(datasets, queries) -> float:
    """Patches/s reading one query from each per-date RasterDataset and stacking."""
    torch.stack([d[queries[0]]["image"] for d in datasets])
    t0 = time.perf_counter()
    for q in queries:
        torch.stack([d[q]["image"] for d in datasets])
    return len(queries) / (time.perf_counter() - t0)


def write_cogs(cube: Path, out: Path) -> list[Path]:
    """One COG per date (10 bands, 256 px blocks, deflate) from the cube's reflectance."""
    ds = store.open_cube(cube)
    grid = store.grid_of(ds)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    refl = ds["reflectance"]
    for t in range(refl.sizes["time"]):
        path = out / f"{t:02d}" / "s2.tif"
        path.parent.mkdir()
        data = refl[t].values
        with rasterio.open(
            path,
            "w",
            driver="COG",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype=data.dtype,
            crs=grid["crs"],
            transform=grid["transform"],
            blocksize=256,
            compress="deflate",
        ) as dst:
            dst.write(data)
        paths.append(path)
    return paths


def make_series_cube(
    cube: Path, out: Path, dates: int = 32, size: int | None = 512, chunk: int = 128
) -> Path:
    """A ``dates``-date cube cropped to ``size`` px (None: whole), chunked (T, C, chunk, chunk)."""
    ds = store.open_cube(cube)
    if size is not None:
        ds = ds.isel(x=slice(0, size), y=slice(0, size))
    ds = ds.load()
    ds = ds.assign_coords(band=np.asarray(store.band_names(ds), dtype=object))
    ds = ds.rio.write_transform(ds.rio.transform(recalc=True))
    refl = xr.concat([ds["reflectance"] + t for t in range(dates)], dim="time")
    times = pd.date_range("2017-01-01", periods=dates, freq="10D")
    ds = ds.drop_vars("reflectance").drop_dims("time")
    ds = ds.assign(reflectance=refl.assign_coords(time=times))
    return store.write_cube(ds, out, chunks=(chunk, chunk))


def train_step_rate(steps: int = 5, batch: int = 16) -> float:
    """Images/s of a unet-resnet34 training step (fp32, eager) on 64x64x10."""
    model = registry.load("models", "unet-resnet34")(in_channels=10, num_classes=11)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 10, 64, 64)
    y = torch.randint(0, 11, (batch, 64, 64))
    model.train()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def loader_rate(ds, batches: int, batch: int = 16, workers: int = 2) -> float:
    """Images/s of a DataLoader with ``workers`` persistent workers, second epoch.

    The first epoch starts the workers (each opens or loads its own copy of the arrays);
    the second is timed from ``iter()`` to its last batch, so the prefetch queue starts
    empty (timing after a slow first batch would count batches prefetched meanwhile).
    """
    sampler = RandomGeoSampler(
        ds, size=64, length=batches * batch, generator=torch.Generator().manual_seed(1)
    )
    loader = DataLoader(
        ds,
        sampler=sampler,
        batch_size=batch,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=collate_patches,
    )
    for _ in loader:
        pass
    t0 = time.perf_counter()
    n = sum(b["image"].shape[0] for b in loader)
    return n / (time.perf_counter() - t0)


def _median_ms(fns: dict, reps: int) -> dict[str, float]:
    """Median milliseconds per call of each function, calls interleaved (fair under load)."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v) * 1000) for name, v in times.items()}


def _d4(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of ``x`` (last two dims)."""
    out = []
    for v in (x, x.transpose(-1, -2)):
        out += [v, v.flip(-1), v.flip(-2), v.flip((-1, -2))]
    return out


def _exactness(out: torch.Tensor, image: torch.Tensor) -> tuple[float, float]:
    """Share of samples equal to a D4 element of their input, and the largest error."""
    exact, worst = 0, 0.0
    for b in range(image.shape[0]):
        errors = [float((out[b].double() - e.double()).abs().max()) for e in _d4(image[b])]
        exact += min(errors) == 0
        worst = max(worst, min(errors))
    return exact / image.shape[0], worst


def augment_comparison(reps: int = 15) -> dict:
    """Kornia vs :class:`FlipRotate`: exactness of values and labels, ms per batch.

    Batches of 16 x 10 x 64 x 64 (composite) and 16 x 32 x 10 x 64 x 64 (series, folded to
    16 x 320 x 64 x 64 for kornia), each with a label mask and a validity mask.
    """
    import kornia.augmentation as K

    torch.manual_seed(0)
    probe = torch.rand(64, 10, 64, 64) * 10000
    labels = torch.randint(0, 11, (64, 1, 64, 64))
    bilinear = K.AugmentationSequential(
        K.RandomHorizontalFlip(), K.RandomRotation90(times=(-1.5, 2.5), p=1.0),
        data_keys=["input", "mask"],
    )  # fmt: skip
    exactness = {}
    for name, aug in (
        ("kornia_bilinear_default", bilinear),
        ("kornia_nearest_align_corners", kornia_flip_rotate()),
        ("fliprotate", FlipRotate()),
    ):
        out, out_labels = aug(probe, labels)
        share, worst = _exactness(out, probe)
        exactness[name] = {
            "exact_image_samples": share,
            "max_abs_error": worst,
            "exact_label_samples": _exactness(out_labels, labels)[0],
        }
    speed = {}
    for shape in ((16, 10, 64, 64), (16, 32, 10, 64, 64)):
        x = torch.rand(*shape)
        m = torch.randint(0, 11, (16, 64, 64))
        v = torch.rand(16, 64, 64) > 0.1
        flat = x.reshape(16, -1, 64, 64)
        ours, kor = FlipRotate(), kornia_flip_rotate(masks=2)
        ms = _median_ms(
            {
                "fliprotate": lambda: ours(x, m, v),  # noqa: B023
                "kornia_nearest": lambda: kor(flat, m[:, None], v[:, None]),  # noqa: B023
                "copy_of_batch": lambda: x.clone(),  # noqa: B023
            },
            reps if len(shape) == 4 else max(3, reps // 3),
        )
        ms["kornia_over_fliprotate"] = ms["kornia_nearest"] / ms["fliprotate"]
        speed["x".join(map(str, shape))] = ms
    return {
        "exactness_64_samples": exactness,
        "ms_per_batch_with_mask_and_valid": speed,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, help="cube store (default: build the sample)")
    parser.add_argument("--patches", type=int, default=300, help="patches per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    cube = args.cube
    if cube is None:
        from senland_geo.build import build_region_cube
        from senland_geo.regions import get_region

        cube = build_region_cube(get_region("brandenburg"), tmp / "brandenburg.zarr")
    n = args.patches
    result: dict = {
        "engine": hw.describe("cpu"),
        "load_average_start": hw.load_average(),
        "chunk_cache_bytes": CHUNK_CACHE_BYTES,  # lazy datasets' decoded-chunk LRU bound
    }

    # Single date.
    lazy = CubeDataset(cube, in_memory=False)
    queries = list(
        RandomGeoSampler(lazy, size=64, length=n, generator=torch.Generator().manual_seed(0))
    )
    cog = S2Cog(write_cogs(cube, tmp / "cog1")[0].parent)
    single = {
        "zarr_lazy": rate(lazy, queries),
        "zarr_lazy_no_chunk_cache": rate(
            CubeDataset(cube, in_memory=False, chunk_cache_bytes=0), queries
        ),
        "zarr_in_memory": rate(CubeDataset(cube, in_memory=True), queries),
        "torchgeo_rasterdataset_cog": rate(cog, queries),
        "intersection_image_and_labels": rate(
            CubeDataset(cube) & CubeLabelDataset(cube, WORLDCOVER), queries
        ),
        "labeled_cube_fast_path": rate(LabeledCubeDataset(cube, WORLDCOVER), queries),
    }
    small = make_series_cube(cube, tmp / "single-128.zarr", dates=1, size=None, chunk=128)
    single["zarr_lazy_128px_chunks"] = rate(CubeDataset(small, in_memory=False), queries)
    single["chunks"] = list(lazy.array.chunks)
    single["speedup_zarr_lazy_vs_cog"] = single["zarr_lazy"] / single["torchgeo_rasterdataset_cog"]
    single["speedup_zarr_lazy_128px_chunks_vs_cog"] = (
        single["zarr_lazy_128px_chunks"] / single["torchgeo_rasterdataset_cog"]
    )
    single["speedup_in_memory_vs_cog"] = (
        single["zarr_in_memory"] / single["torchgeo_rasterdataset_cog"]
    )
    result["single_date_64px_patches_per_s"] = single

    # 32 dates.
    series = make_series_cube(cube, tmp / "series.zarr")
    s_lazy = CubeDataset(series, in_memory=False)
    s_queries = list(
        RandomGeoSampler(s_lazy, size=64, length=n, generator=torch.Generator().manual_seed(0))
    )
    cogs = [S2Cog(p.parent) for p in write_cogs(series, tmp / "cog32")]
    n_cog = max(10, n // 5)  # 32 reads per patch: fewer patches keep the run short
    multi = {
        "zarr_lazy": rate(s_lazy, s_queries),
        "zarr_lazy_no_chunk_cache": rate(
            CubeDataset(series, in_memory=False, chunk_cache_bytes=0), s_queries
        ),
        "zarr_in_memory": rate(CubeDataset(series, in_memory=True), s_queries),
        "torchgeo_rasterdataset_cog_per_date_stacked": series_rate(cogs, s_queries[:n_cog]),
        "chunks": list(s_lazy.array.chunks),
    }
    multi["speedup_zarr_lazy_vs_cog"] = (
        multi["zarr_lazy"] / multi["torchgeo_rasterdataset_cog_per_date_stacked"]
    )
    multi["speedup_in_memory_vs_cog"] = (
        multi["zarr_in_memory"] / multi["torchgeo_rasterdataset_cog_per_date_stacked"]
    )
    result["32_date_64px_patches_per_s"] = multi

    # Loader with 2 workers vs the training step.
    step = train_step_rate()
    batches = max(8, n // 16)
    loaders = {
        "labeled_cube_lazy": loader_rate(
            LabeledCubeDataset(cube, WORLDCOVER, in_memory=False), batches
        ),
        "labeled_cube_lazy_128px_chunks": loader_rate(
            LabeledCubeDataset(small, WORLDCOVER, in_memory=False), batches
        ),
        "labeled_cube_in_memory": loader_rate(
            LabeledCubeDataset(cube, WORLDCOVER, in_memory=True), batches
        ),
        "intersection": loader_rate(
            CubeDataset(cube) & CubeLabelDataset(cube, WORLDCOVER), batches
        ),
    }
    result["loader_2_workers_images_per_s"] = loaders
    result["unet_resnet34_train_step_images_per_s"] = step
    result["loader_over_train_step"] = {k: v / step for k, v in loaders.items()}

    result["augment"] = augment_comparison()
    result["load_average_end"] = hw.load_average()
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
